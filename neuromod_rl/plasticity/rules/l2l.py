"""A learned, coordinatewise LSTM plasticity rule -- after Andrychowicz et al., "Learning to learn by
gradient descent by gradient descent", NeurIPS 2016, with synapses as the coordinates."""

from __future__ import annotations

import torch
from torch import Tensor

from neuromod_rl.plasticity.learned_optimizer import CoordinatewiseLSTM, preprocess_gradient
from neuromod_rl.plasticity.rules.base import PlasticityRule, check_clip, clip_trace, outer, register_rule
from neuromod_rl.plasticity.state import PlasticState


@register_rule("l2l")
class L2LRule(PlasticityRule):
    """``[ΔF_ij, s_ij] = LSTM_phi(pre(x_i y_j), m, s_ij)``, ``F <- clip(F + ΔF, -c, c)``.

    The optimizer of Andrychowicz et al. (2016, eq. 1: ``θ_{t+1} = θ_t + g_t``) turned into a
    plasticity rule: every synapse is one "coordinate" with its own LSTM state ``s_ij``
    (traces ``lh``, ``lc`` of shape ``[B, n_pre, n_post, lstm_layers, lstm_hidden]``), the LSTM weights
    ``phi`` are shared by all synapses, and its output is the fast-weight update.

    Interpretation choices (the paper defines no Hebbian rule form: it is *open*):

    * the local learning signal in place of the gradient is the Hebbian term ``x_i y_j``, passed
      through the paper's preprocessing (``p = 10``; :func:`preprocess_gradient`);
    * the modulation ``m`` (reward, TD error, or the cell's learned ``M(t)``), when given, is a third
      input feature per synapse (0 when absent), so the rule can gate or sign its updates; a TD-loss
      gradient of a value head can be fed the same way, as an external modulation;
    * one LSTM layer of 6 units by default (``lstm_layers``, ``lstm_hidden``; the paper's 2x20 is per
      coordinate, and here there are ``B n_pre n_post`` coordinates); the output scale is 0.1 (the
      paper's 0.01 suits parameters trained for thousands of steps, fast weights live for one episode);
    * ``F`` is clipped at ``±clip`` (default 1) like the Backpropamine traces, since the LSTM does not
      see ``F`` and cannot decay it.

    Sequence engine: this rule runs on the ``reference`` backend only (it has networks inside, which the
    fused engine does not implement); ``scan`` picks ``reference`` for it by itself.
    """

    modulation = "optional"
    trace_names = ("F", "lh", "lc")

    def __init__(
        self,
        n_pre: int,
        n_post: int,
        alpha_shape="full",
        alpha_init: float = 0.01,
        lstm_hidden: int = 6,
        lstm_layers: int = 1,
        p: float = 10.0,
        out_scale: float = 0.1,
        clip: float | None = 1.0,
    ):
        super().__init__(n_pre, n_post, alpha_shape, alpha_init)
        if p <= 0:
            raise ValueError(f"l2l: p must be > 0, got {p}")
        self.p, self.clip = float(p), None if clip is None else check_clip(clip)
        self.net = CoordinatewiseLSTM(3, lstm_hidden, lstm_layers, out_scale)

    def init_traces(self, batch: int, device=None, dtype=None) -> dict[str, Tensor]:
        dtype = dtype or torch.get_default_dtype()
        h, c = self.net.init_state((batch, self.n_pre, self.n_post), device=device, dtype=dtype)
        return {
            "F": torch.zeros(batch, self.n_pre, self.n_post, device=device, dtype=dtype),
            "lh": h,
            "lc": c,
        }

    def update(self, state: PlasticState, pre: Tensor, post: Tensor, modulation: Tensor | None) -> PlasticState:
        B = pre.shape[0]
        m = self._modulation(modulation, B)
        hebb = outer(pre, post)
        m = torch.zeros_like(hebb) if m is None else m.expand_as(hebb)
        features = torch.cat([preprocess_gradient(hebb, self.p), m.unsqueeze(-1)], dim=-1)
        delta, h, c = self.net(features, state.lh, state.lc)
        F = state.F + delta
        if self.clip is not None:
            F = clip_trace(F, self.clip)
        return state.replace(F=F, lh=h, lc=c)
