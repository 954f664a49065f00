"""What one triton call runs: the cell's rule and modulation as kernel codes, and its parameters.

The codes come from the fused engine's one table (:data:`~neuromod_rl.plasticity.fused.spec.RULE_CODES`,
``MOD_CODES``), as does the checkpoint spacing (``segment_length``); this module only reads a plastic
RNN or LSTM cell into the flat form the kernels take. (It imports no Triton.)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from neuromod_rl.plasticity.cells import PlasticLSTMCell, PlasticRNNCell
from neuromod_rl.plasticity.fused.spec import MOD_CODES, RULE_CODES, segment_length
from neuromod_rl.plasticity.rules import ABCD, ClippedHebbian, HebbianDecay, Neuromodulated, Oja, Retroactive

#: the rule classes the kernels implement (exact classes), with the name of their scalar rate; oja
#: once the rule-code table has a code for it
TRITON_RULES = {Neuromodulated: None, ClippedHebbian: "eta", HebbianDecay: "eta", Retroactive: "eta_e"}
if Oja in RULE_CODES:
    TRITON_RULES[Oja] = "eta"


class TritonConfig(NamedTuple):
    """Everything about one call that is not a tensor."""

    rule_code: int  # RULE_CODES
    mod_code: int  # MOD_CODES
    clip: float  # inf when the rule does not clip
    alpha_full: bool  # one alpha per connection (else per postsynaptic neuron, or one scalar)
    modulation: str | None  # None | "scalar" | "fanout"
    external: bool  # M(t) is given to scan instead of computed from h_t
    eligibility: bool  # the rule keeps an eligibility trace E
    segment: int  # K: steps between trace checkpoints


class CellParams(NamedTuple):
    """The cell's parameters (``None`` where the cell has no such part)."""

    w: Tensor  # [N, N]
    alpha: Tensor  # [N, N] (full), [1, N] or [1, 1]; ones when the rule has none
    wm: Tensor | None  # modulator Linear(N, 1) weight [1, N]
    bm: Tensor | None  # its bias [1]
    wf: Tensor | None  # fan-out Linear(1, N) weight [N, 1]
    bf: Tensor | None  # its bias [N]
    eta: Tensor | None  # the rule's scalar rate (clipped/hebbian eta, retroactive eta_e)


def config_for(cell: PlasticRNNCell | PlasticLSTMCell, T: int) -> TritonConfig:
    rule, mod = cell.rule, cell.modulator
    modulation = None if mod is None else mod.mode
    return TritonConfig(
        rule_code=RULE_CODES[type(rule)][0],
        mod_code=MOD_CODES[modulation][0],
        clip=float(rule.clip) if rule.clip is not None else math.inf,
        alpha_full=rule.alpha is not None and rule.alpha_shape == "full",
        modulation=modulation,
        external=mod is not None and mod.source == "external",
        eligibility="E" in rule.trace_names,
        segment=segment_length(T),
    )


def cell_params(cell: PlasticRNNCell | PlasticLSTMCell, like: Tensor) -> CellParams:
    rule, mod = cell.rule, cell.modulator
    alpha = rule.alpha if rule.alpha is not None else torch.ones(1, 1, device=like.device, dtype=like.dtype)
    rate = TRITON_RULES.get(type(rule))  # None: no scalar rate (neuromod, abcd)
    scalar = mod.to_scalar if mod is not None else None
    fanout = mod.fanout if mod is not None else None
    return CellParams(
        cell.w,
        alpha,
        None if scalar is None else scalar.weight,
        None if scalar is None else scalar.bias,
        None if fanout is None else fanout.weight,
        None if fanout is None else fanout.bias,
        None if rate is None else getattr(rule, rate),
    )


#: the rule classes the LSTM kernels implement (exact classes): the RNN's, and ABCD without ``max_norm``
LSTM_RULES = (*TRITON_RULES, ABCD)


class LSTMParams(NamedTuple):
    """The plastic LSTM's parameters as the LSTM kernels take them (``None`` where the cell has none)."""

    w: Tensor  # [N, 4N]: recurrent weights of the gates i, f, o and the candidate's slow part, side by side
    alpha: Tensor  # [N, N] (full), [1, N] or [1, 1]; ones when the rule has none
    wm: Tensor | None  # modulator Linear(N, 1) weight [1, N]
    bm: Tensor | None  # its bias [1]
    wf: Tensor | None  # fan-out Linear(1, N) weight [N, 1]
    bf: Tensor | None  # its bias [N]
    eta: Tensor | None  # the scalar rate (clipped/hebbian/oja eta, retroactive eta_e)
    A: Tensor | None  # ABCD's per-synapse coefficients and rates [N, N]
    Bc: Tensor | None
    C: Tensor | None
    D: Tensor | None
    etas: Tensor | None
    F_init: Tensor | None  # ABCD's trace at an episode start [N, N] (a buffer: no gradient)


def lstm_params(cell: PlasticLSTMCell, like: Tensor) -> LSTMParams:
    """The parameters of a plastic LSTM for the LSTM kernels (``like``: a tensor of the run's dtype and device)."""
    rule = cell.rule
    if type(rule) is not ABCD:
        return LSTMParams(*cell_params(cell, like), None, None, None, None, None, None)
    F_init = rule.F0.to(device=like.device, dtype=like.dtype)
    return LSTMParams(*cell_params(cell, like), rule.A, rule.B, rule.C, rule.D, rule.eta, F_init)
