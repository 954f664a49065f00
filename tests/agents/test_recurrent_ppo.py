"""The compatibility path: the same plastic policy classes trained by sb3_contrib.RecurrentPPO."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plastic_test_envs import cue_env
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from neuromod_rl.agents import MlpPlasticPolicy, SequenceBatch
from neuromod_rl.envs import PrevActionReward


@pytest.mark.parametrize("policy_kwargs", [dict(hidden_size=4), dict(hidden_size=4, shared_core=False)])
def test_recurrent_ppo_trains_a_plastic_policy(policy_kwargs):
    env = make_vec_env(cue_env, 2, seed=0)
    model = RecurrentPPO(MlpPlasticPolicy, env, n_steps=12, batch_size=12, n_epochs=1, policy_kwargs=policy_kwargs)
    before = [p.detach().clone() for p in model.policy.core.parameters()]
    model.learn(48)
    after = list(model.policy.core.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), "the plastic core was not trained"
    # its state tuples carry the packed plastic state: (h, c) of [1, n_envs, ceil(D / 2)]
    h, c = model._last_lstm_states.pi
    assert h.shape == (1, 2, -(-model.policy.state_dim // 2))
    mean, _ = evaluate_policy(model, env, n_eval_episodes=2)
    assert np.isfinite(mean)


def test_recurrent_evaluate_matches_plastic_sequence_path():
    """RecurrentPPO's batch-major call == the sequence path on the same data."""
    env = cue_env()
    policy = MlpPlasticPolicy(env.observation_space, env.action_space, lambda _: 1e-3, hidden_size=4)
    T, n = 5, 3
    obs = torch.rand(T, n, 3)
    starts = torch.zeros(T, n)
    starts[2, 1] = 1
    actions = torch.randint(0, 2, (T, n))
    state = policy.initial_state(n)
    lstm_states = policy._pack_rnn(state)
    batch_major = lambda x: x.transpose(0, 1).reshape(n * T, *x.shape[2:])  # noqa: E731
    v, lp, _ = policy.evaluate_actions(batch_major(obs), batch_major(actions), lstm_states, batch_major(starts))
    batch = SequenceBatch(obs.reshape(T * n, 3), starts.bool(), policy.pack_state(state), None)
    v2, lp2, _ = policy.evaluate_actions(batch, actions.reshape(T * n))
    torch.testing.assert_close(v, batch_major(v2.reshape(T, n, 1)))
    torch.testing.assert_close(lp, batch_major(lp2.reshape(T, n)))


def test_reward_modulation_works_and_td_error_is_refused_clearly():
    env = make_vec_env(lambda: PrevActionReward(cue_env()), 1, seed=0)
    RecurrentPPO(
        MlpPlasticPolicy,
        env,
        n_steps=8,
        batch_size=8,
        n_epochs=1,
        policy_kwargs=dict(hidden_size=4, modulation_source="reward"),
    ).learn(16)
    with pytest.raises(ValueError, match="td_error' is not supported by sb3_contrib.RecurrentPPO"):
        RecurrentPPO(MlpPlasticPolicy, env, policy_kwargs=dict(hidden_size=4, modulation_source="td_error"))
