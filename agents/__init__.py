"""Stable-Baselines3 integration: plastic policies, PlasticPPO / PlasticA2C, the RecurrentPPO path.

This folder (``agents/`` in the repository) installs as the package ``neuromod_rl.agents``; import it
by that name (nothing is installed as a top-level ``agents``).

>>> from neuromod_rl.agents import PlasticPPO
>>> model = PlasticPPO("MlpPlasticPolicy", "neuromod_rl/DelayedCue-v0", n_steps=70,
...                    policy_kwargs=dict(rule="neuromod", core="rnn", hidden_size=32))
>>> model.learn(20_000)

The same policy classes train under ``sb3_contrib.RecurrentPPO`` (see
:mod:`neuromod_rl.agents.on_policy.recurrent_adapter`).

Off-policy: ``PlasticSAC`` / ``PlasticTD3`` (SB3's SAC / TD3 with plastic actor and critic cores and a
sequence replay buffer):

>>> from neuromod_rl.agents import PlasticSAC
>>> model = PlasticSAC("MlpPlasticPolicy", "neuromod_rl/PendulumNoVel-v1", policy_kwargs=dict(hidden_size=32))
>>> model.learn(10_000)
"""

import neuromod_rl  # noqa: F401  (registers the neuromod_rl/... env ids)
from neuromod_rl.agents import former_modules  # noqa: F401  (models saved by 0.1 name their classes by these)
from neuromod_rl.agents.common.core_factory import CORES, MODULATION_SOURCES, PLASTIC_KEYS, CoreConfig, build_core
from neuromod_rl.agents.es import ESTrainer
from neuromod_rl.agents.off_policy.plastic_sac import PlasticSAC
from neuromod_rl.agents.off_policy.plastic_td3 import PlasticTD3
from neuromod_rl.agents.off_policy.policies import (
    MultiInputPlasticSACPolicy,
    MultiInputPlasticTD3Policy,
    PlasticSACPolicy,
    PlasticTD3Policy,
)
from neuromod_rl.agents.off_policy.sequence_replay import SequenceDictReplayBuffer, SequenceReplayBuffer
from neuromod_rl.agents.on_policy.buffers import SequenceBatch, SequenceDictRolloutBuffer, SequenceRolloutBuffer
from neuromod_rl.agents.on_policy.plastic_a2c import PlasticA2C
from neuromod_rl.agents.on_policy.plastic_ppo import PLASTIC_POLICY_ALIASES, PlasticPPO
from neuromod_rl.agents.on_policy.policies import (
    CnnPlasticPolicy,
    MlpPlasticPolicy,
    MultiInputPlasticPolicy,
    PlasticActorCriticPolicy,
)
from neuromod_rl.agents.on_policy.recurrent_adapter import RecurrentPPOAdapterMixin, register_with_recurrent_ppo
from neuromod_rl.plasticity import freeze_plasticity

register_with_recurrent_ppo(PlasticActorCriticPolicy, PLASTIC_POLICY_ALIASES)

__all__ = [
    "CORES",
    "MODULATION_SOURCES",
    "PLASTIC_KEYS",
    "PLASTIC_POLICY_ALIASES",
    "CnnPlasticPolicy",
    "CoreConfig",
    "ESTrainer",
    "MlpPlasticPolicy",
    "MultiInputPlasticPolicy",
    "MultiInputPlasticSACPolicy",
    "MultiInputPlasticTD3Policy",
    "PlasticA2C",
    "PlasticActorCriticPolicy",
    "PlasticPPO",
    "PlasticSAC",
    "PlasticSACPolicy",
    "PlasticTD3",
    "PlasticTD3Policy",
    "RecurrentPPOAdapterMixin",
    "SequenceBatch",
    "SequenceDictReplayBuffer",
    "SequenceDictRolloutBuffer",
    "SequenceReplayBuffer",
    "SequenceRolloutBuffer",
    "build_core",
    "freeze_plasticity",
    "register_with_recurrent_ppo",
]
