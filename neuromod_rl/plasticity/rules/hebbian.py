"""Decaying Hebbian trace -- Miconi, Clune & Stanley, "Differentiable plasticity", ICML 2018."""

from __future__ import annotations

from torch import Tensor

from neuromod_rl.plasticity.rules.base import PlasticityRule, outer, register_rule, scalar_param
from neuromod_rl.plasticity.state import PlasticState


@register_rule("hebbian")
class HebbianDecay(PlasticityRule):
    """``F <- (1 - eta) F + eta * outer(pre, post)`` (Miconi et al. 2018, eq. 2).

    ``eta`` is one learned scalar (init 0.01). The decay keeps ``F`` bounded by ``max|pre·post|``,
    so no clip is needed.
    """

    modulation = "never"

    def __init__(self, n_pre: int, n_post: int, alpha_shape="full", alpha_init: float = 0.01, eta: float = 0.01):
        super().__init__(n_pre, n_post, alpha_shape, alpha_init)
        self.eta = scalar_param(eta)

    def update(self, state: PlasticState, pre: Tensor, post: Tensor, modulation: Tensor | None) -> PlasticState:
        self._modulation(modulation, pre.shape[0])
        return state.replace(F=(1 - self.eta) * state.F + self.eta * outer(pre, post))
