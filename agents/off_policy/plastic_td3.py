"""PlasticTD3: SB3's TD3 (Fujimoto et al. 2018) with plastic actor and critic cores trained on sequences."""

from __future__ import annotations

from typing import ClassVar

from stable_baselines3 import TD3
from stable_baselines3.common.policies import BasePolicy

from neuromod_rl.agents.off_policy.policies import (
    CnnPlasticTD3Policy,
    MultiInputPlasticTD3Policy,
    PlasticTD3Policy,
)
from neuromod_rl.agents.off_policy.rollouts import PlasticOffPolicyMixin


class PlasticTD3(PlasticOffPolicyMixin, TD3):
    """TD3 whose actor and critics adapt within an episode through plastic, neuromodulated synapses.

    Every argument of :class:`stable_baselines3.TD3` is accepted unchanged (``n_steps`` must stay 1,
    ``optimize_memory_usage`` False), plus ``sequence_length`` (default 32), ``burn_in`` (0) and
    ``start_state`` (``"stored"`` or ``"zero"``); see
    :class:`~neuromod_rl.agents.off_policy.rollouts.PlasticOffPolicyMixin`. TD3's losses, target policy
    smoothing, delayed actor updates and target networks (the target actor and critics have their own
    plastic cores) are SB3's ``TD3.train``, untouched. As with SB3's TD3, exploration comes from
    ``action_noise`` (e.g. ``NormalActionNoise``).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPlasticPolicy": PlasticTD3Policy,
        "CnnPlasticPolicy": CnnPlasticTD3Policy,
        "MultiInputPlasticPolicy": MultiInputPlasticTD3Policy,
    }
