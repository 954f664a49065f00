"""What a user coming from sb3-contrib's RecurrentPPO relies on: the plastic policy names, the state
helpers (``initial_state`` / ``reset_state``), an honest ``lstm_actor`` and clear refusals of SB3's
stateless entry points."""

from __future__ import annotations

import numpy as np
import pytest
import sb3_contrib
import torch
from gymnasium import spaces

from neuromod_rl.agents import (
    CnnPlasticPolicy,
    MlpPlasticPolicy,
    MultiInputPlasticPolicy,
    register_with_recurrent_ppo,
)
from neuromod_rl.plasticity import PlasticState

OBS = spaces.Box(-1.0, 1.0, (5,), np.float32)
ACT = spaces.Discrete(3)


def make_policy(**kw) -> MlpPlasticPolicy:
    torch.manual_seed(0)
    return MlpPlasticPolicy(OBS, ACT, lambda _: 1e-3, **{"hidden_size": 6, **kw})


def test_recurrent_ppo_knows_the_plastic_policy_names():
    aliases = sb3_contrib.RecurrentPPO.policy_aliases
    assert aliases["MlpPlasticPolicy"] is MlpPlasticPolicy
    assert aliases["CnnPlasticPolicy"] is CnnPlasticPolicy
    assert aliases["MultiInputPlasticPolicy"] is MultiInputPlasticPolicy
    assert {"MlpLstmPolicy", "CnnLstmPolicy", "MultiInputLstmPolicy"} <= set(aliases)  # its own are kept
    model = sb3_contrib.RecurrentPPO("MlpPlasticPolicy", "CartPole-v1", n_steps=8, policy_kwargs=dict(hidden_size=4))
    assert isinstance(model.policy, MlpPlasticPolicy)


def test_registering_never_replaces_a_recurrent_ppo_alias():
    with pytest.raises(ValueError, match="MlpLstmPolicy"):
        register_with_recurrent_ppo(MlpPlasticPolicy, {"MlpLstmPolicy": MlpPlasticPolicy})
    assert sb3_contrib.RecurrentPPO.policy_aliases["MlpLstmPolicy"] is not MlpPlasticPolicy


@pytest.mark.parametrize("config", [dict(), dict(core="lstm", shared_core=False)], ids=["rnn", "lstm-own-critic"])
def test_reset_state_row_acts_like_a_fresh_episode_start(config):
    policy = make_policy(**config)
    g = torch.Generator().manual_seed(1)
    obs = [torch.rand(3, 5, generator=g).numpy() * 2 - 1 for _ in range(4)]
    state = None
    for o in obs[:3]:  # move every env away from its initial state
        _, state = policy.predict(o, state=state, deterministic=True)
    mask = np.array([False, True, False])
    reset = policy.reset_state(state, mask)
    assert isinstance(reset, np.ndarray) and reset.shape == state.shape
    np.testing.assert_array_equal(reset[[0, 2]], state[[0, 2]])
    np.testing.assert_array_equal(reset[1], policy.initial_state(1).flat().numpy()[0])
    a_reset, s_reset = policy.predict(obs[3], state=reset, deterministic=True)
    a_start, s_start = policy.predict(obs[3], state=state, episode_start=mask, deterministic=True)
    np.testing.assert_array_equal(a_reset, a_start)
    np.testing.assert_allclose(s_reset, s_start)


def test_initial_state_is_a_plastic_state_that_predict_accepts():
    policy = make_policy()
    initial = policy.initial_state(2)
    assert isinstance(initial, PlasticState) and initial.flat().shape == (2, policy.state_dim)
    obs = np.zeros((2, 5), np.float32)
    a_init, s_init = policy.predict(obs, state=initial, deterministic=True)
    a_none, s_none = policy.predict(obs, state=None, deterministic=True)
    np.testing.assert_array_equal(a_init, a_none)
    np.testing.assert_array_equal(s_init, s_none)
    reset = policy.reset_state(initial, torch.tensor([True, False]))  # a PlasticState stays one
    assert isinstance(reset, PlasticState)


def test_reset_state_refuses_a_mask_of_the_wrong_length():
    policy = make_policy()
    state = policy.initial_state(3).flat().numpy()
    with pytest.raises(ValueError, match=r"mask has 2 entries.*the state has 3 envs"):
        policy.reset_state(state, [True, False])


def test_lstm_actor_reports_the_core_width_and_the_packed_width():
    policy = make_policy(hidden_size=16)
    spec = policy.lstm_actor
    assert spec.core_hidden_size == 16
    assert spec.num_layers == 1
    # RecurrentPPO sizes its (h, c) tensors from hidden_size: together they must hold the flat state
    assert spec.hidden_size == -(-policy.state_dim // 2)


def test_stateless_sb3_entry_points_name_the_stateful_call():
    policy = make_policy()
    obs = torch.zeros(2, 5)
    for call in (
        lambda: policy.get_distribution(obs),
        lambda: policy.get_distribution(obs, None, torch.zeros(2)),  # RecurrentPPO's signature
        lambda: policy.evaluate_actions(obs, torch.zeros(2)),
        lambda: policy.predict_values(obs),
        lambda: policy(obs),
    ):
        with pytest.raises(TypeError, match=r"predict\(obs, state=\.\.\., episode_start=\.\.\.\).*policy\.step"):
            call()
    assert policy.extract_features(obs).shape == (2, 5)  # the features extractor is stateless: it works
