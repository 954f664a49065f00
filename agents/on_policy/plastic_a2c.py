"""PlasticA2C: SB3's A2C (Mnih et al. 2016) for plastic, neuromodulated policies."""

from __future__ import annotations

from typing import Any, ClassVar

from stable_baselines3 import A2C
from stable_baselines3.common.policies import BasePolicy

from neuromod_rl.agents.on_policy.plastic_ppo import PLASTIC_POLICY_ALIASES
from neuromod_rl.agents.on_policy.policies import MlpPlasticPolicy
from neuromod_rl.agents.on_policy.rollouts import PlasticOnPolicyMixin


class PlasticA2C(PlasticOnPolicyMixin, A2C):
    """A2C whose policy adapts within an episode through plastic, neuromodulated synapses.

    Every argument of :class:`stable_baselines3.A2C` is accepted unchanged, plus ``bptt_length``
    (``"episode"`` or an int). A2C trains on the whole rollout at once, so with ``"episode"`` the
    gradient spans ``n_steps`` steps: raise ``n_steps`` from A2C's default 5 to the episode length
    (the Backpropamine setting backpropagates through whole episodes).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = PLASTIC_POLICY_ALIASES

    def __init__(self, policy: str | type[MlpPlasticPolicy], env, bptt_length: int | str = "episode", **kwargs: Any):
        self._init_plastic(bptt_length)
        super().__init__(policy, env, **kwargs)
