"""What the fused engine runs: the exact cell and rule classes it implements, their codes, and the
per-call configuration.

This is the one table of rule codes (:data:`RULE_CODES`, next to the cell, modulation and activation
codes): the C kernel receives them as ``-D`` compile flags (:func:`kernel_defines`), the torch-op path
and the kernel both read :class:`FusedConfig`. Dispatch is on the *exact* class: a user's subclass of
a built-in rule or cell may override ``update`` or ``step``, and the fused engine cannot know the new
equation, so such a cell runs on ``reference``.

Every cell is described as a list of plastic *layers* (one plastic matrix and its rule each): the
recurrent matrix of :class:`PlasticRNNCell` and :class:`PlasticLSTMCell` (one layer), or the stacked
layers of :class:`PlasticMLPCell`. A sequence's traces of all layers sit side by side in one block of
``S`` numbers (``F`` and, for the eligibility rule, ``E``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from neuromod_rl.plasticity.cells import (
    _ACTIVATIONS,
    PlasticCell,
    PlasticLinear,
    PlasticLSTMCell,
    PlasticMLPCell,
    PlasticRNNCell,
)
from neuromod_rl.plasticity.rules import (
    ABCD,
    ClippedHebbian,
    HebbianDecay,
    Neuromodulated,
    Oja,
    PlasticityRule,
    Retroactive,
)

#: rule class -> (code in the kernels, macro name in C). Order is the code; never reuse a code.
RULE_CODES: dict[type, tuple[int, str]] = {
    Neuromodulated: (0, "R_NEUROMOD"),
    ClippedHebbian: (1, "R_CLIPPED"),
    HebbianDecay: (2, "R_HEBBIAN"),
    Retroactive: (3, "R_RETRO"),
    Oja: (4, "R_OJA"),
    ABCD: (5, "R_ABCD"),
}
MOD_CODES: dict[str | None, tuple[int, str]] = {
    None: (0, "M_NONE"),
    "scalar": (1, "M_SCALAR"),
    "fanout": (2, "M_FANOUT"),
}
CELL_CODES: dict[type, tuple[int, str]] = {
    PlasticRNNCell: (0, "C_RNN"),
    PlasticLSTMCell: (1, "C_LSTM"),
    PlasticMLPCell: (2, "C_MLP"),
}
#: the activations of :class:`PlasticLinear` layers (the recurrent cells use tanh and the LSTM gates)
ACTIVATION_CODES: dict[str, tuple[int, str]] = {
    "tanh": (0, "A_TANH"),
    "relu": (1, "A_RELU"),
    "identity": (2, "A_IDENTITY"),
}
#: the dtypes the kernels are built for (half precision runs on ``reference``)
DTYPES = (torch.float32, torch.float64)
#: the rate parameter of the rules that have one scalar rate
_SCALAR_RATE = {ClippedHebbian: "eta", HebbianDecay: "eta", Retroactive: "eta_e", Oja: "eta"}


class LayerSpec(NamedTuple):
    """One plastic matrix ``[n_pre, n_post]`` and its rule."""

    rule: str  # the rule's registry name
    rule_code: int
    clip: float  # inf when the rule does not clip
    alpha: str  # "full" | "vector" (per postsynaptic neuron, scalar, or none)
    n_pre: int
    n_post: int
    activation: str  # of an MLP layer ("tanh" for the recurrent cells, whose nonlinearity is fixed)
    slow: bool  # has slow weights w
    bias: bool  # has its own bias (MLP layers; the recurrent cells' bias is in the input projection)
    init: bool  # the trace restarts from the rule's F0 (ABCD) instead of zero
    eligibility: bool  # keeps an eligibility trace E (retroactive)
    max_norm: bool  # ABCD's division of the layer by its largest |F| after every update

    @property
    def size(self) -> int:
        return self.n_pre * self.n_post


class FusedConfig(NamedTuple):
    """Everything about one fused call that is not a tensor."""

    cell: str  # "rnn" | "lstm" | "mlp"
    cell_code: int
    layers: tuple[LayerSpec, ...]
    modulation: str | None  # None | "scalar" | "fanout"
    external: bool
    segment: int  # K, steps between trace checkpoints

    @property
    def hidden(self) -> int:
        """N: the width of the cell's output (the last layer's ``n_post``)."""
        return self.layers[-1].n_post

    @property
    def input_width(self) -> int:
        """X: the width of a step's projected input (N, the LSTM's 4 gate blocks, or the MLP's input)."""
        return {"rnn": self.hidden, "lstm": 4 * self.hidden}.get(self.cell, self.layers[0].n_pre)

    @property
    def eligibility(self) -> bool:
        return any(layer.eligibility for layer in self.layers)

    def trace_offsets(self) -> list[int]:
        """Where each layer's trace starts in a sequence's block of :attr:`trace_size` numbers."""
        offsets, at = [], 0
        for layer in self.layers:
            offsets.append(at)
            at += layer.size
        return offsets

    @property
    def trace_size(self) -> int:
        return sum(layer.size for layer in self.layers)


def plastic_layers(cell: PlasticCell) -> list[PlasticLinear] | None:
    """The plastic feed-forward layers of an MLP cell (``None`` for the recurrent cells)."""
    return list(cell.layers) if type(cell) is PlasticMLPCell else None


def _rules(cell: PlasticCell) -> list[PlasticityRule]:
    layers = plastic_layers(cell)
    return [cell.rule] if layers is None else [layer.rule for layer in layers]


def _rule_supported(rule: PlasticityRule) -> bool:
    # Not fused (it runs on reference): the soft clip.
    return type(rule) in RULE_CODES and not getattr(rule, "soft_clip", False)


def supports(cell: PlasticCell) -> bool:
    """True when the fused backend implements exactly this cell and its rules (no subclasses)."""
    if type(cell) not in CELL_CODES:
        return False
    layers = plastic_layers(cell)
    if layers is not None and not all(
        type(layer) is PlasticLinear and _activation_name(layer) is not None for layer in layers
    ):
        return False
    first = next(cell.parameters(), None)
    return all(_rule_supported(rule) for rule in _rules(cell)) and (first is None or first.dtype in DTYPES)


def _activation_name(layer: PlasticLinear) -> str | None:
    return next((name for name, fn in _ACTIVATIONS.items() if fn is layer.activation), None)


def kernel_defines() -> list[str]:
    """The code tables as C preprocessor flags (``-DR_NEUROMOD=0`` ...)."""
    codes = [*RULE_CODES.values(), *MOD_CODES.values(), *CELL_CODES.values(), *ACTIVATION_CODES.values()]
    return [f"-D{macro}={code}" for code, macro in codes]


def segment_length(T: int) -> int:
    """K ≈ √T steps between trace checkpoints: O((T/K + K)·B·N²) memory in the backward pass."""
    return max(1, math.isqrt(T - 1) + 1) if T > 1 else 1


def _layer_spec(rule: PlasticityRule, activation: str, slow: bool, bias: bool) -> LayerSpec:
    return LayerSpec(
        rule=rule.name,
        rule_code=RULE_CODES[type(rule)][0],
        clip=float(rule.clip) if rule.clip is not None else math.inf,
        alpha="full" if rule.alpha is not None and rule.alpha_shape == "full" else "vector",
        n_pre=rule.n_pre,
        n_post=rule.n_post,
        activation=activation,
        slow=slow,
        bias=bias,
        init=type(rule) is ABCD,
        eligibility="E" in rule.trace_names,
        max_norm=type(rule) is ABCD and bool(rule.max_norm),
    )


def config_for(cell: PlasticCell, T: int) -> FusedConfig:
    mod = cell.modulator
    layers = plastic_layers(cell)
    if layers is None:
        specs = (_layer_spec(cell.rule, "tanh", True, False),)
    else:
        specs = tuple(
            _layer_spec(layer.rule, _activation_name(layer), layer.w is not None, layer.b is not None)
            for layer in layers
        )
    return FusedConfig(
        cell={PlasticRNNCell: "rnn", PlasticLSTMCell: "lstm", PlasticMLPCell: "mlp"}[type(cell)],
        cell_code=CELL_CODES[type(cell)][0],
        layers=specs,
        modulation=None if mod is None else mod.mode,
        external=mod is not None and mod.source == "external",
        segment=segment_length(T),
    )


class ModParams(NamedTuple):
    """The modulator head's parameters (``None`` where the cell has no such part)."""

    wm: Tensor | None  # Linear(N, 1) weight [1, N]
    bm: Tensor | None  # its bias [1]
    wf: Tensor | None  # fan-out Linear(1, N) weight [N, 1]
    bf: Tensor | None  # its bias [N]


class LayerParams(NamedTuple):
    """One plastic layer's parameters in the layout both fused paths take (``None``: absent)."""

    w: Tensor | None  # slow weights [n_pre, n_post] ([N, 4N] for the LSTM: gates i, f, g, o)
    b: Tensor | None  # bias [n_post] (MLP layers)
    alpha: Tensor  # [n_pre, n_post] (full) or [1, n_post] / [1, 1]
    eta: Tensor | None  # the scalar rate (clipped, hebbian, oja: eta; retroactive: eta_e)
    A: Tensor | None  # ABCD's per-synapse coefficients and rates [n_pre, n_post]
    Bc: Tensor | None
    C: Tensor | None
    D: Tensor | None
    etas: Tensor | None


N_LAYER_PARAMS = len(LayerParams._fields)


def _layer_params(rule: PlasticityRule, w: Tensor | None, b: Tensor | None, like: Tensor) -> LayerParams:
    alpha = rule.alpha if rule.alpha is not None else torch.ones(1, 1, device=like.device, dtype=like.dtype)
    rate = _SCALAR_RATE.get(type(rule))
    abcd = type(rule) is ABCD
    return LayerParams(
        w,
        b,
        alpha,
        getattr(rule, rate) if rate else None,
        *((rule.A, rule.B, rule.C, rule.D, rule.eta) if abcd else (None,) * 5),
    )


def layer_params(cell: PlasticCell, like: Tensor) -> tuple[ModParams, list[LayerParams]]:
    """``(modulator params, per-layer params)`` of a cell the fused engine runs."""
    mod = cell.modulator
    scalar = mod.to_scalar if mod is not None else None
    fanout = mod.fanout if mod is not None else None
    mp = ModParams(
        None if scalar is None else scalar.weight,
        None if scalar is None else scalar.bias,
        None if fanout is None else fanout.weight,
        None if fanout is None else fanout.bias,
    )
    layers = plastic_layers(cell)
    if layers is None:
        return mp, [_layer_params(cell.rule, cell.w, None, like)]
    return mp, [_layer_params(layer.rule, layer.w, layer.b, like) for layer in layers]


def params_for(cell: PlasticCell, like: Tensor) -> tuple[ModParams, list[LayerParams], Tensor | None]:
    """``(modulator params, per-layer params, F_init)``: ``F_init [S]`` holds every layer's trace at an
    episode start side by side (``None`` when all of them restart at zero)."""
    mp, lps = layer_params(cell, like)
    rules = _rules(cell)
    F_init = None
    if any(type(rule) is ABCD for rule in rules):
        F_init = torch.cat(
            [
                (rule.F0 if type(rule) is ABCD else like.new_zeros(rule.n_pre, rule.n_post))
                .to(dtype=like.dtype, device=like.device)
                .reshape(-1)
                for rule in rules
            ]
        )
    return mp, lps, F_init


def trace_fields(cfg: FusedConfig) -> list[tuple[str, str | None]]:
    """The state field names of each layer's ``F`` and ``E`` (``E`` ``None`` without eligibility)."""
    if cfg.cell != "mlp":
        return [("F", "E" if cfg.layers[0].eligibility else None)]
    return [(f"F{l}", f"E{l}" if layer.eligibility else None) for l, layer in enumerate(cfg.layers)]


def side_by_side(cfg: FusedConfig, state, batch: int) -> tuple[Tensor, Tensor | None]:
    """Every layer's ``F`` (and ``E``) of a sequence in one row, ``[B, S]`` (a view for one layer)."""

    def flat(names):
        rows = [state[k].reshape(batch, -1) for k in names]
        return rows[0] if len(rows) == 1 else torch.cat(rows, dim=1)

    fields = trace_fields(cfg)
    return flat([f for f, _ in fields]), flat([e for _, e in fields]) if cfg.eligibility else None


def split_traces(cfg: FusedConfig, F: Tensor, E: Tensor | None, batch: int) -> dict[str, Tensor]:
    """The state fields of :func:`side_by_side`'s rows: each layer's ``[B, n_pre, n_post]`` view."""
    out = {}
    for (f, e), layer, at in zip(trace_fields(cfg), cfg.layers, cfg.trace_offsets()):
        out[f] = F[:, at : at + layer.size].view(batch, layer.n_pre, layer.n_post)
        if e is not None:
            out[e] = E[:, at : at + layer.size].view(batch, layer.n_pre, layer.n_post)
    return out
