"""Models saved by neuromod-rl 0.1 still load: SB3 pickles a model's classes by module path, and the
flat layout's paths (``neuromod_rl.agents.policies``, ...) resolve to where the classes live now."""

from __future__ import annotations

import pickle

import pytest

from neuromod_rl.agents import PlasticPPO, PlasticSAC, SequenceReplayBuffer, SequenceRolloutBuffer
from neuromod_rl.agents.former_modules import FORMER_MODULES
from neuromod_rl.agents.on_policy.recurrent_ppo import RecurrentPPO

SAVED_BY_0_1 = {  # what a 0.1 model zip names, and the class it must unpickle to
    "neuromod_rl.agents.policies MlpPlasticPolicy": PlasticPPO.policy_aliases["MlpPlasticPolicy"],
    "neuromod_rl.agents.offpolicy_policies PlasticSACPolicy": PlasticSAC.policy_aliases["MlpPlasticPolicy"],
    "neuromod_rl.agents.buffers SequenceRolloutBuffer": SequenceRolloutBuffer,
    "neuromod_rl.agents.sequence_replay SequenceReplayBuffer": SequenceReplayBuffer,
    "neuromod_rl.experiment.recurrent_ppo MlpLstmPolicy": RecurrentPPO.policy_aliases["MlpLstmPolicy"],
}


@pytest.mark.parametrize("reference", sorted(SAVED_BY_0_1))
def test_a_class_pickled_under_its_former_path_loads(reference):
    module, name = reference.split()
    assert module in FORMER_MODULES
    assert pickle.loads(f"c{module}\n{name}\n.".encode()) is SAVED_BY_0_1[reference]
