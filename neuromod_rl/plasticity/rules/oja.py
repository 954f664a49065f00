"""Oja's rule -- Oja 1982; the plastic variant of Miconi, Clune & Stanley, ICML 2018."""

from __future__ import annotations

from torch import Tensor

from neuromod_rl.plasticity.rules.base import PlasticityRule, register_rule, scalar_param
from neuromod_rl.plasticity.state import PlasticState


@register_rule("oja")
class Oja(PlasticityRule):
    """``F_ij <- F_ij + eta * y_j (x_i - F_ij y_j)`` with ``x = pre``, ``y = post`` (Miconi et al. 2018).

    The ``- F y²`` term normalises each postsynaptic neuron's incoming trace, so ``F`` stays bounded
    without a clip. ``eta`` is one learned scalar (init 0.01).
    """

    modulation = "never"

    def __init__(self, n_pre: int, n_post: int, alpha_shape="full", alpha_init: float = 0.01, eta: float = 0.01):
        super().__init__(n_pre, n_post, alpha_shape, alpha_init)
        self.eta = scalar_param(eta)

    def update(self, state: PlasticState, pre: Tensor, post: Tensor, modulation: Tensor | None) -> PlasticState:
        self._modulation(modulation, pre.shape[0])
        y = post.unsqueeze(1)
        return state.replace(F=state.F + self.eta * y * (pre.unsqueeze(2) - state.F * y))
