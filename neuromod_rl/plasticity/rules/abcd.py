"""Generalised Hebbian ABCD rule -- Najarro & Risi, "Meta-learning through Hebbian plasticity in
random networks", NeurIPS 2020."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neuromod_rl.plasticity.rules.base import PlasticityRule, register_rule
from neuromod_rl.plasticity.state import PlasticState


@register_rule("abcd")
class ABCD(PlasticityRule):
    """``ΔF_ij = eta_ij (A_ij x_i y_j + B_ij x_i + C_ij y_j + D_ij)``, ``F <- F + m ΔF``.

    Every synapse has its own ``A, B, C, D, eta`` (Najarro & Risi 2020, eq. 1). ``m`` is an
    optional modulation (``[B]`` or ``[B, n_post]``; 1 when absent). By default ``alpha_shape="none"``
    and the trace *is* the weight: the paper starts each episode from random weights
    ``U[-init_scale, init_scale]`` -- here one fixed draw per module (a buffer, so the run stays
    deterministic; :meth:`redraw_initial_weights` draws again). ``max_norm=True`` divides the layer
    by its max ``|F|`` after every update, as the paper optionally does.

    Sequence engine: the ``fused`` backend runs this rule in every cell, with or without modulation and
    ``max_norm``.
    """

    modulation = "optional"

    def __init__(
        self,
        n_pre: int,
        n_post: int,
        alpha_shape="none",
        alpha_init: float = 0.01,
        init_scale: float = 0.1,
        coeff_scale: float = 0.1,
        eta: float = 0.01,
        max_norm: bool = False,
    ):
        super().__init__(n_pre, n_post, alpha_shape, alpha_init)
        shape = (n_pre, n_post)
        self.A = nn.Parameter(coeff_scale * (2 * torch.rand(shape) - 1))
        self.B = nn.Parameter(coeff_scale * (2 * torch.rand(shape) - 1))
        self.C = nn.Parameter(coeff_scale * (2 * torch.rand(shape) - 1))
        self.D = nn.Parameter(coeff_scale * (2 * torch.rand(shape) - 1))
        self.eta = nn.Parameter(torch.full(shape, float(eta)))
        self.init_scale, self.max_norm = float(init_scale), max_norm
        self.register_buffer("F0", torch.empty(shape))
        self.redraw_initial_weights()

    def redraw_initial_weights(self, generator: torch.Generator | None = None) -> None:
        """Draw the episode-start weights ``U[-init_scale, init_scale]`` again."""
        with torch.no_grad():
            u = torch.rand(self.F0.shape, generator=generator, device=self.F0.device, dtype=self.F0.dtype)
            self.F0.copy_(self.init_scale * (2 * u - 1))

    def init_traces(self, batch: int, device=None, dtype=None) -> dict[str, Tensor]:
        F0 = self.F0.to(device=device, dtype=dtype or self.F0.dtype)
        return {"F": F0.expand(batch, -1, -1).clone()}

    def update(self, state: PlasticState, pre: Tensor, post: Tensor, modulation: Tensor | None) -> PlasticState:
        m = self._modulation(modulation, pre.shape[0])
        x, y = pre.unsqueeze(2), post.unsqueeze(1)
        delta = self.eta * (self.A * x * y + self.B * x + self.C * y + self.D)
        F = state.F + (delta if m is None else m * delta)
        if self.max_norm:
            F = F / F.abs().amax(dim=(1, 2), keepdim=True).clamp_min(1e-8)
        return state.replace(F=F)
