"""Simple neuromodulated plasticity -- Miconi et al., "Backpropamine", ICLR 2019."""

from __future__ import annotations

from torch import Tensor

from neuromod_rl.plasticity.rules.base import PlasticityRule, check_clip, clip_trace, outer, register_rule
from neuromod_rl.plasticity.state import PlasticState


@register_rule("neuromod")
class Neuromodulated(PlasticityRule):
    """``F <- clip(F + M(t) * outer(pre, post), -c, c)`` (Miconi et al. 2019, eq. 4).

    ``M(t)`` is computed by the network itself each step -- ``tanh(Linear_{N->1}(h_t))`` -- or
    supplied by the caller (reward, TD error). It arrives as ``[B]`` (one scalar per sequence) or
    ``[B, n_post]`` (the fan-out variant, one signed rate per postsynaptic neuron; the paper clips
    that variant at 2: pass ``clip=2``). ``soft_clip=True`` uses the paper's soft bound (on the
    ``reference`` backend; the ``fused`` one runs the hard clip).
    """

    modulation = "required"

    def __init__(
        self,
        n_pre: int,
        n_post: int,
        alpha_shape="full",
        alpha_init: float = 0.01,
        clip: float = 1.0,
        soft_clip: bool = False,
    ):
        super().__init__(n_pre, n_post, alpha_shape, alpha_init)
        self.clip, self.soft_clip = check_clip(clip), soft_clip

    def update(self, state: PlasticState, pre: Tensor, post: Tensor, modulation: Tensor | None) -> PlasticState:
        m = self._modulation(modulation, pre.shape[0])
        delta = m * outer(pre, post)
        if self.soft_clip:
            return state.replace(F=clip_trace(state.F, self.clip, soft_delta=delta))
        return state.replace(F=clip_trace(state.F + delta, self.clip))
