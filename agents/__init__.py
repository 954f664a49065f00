"""Stable-Baselines3 integration: plastic policies, PlasticPPO / PlasticA2C, the RecurrentPPO path.

>>> from neuromod_rl.agents import PlasticPPO
>>> model = PlasticPPO("MlpPlasticPolicy", "neuromod_rl/DelayedCue-v0", n_steps=70,
...                    policy_kwargs=dict(rule="neuromod", core="rnn", hidden_size=32))
>>> model.learn(20_000)

The same policy classes train under ``sb3_contrib.RecurrentPPO`` (see
:mod:`neuromod_rl.agents.recurrent_adapter`).
"""

from neuromod_rl.agents.buffers import SequenceBatch, SequenceDictRolloutBuffer, SequenceRolloutBuffer
from neuromod_rl.agents.core_factory import CORES, MODULATION_SOURCES, PLASTIC_KEYS, CoreConfig, build_core
from neuromod_rl.agents.es import ESTrainer
from neuromod_rl.agents.plastic_a2c import PlasticA2C
from neuromod_rl.agents.plastic_ppo import PLASTIC_POLICY_ALIASES, PlasticPPO
from neuromod_rl.agents.policies import (
    CnnPlasticPolicy,
    MlpPlasticPolicy,
    MultiInputPlasticPolicy,
    PlasticActorCriticPolicy,
)
from neuromod_rl.agents.recurrent_adapter import RecurrentPPOAdapterMixin, register_with_recurrent_ppo

import neuromod_rl  # noqa: F401  (registers the neuromod_rl/... env ids)

register_with_recurrent_ppo(PlasticActorCriticPolicy)

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
    "PlasticA2C",
    "PlasticActorCriticPolicy",
    "PlasticPPO",
    "RecurrentPPOAdapterMixin",
    "SequenceBatch",
    "SequenceDictRolloutBuffer",
    "SequenceRolloutBuffer",
    "build_core",
    "register_with_recurrent_ppo",
]
