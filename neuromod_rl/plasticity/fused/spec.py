"""What the fused engine runs: the exact cell and rule classes it implements, their codes, and the
per-call configuration.

This is the one table of rule codes: the C kernel receives it as ``-D`` compile flags
(:func:`kernel_defines`), the torch-op path and the kernel both read :class:`FusedConfig`. Dispatch is
on the *exact* class: a user's subclass of a built-in rule may override ``update``, and the fused
engine cannot know the new equation, so such a cell runs on ``reference``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from neuromod_rl.plasticity.cells import PlasticCell, PlasticRNNCell
from neuromod_rl.plasticity.rules import ClippedHebbian, HebbianDecay, Neuromodulated, Retroactive

#: rule class -> (code in the kernels, macro name in C). Order is the code; never reuse a code.
RULE_CODES: dict[type, tuple[int, str]] = {
    Neuromodulated: (0, "R_NEUROMOD"),
    ClippedHebbian: (1, "R_CLIPPED"),
    HebbianDecay: (2, "R_HEBBIAN"),
    Retroactive: (3, "R_RETRO"),
}
MOD_CODES: dict[str | None, tuple[int, str]] = {
    None: (0, "M_NONE"),
    "scalar": (1, "M_SCALAR"),
    "fanout": (2, "M_FANOUT"),
}
#: the dtypes the kernels are built for (half precision runs on ``reference``)
DTYPES = (torch.float32, torch.float64)


class FusedConfig(NamedTuple):
    """Everything about one fused call that is not a tensor."""

    rule: str  # the rule's registry name (RULE_CODES key's ``name``)
    rule_code: int
    clip: float  # inf when the rule does not clip
    alpha: str  # "full" | "vector" (per neuron, scalar, or none)
    modulation: str | None  # None | "scalar" | "fanout"
    external: bool
    segment: int  # K, steps between trace checkpoints


def supports(cell: PlasticCell) -> bool:
    """True when the fused backend implements exactly this cell and rule (no subclasses)."""
    rule = getattr(cell, "rule", None)
    first = next(cell.parameters(), None)
    return (
        type(cell) is PlasticRNNCell
        and type(rule) in RULE_CODES
        and not getattr(rule, "soft_clip", False)
        and (first is None or first.dtype in DTYPES)
    )


def kernel_defines() -> list[str]:
    """The code tables as C preprocessor flags (``-DR_NEUROMOD=0`` ...)."""
    codes = [*RULE_CODES.values(), *MOD_CODES.values()]
    return [f"-D{macro}={code}" for code, macro in codes]


def segment_length(T: int) -> int:
    """K ≈ √T steps between trace checkpoints: O((T/K + K)·B·N²) memory in the backward pass."""
    return max(1, math.isqrt(T - 1) + 1) if T > 1 else 1


def config_for(cell: PlasticRNNCell, T: int) -> FusedConfig:
    rule, mod = cell.rule, cell.modulator
    return FusedConfig(
        rule=rule.name,
        rule_code=RULE_CODES[type(rule)][0],
        clip=float(rule.clip) if rule.clip is not None else math.inf,
        alpha="full" if rule.alpha is not None and rule.alpha_shape == "full" else "vector",
        modulation=None if mod is None else mod.mode,
        external=mod is not None and mod.source == "external",
        segment=segment_length(T),
    )


class RuleParams(NamedTuple):
    """The cell's parameters in the layout both fused paths take."""

    w: Tensor
    alpha: Tensor  # [N, N] (full) or [1, N] / [1, 1]
    wm: Tensor | None  # modulator Linear(N, 1) weight [1, N]
    bm: Tensor | None
    wf: Tensor | None  # fan-out Linear(1, N) weight [N, 1]
    bf: Tensor | None
    eta: Tensor | None  # hebbian/clipped eta, or retroactive eta_e (scalars)


def rule_params(cell: PlasticRNNCell, like: Tensor) -> RuleParams:
    rule, mod = cell.rule, cell.modulator
    alpha = rule.alpha if rule.alpha is not None else torch.ones(1, 1, device=like.device, dtype=like.dtype)
    eta = {ClippedHebbian: "eta", HebbianDecay: "eta", Retroactive: "eta_e"}.get(type(rule))
    scalar = mod.to_scalar if mod is not None else None
    fanout = mod.fanout if mod is not None else None
    return RuleParams(
        cell.w,
        alpha,
        None if scalar is None else scalar.weight,
        None if scalar is None else scalar.bias,
        None if fanout is None else fanout.weight,
        None if fanout is None else fanout.bias,
        getattr(rule, eta) if eta else None,
    )
