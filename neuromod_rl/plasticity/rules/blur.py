"""BLUR as a plasticity rule -- Sandler et al., "Meta-learning bidirectional update rules", ICML 2021."""

from __future__ import annotations

import torch
from torch import Tensor

from neuromod_rl.plasticity.blur_network import (
    BlurGenome,
    backward_message,
    synapse_delta,
    tanh_derivative,
)
from neuromod_rl.plasticity.rules.base import PlasticityRule, check_clip, clip_trace, register_rule
from neuromod_rl.plasticity.state import PlasticState


@register_rule("blur")
class BlurRule(PlasticityRule):
    """A BLUR genome driving fast weights inside a plastic layer (equations in
    :mod:`neuromod_rl.plasticity.blur_network`). Per step, with ``pre = h_{t-1}``, ``post = h_t``:

    1. post-side neuron states ``y = [post, m, 0...]``: the feedback signal ``m`` (reward, TD error or
       the cell's learned ``M(t)``; ``[B]`` broadcast to every neuron, or ``[B, n_post]``) is written
       into state 1 of the output side, as the paper does with the target;
    2. backward pass through the backward block ``V``:
       ``x = keep_b ⊙ [pre, 0...] + upd_b ⊙ (1 - pre²) Σ_j Σ_k y_{j,k} ν^b_{k,l} V_{i,j,l}``;
    3. synapse update of both blocks, per sequence:
       ``W <- κ W + upd_s ΔW`` (``κ = clamp(keep_s, 0, 1)``), ``ΔW_{i,j,o} = Σ_k Σ_l x_{i,k} P_{k,o} Q_{o,l} y_{j,l}``;
       then ``|W|, |V| <= clip``.

    The effective fast weight is the forward block read by activity (state 0):
    ``weight_term = alpha ⊙ Σ_l ν^f_{0,l} W_{:,:,l}``. Interpretation choices: only state 0 crosses
    the forward path (a plastic cell's neurons carry one activity, the cell's own tanh is the
    forward neuron update, so ``upd_f`` is unused here); fast weights start at zero each episode;
    the genome starts at the backprop genome (with ``lr`` and synapse decay ``keep_s = decay``) plus
    ``noise`` -- with it, ``ΔW_ij = x_i m_j``, a reward-modulated presynaptic rule.

    Traces: ``F`` (forward block) and ``V`` (backward block), ``[B, n_pre, n_post, k]``.

    Sequence engine: this rule runs on the ``reference`` backend only (it has networks inside, which the
    fused engine does not implement); ``scan`` picks ``reference`` for it by itself.
    """

    modulation = "required"
    trace_names = ("F", "V")

    def __init__(
        self,
        n_pre: int,
        n_post: int,
        alpha_shape="full",
        alpha_init: float = 0.01,
        k: int = 2,
        lr: float = 0.1,
        decay: float = 0.95,
        noise: float = 0.01,
        clip: float | None = 1.0,
    ):
        super().__init__(n_pre, n_post, alpha_shape, alpha_init)
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"blur: decay (the initial synapse keep_s) must lie in [0, 1], got {decay}")
        self.genome = BlurGenome(k=k, lr=lr, noise=noise)
        with torch.no_grad():
            self.genome.keep_s.fill_(decay)
        self.k, self.clip = k, None if clip is None else check_clip(clip)

    def init_traces(self, batch: int, device=None, dtype=None) -> dict[str, Tensor]:
        dtype = dtype or torch.get_default_dtype()
        shape = (batch, self.n_pre, self.n_post, self.k)
        return {n: torch.zeros(shape, device=device, dtype=dtype) for n in self.trace_names}

    def weight_term(self, state: PlasticState) -> Tensor:
        w = state.F @ self.genome.nu_f[0]
        return w if self.alpha is None else self.alpha * w

    def update(self, state: PlasticState, pre: Tensor, post: Tensor, modulation: Tensor | None) -> PlasticState:
        g, B = self.genome, pre.shape[0]
        m = self._modulation(modulation, B).reshape(B, -1).expand(B, self.n_post)
        y = torch.stack([post, m, *([torch.zeros_like(post)] * (self.k - 2))], dim=-1)
        x0 = torch.stack([pre, *([torch.zeros_like(pre)] * (self.k - 1))], dim=-1)
        x = g.keep_b * x0 + g.upd_b * tanh_derivative(pre).unsqueeze(-1) * backward_message(y, state.V, g.nu_b)
        d = synapse_delta(x, y, g.P, g.Q, batch_mean=False)
        keep = g.synapse_keep
        F, V = keep * state.F + g.upd_s * d, keep * state.V + g.upd_s * d
        if self.clip is not None:
            F, V = clip_trace(F, self.clip), clip_trace(V, self.clip)
        return state.replace(F=F, V=V)
