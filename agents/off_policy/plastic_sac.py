"""PlasticSAC: SB3's SAC (Haarnoja et al. 2018) with plastic actor and critic cores trained on sequences."""

from __future__ import annotations

from typing import ClassVar

from stable_baselines3 import SAC
from stable_baselines3.common.policies import BasePolicy

from neuromod_rl.agents.off_policy.policies import (
    CnnPlasticSACPolicy,
    MultiInputPlasticSACPolicy,
    PlasticSACPolicy,
)
from neuromod_rl.agents.off_policy.rollouts import PlasticOffPolicyMixin


class PlasticSAC(PlasticOffPolicyMixin, SAC):
    """SAC whose actor and critics adapt within an episode through plastic, neuromodulated synapses.

    Every argument of :class:`stable_baselines3.SAC` is accepted unchanged (``n_steps`` must stay 1,
    ``optimize_memory_usage`` False, ``use_sde`` False), plus the sequence settings
    ``sequence_length`` (default 32), ``burn_in`` (0) and ``start_state`` (``"stored"`` or ``"zero"``);
    see :class:`~neuromod_rl.agents.off_policy.rollouts.PlasticOffPolicyMixin`. A gradient step
    samples ``batch_size // sequence_length`` whole sequences from the
    :class:`~neuromod_rl.agents.off_policy.sequence_replay.SequenceReplayBuffer`; SAC's losses, entropy tuning and
    target updates are SB3's ``SAC.train``, untouched. ``policy_kwargs`` take the plastic keys
    (``rule``, ``core``, ``hidden_size``, ``shared_core``, ``freeze_plasticity``, ...; see
    :class:`~neuromod_rl.agents.off_policy.policies.PlasticOffPolicyPolicyMixin`).

    Example:
        >>> model = PlasticSAC("MlpPlasticPolicy", "neuromod_rl/PendulumNoVel-v1", sequence_length=16,
        ...                    policy_kwargs=dict(hidden_size=32))
        >>> model.learn(10_000)
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPlasticPolicy": PlasticSACPolicy,
        "CnnPlasticPolicy": CnnPlasticSACPolicy,
        "MultiInputPlasticPolicy": MultiInputPlasticSACPolicy,
    }
