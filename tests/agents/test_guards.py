"""Clear errors at the SB3 boundary: off-policy algorithms given a plastic policy, a NaN traced to its
source (observation, weights, state, traces) instead of torch's "invalid values", and policy_kwargs
typed as numpy or as strings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import DDPG, SAC, TD3

from neuromod_rl.agents import MlpPlasticPolicy, PlasticPPO

OBS = spaces.Box(-1.0, 1.0, (4,), np.float32)
DISCRETE = spaces.Discrete(3)


def _policy(**kw) -> MlpPlasticPolicy:
    torch.manual_seed(0)
    return MlpPlasticPolicy(OBS, DISCRETE, lambda _: 1e-3, **{"hidden_size": 6, **kw})


@pytest.mark.parametrize("algo", [SAC, TD3, DDPG])
def test_off_policy_algorithms_refuse_a_plastic_policy_by_name(algo):
    with pytest.raises(TypeError, match=r"MlpPlasticPolicy is an on-policy .* neuromod_rl\.agents\.PlasticSAC / "
                                        r"PlasticTD3"):
        algo(MlpPlasticPolicy, "Pendulum-v1", policy_kwargs={"hidden_size": 4})


def _predict(policy, obs, state=None):
    return policy.predict(obs, state=state, episode_start=np.ones(len(obs), dtype=bool), deterministic=True)


def test_nan_observation_is_named():
    obs = np.zeros((3, 4), np.float32)
    obs[2, 1] = np.nan
    with pytest.raises(FloatingPointError, match=r"the observation holds NaN/inf in env 2"):
        _predict(_policy(), obs)


def test_nan_weight_is_named():
    policy = _policy()
    with torch.no_grad():
        policy.core.w[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"weight 'core\.w' holds NaN/inf: training diverged"):
        _predict(policy, np.zeros((2, 4), np.float32))


def test_nan_state_passed_in_is_named():
    policy = _policy()
    _, state = _predict(policy, np.zeros((2, 4), np.float32))
    state[1, 0] = np.nan  # the hidden state of env 1 (kept: no episode start on this step)
    with pytest.raises(FloatingPointError, match=r"the plastic state passed in holds NaN/inf \(field 'pi\.h'\)"):
        policy.predict(np.zeros((2, 4), np.float32), state=state, episode_start=np.zeros(2, dtype=bool))


def test_runaway_traces_are_named():
    # finite weights, a rate and a bound so large that alpha * F overflows within a few steps; the
    # ungated RNN core turns that into NaN (the LSTM's gates saturate instead)
    policy = _policy(core="rnn", rule="clipped", rule_kwargs={"clip": 1e38, "eta": 1e37})
    with torch.no_grad():
        policy.core.rule.alpha.fill_(1e30)
    obs, state = np.ones((1, 4), np.float32), None
    with pytest.raises(FloatingPointError, match=r"plastic traces became NaN/inf in this step .* grew without bound"):
        for t in range(20):
            _, state = policy.predict(obs, state=state, episode_start=np.array([t == 0]))


def test_numpy_integers_are_accepted_and_strings_for_bools_refused():
    model = PlasticPPO("MlpPlasticPolicy", "neuromod_rl/DelayedCue-v0", n_steps=8, batch_size=8,
                       policy_kwargs={"hidden_size": np.int64(8), "core_layers": np.int32(1)})
    assert model.policy.core_config.hidden_size == 8 and type(model.policy.core_config.hidden_size) is int
    with pytest.raises(ValueError, match=r"shared_core must be True or False, got 'no'"):
        PlasticPPO("MlpPlasticPolicy", "neuromod_rl/DelayedCue-v0", policy_kwargs={"shared_core": "no"})
