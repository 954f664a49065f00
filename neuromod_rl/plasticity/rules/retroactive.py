"""Retroactive neuromodulation through an eligibility trace -- Miconi et al., "Backpropamine", ICLR 2019."""

from __future__ import annotations

from torch import Tensor

from neuromod_rl.plasticity.rules.base import PlasticityRule, check_clip, clip_trace, outer, register_rule, scalar_param
from neuromod_rl.plasticity.state import PlasticState


@register_rule("retroactive")
class Retroactive(PlasticityRule):
    """Eligibility-trace neuromodulation (Miconi et al. 2019, eqs. 5-6). Within one step:

    1. ``F <- clip(F + M(t) * E, -c, c)`` using the *previous* eligibility trace ``E``;
    2. ``E <- (1 - eta_e) E + eta_e * outer(pre, post)``.

    So a modulatory event at time t credits the co-activations of the recent past, not only the
    current one. ``eta_e`` is one learned scalar (init 0.1; the paper leaves it open).
    """

    modulation = "required"
    trace_names = ("F", "E")

    def __init__(
        self,
        n_pre: int,
        n_post: int,
        alpha_shape="full",
        alpha_init: float = 0.01,
        eta_e: float = 0.1,
        clip: float = 1.0,
    ):
        super().__init__(n_pre, n_post, alpha_shape, alpha_init)
        self.eta_e = scalar_param(eta_e)
        self.clip = check_clip(clip)

    def update(self, state: PlasticState, pre: Tensor, post: Tensor, modulation: Tensor | None) -> PlasticState:
        m = self._modulation(modulation, pre.shape[0])
        F = clip_trace(state.F + m * state.E, self.clip)
        E = (1 - self.eta_e) * state.E + self.eta_e * outer(pre, post)
        return state.replace(F=F, E=E)
