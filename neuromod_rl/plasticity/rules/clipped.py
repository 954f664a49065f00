"""Clipped additive Hebbian trace -- Miconi et al., "Backpropamine", ICLR 2019 (the "plastic" baseline)."""

from __future__ import annotations

from torch import Tensor

from neuromod_rl.plasticity.rules.base import PlasticityRule, check_clip, clip_trace, outer, register_rule, scalar_param
from neuromod_rl.plasticity.state import PlasticState


@register_rule("clipped")
class ClippedHebbian(PlasticityRule):
    """``F <- clip(F + eta * outer(pre, post), -c, c)`` (Miconi et al. 2019, eq. 3, non-modulated).

    A purely additive trace diverges, so it is clipped to ``[-clip, clip]`` (default 1). With
    ``soft_clip=True`` the paper's soft bound ``F + relu(eta D)(c - F) + min(eta D, 0)(F + c)``
    replaces the hard clip (on the ``reference`` backend; the ``fused`` one runs the hard clip). ``eta`` is
    one learned scalar (init 0.01).
    """

    modulation = "never"

    def __init__(
        self,
        n_pre: int,
        n_post: int,
        alpha_shape="full",
        alpha_init: float = 0.01,
        eta: float = 0.01,
        clip: float = 1.0,
        soft_clip: bool = False,
    ):
        super().__init__(n_pre, n_post, alpha_shape, alpha_init)
        self.eta = scalar_param(eta)
        self.clip, self.soft_clip = check_clip(clip), soft_clip

    def update(self, state: PlasticState, pre: Tensor, post: Tensor, modulation: Tensor | None) -> PlasticState:
        self._modulation(modulation, pre.shape[0])
        delta = self.eta * outer(pre, post)
        if self.soft_clip:
            return state.replace(F=clip_trace(state.F, self.clip, soft_delta=delta))
        return state.replace(F=clip_trace(state.F + delta, self.clip))
