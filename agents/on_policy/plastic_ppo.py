"""PlasticPPO: SB3's PPO (Schulman et al. 2017) for plastic, neuromodulated policies."""

from __future__ import annotations

from typing import Any, ClassVar

from stable_baselines3 import PPO
from stable_baselines3.common.policies import BasePolicy

from neuromod_rl.agents.on_policy.policies import CnnPlasticPolicy, MlpPlasticPolicy, MultiInputPlasticPolicy
from neuromod_rl.agents.on_policy.rollouts import PlasticOnPolicyMixin

PLASTIC_POLICY_ALIASES: dict[str, type[BasePolicy]] = {
    "MlpPlasticPolicy": MlpPlasticPolicy,
    "CnnPlasticPolicy": CnnPlasticPolicy,
    "MultiInputPlasticPolicy": MultiInputPlasticPolicy,
}


class PlasticPPO(PlasticOnPolicyMixin, PPO):
    """PPO whose policy adapts within an episode through plastic, neuromodulated synapses.

    Every argument of :class:`stable_baselines3.PPO` is accepted unchanged, plus ``bptt_length``
    (``"episode"``, default, or an int; see :class:`~neuromod_rl.agents.on_policy.rollouts.PlasticOnPolicyMixin`).
    A minibatch of ``batch_size`` steps is ``batch_size // sequence length`` whole sequences (at
    least one). PPO's loss, clipping and optimisation are SB3's ``PPO.train``, untouched.

    Example:
        >>> model = PlasticPPO("MlpPlasticPolicy", "neuromod_rl/DelayedCue-v0",
        ...                    policy_kwargs=dict(rule="neuromod", hidden_size=32), n_steps=70)
        >>> model.learn(10_000)
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = PLASTIC_POLICY_ALIASES

    def __init__(self, policy: str | type[MlpPlasticPolicy], env, bptt_length: int | str = "episode", **kwargs: Any):
        self._init_plastic(bptt_length)
        super().__init__(policy, env, **kwargs)
