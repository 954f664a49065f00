"""Plastic policies and the velocity-masked tasks against hostile input: a Dict observation given to a
policy that reads one array, an ``episode_start`` of the wrong length, unknown reset options. Each is
refused with a message naming the problem and the fix, never a bare library error."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
from plastic_test_envs import CueRecall, DictCue, DictCueRecall, cue_env
from stable_baselines3.common.env_util import make_vec_env

from neuromod_rl.agents import PlasticPPO, PlasticSAC

PPO_KW = dict(n_steps=8, batch_size=8, policy_kwargs=dict(hidden_size=4), seed=0)
SAC_KW = dict(sequence_length=4, buffer_size=64, learning_starts=8, policy_kwargs=dict(hidden_size=4), seed=0)


def _ppo(policy: str, env: gym.Env) -> PlasticPPO:
    return PlasticPPO(policy, env, **PPO_KW)


def _sac(policy: str, env: gym.Env) -> PlasticSAC:
    return PlasticSAC(policy, env, **SAC_KW)


# ------------------------------------------------------------------------------ Dict observations
@pytest.mark.parametrize("make, env", [(_ppo, lambda: DictCue(cue_env())), (_sac, DictCueRecall)])
@pytest.mark.parametrize("policy", ["MlpPlasticPolicy", "CnnPlasticPolicy"])
def test_a_dict_observation_with_a_single_array_policy_names_the_multi_input_policy(make, env, policy):
    with pytest.raises(ValueError, match=rf"use `MultiInputPlasticPolicy` with a Dict .*\['cue'.*not `{policy}`"):
        make(policy, env())


@pytest.mark.parametrize("make, env", [(_ppo, lambda: DictCue(cue_env())), (_sac, DictCueRecall)])
def test_the_multi_input_policy_still_acts_on_a_dict_observation(make, env):
    model = make("MultiInputPlasticPolicy", env())
    obs, _ = model.env.envs[0].reset(seed=0)
    actions, state = model.predict(obs)
    assert model.action_space.contains(actions) and state.shape[0] == 1


@pytest.mark.parametrize("make, env", [(_ppo, lambda: cue_env()), (_sac, CueRecall)])
def test_the_multi_input_policy_on_a_single_array_observation_names_the_mlp_policy(make, env):
    with pytest.raises(ValueError, match=r"MultiInputPlasticPolicy reads a Dict observation.*`MlpPlasticPolicy`"):
        make("MultiInputPlasticPolicy", env())


# ------------------------------------------------------------------------------ predict's episode_start
@pytest.mark.parametrize("make, env", [(_ppo, cue_env), (_sac, CueRecall)])
@pytest.mark.parametrize("starts", [[True, False, True], [True], np.zeros((2, 2), bool)])
def test_predict_with_an_episode_start_of_the_wrong_length_names_the_number_of_envs(make, env, starts):
    model = make("MlpPlasticPolicy", make_vec_env(env, 2, seed=0))
    obs = model.env.reset()
    n = np.asarray(starts).size
    with pytest.raises(ValueError, match=rf"episode_start has {n} entries.*2 envs.*one flag per env"):
        model.predict(obs, episode_start=starts)
    actions, _ = model.predict(obs, episode_start=np.array([True, False]))  # the right length still works
    assert len(actions) == 2


# ------------------------------------------------------------------------------ NoVel reset options
NOVEL = {
    "neuromod_rl/CartPoleNoVel-v1": {"low": -0.01, "high": 0.01},
    "neuromod_rl/PendulumNoVel-v1": {"x_init": 0.5, "y_init": 0.5},
    "neuromod_rl/MountainCarNoVel-v0": {"low": -0.55, "high": -0.45},
    "neuromod_rl/MountainCarContinuousNoVel-v0": {"low": -0.55, "high": -0.45},
}


@pytest.mark.parametrize("env_id", NOVEL)
def test_masked_tasks_refuse_unknown_or_mistyped_reset_options(env_id):
    env = gym.make(env_id)
    keys = sorted(NOVEL[env_id])
    with pytest.raises(ValueError, match=rf"unknown options key\(s\) \['hihg'\]; valid keys are .*{keys[0]}"):
        env.reset(seed=0, options={"hihg": 0.1})
    with pytest.raises(ValueError, match=re.escape("options=['low'] is not a dict")):
        env.reset(seed=0, options=["low"])
    obs, _ = env.reset(seed=0, options=NOVEL[env_id])  # the base task's own options still work
    assert env.observation_space.contains(obs)
    env.reset(seed=0, options=None)
