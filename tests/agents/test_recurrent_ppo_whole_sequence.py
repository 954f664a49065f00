"""The RecurrentPPO baseline the studies train: sb3-contrib's algorithm, with the LSTM run over whole
sequences in training. It must compute what sb3-contrib computes (outputs, gradients, a whole update),
take its fast path on the minibatches RecurrentPPO really builds, and load sb3-contrib's files and back."""

from __future__ import annotations

import sb3_contrib
import torch
from stable_baselines3.common.env_util import make_vec_env

from neuromod_rl.agents.on_policy.recurrent_ppo import MlpLstmPolicy, RecurrentPPO
from neuromod_rl.experiment.algos import algo_class

torch.set_num_threads(1)

# CartPole episodes end at random steps under an untrained policy, so minibatch sequences start episodes
SETTINGS = dict(n_steps=64, batch_size=64, n_epochs=2, learning_rate=1e-3, seed=3, verbose=0,
                policy_kwargs=dict(lstm_hidden_size=8, net_arch=[16]))


def _pair():
    stock = sb3_contrib.RecurrentPPO("MlpLstmPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=3), **SETTINGS)
    fast = RecurrentPPO("MlpLstmPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=3), **SETTINGS)
    return stock, fast


def _count_lstm_calls(policy) -> list[int]:
    calls = [0]
    policy.lstm_actor.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_registry_trains_recurrent_ppo_with_the_whole_sequence_policy():
    cls = algo_class("recurrent_ppo")
    assert cls is RecurrentPPO and issubclass(cls, sb3_contrib.RecurrentPPO)
    assert cls.policy_aliases["MlpLstmPolicy"] is MlpLstmPolicy
    for alias, policy in cls.policy_aliases.items():  # each alias keeps sb3-contrib's policy as its base
        assert issubclass(policy, sb3_contrib.RecurrentPPO.policy_aliases[alias])
        assert policy._process_sequence is MlpLstmPolicy._process_sequence


def test_minibatch_outputs_and_gradients_equal_sb3_contribs_with_one_lstm_call_per_minibatch():
    stock, fast = _pair()
    fast.policy.load_state_dict(stock.policy.state_dict())
    stock.learn(128)  # fills the rollout buffer with real episode boundaries
    fast.policy.load_state_dict(stock.policy.state_dict())
    checked = 0
    for batch in stock.rollout_buffer.get(64):
        mask = batch.mask > 1e-8
        starts = batch.episode_starts.reshape(batch.lstm_states.pi[0].shape[1], -1)
        if not starts[:, 0].any():
            continue  # no reset in this minibatch: both take sb3-contrib's one-call path
        assert not starts[:, 1:].any()  # the buffer cuts sequences at episode starts
        outputs, grads = [], []
        for model in (stock, fast):
            model.policy.zero_grad()
            calls = _count_lstm_calls(model.policy)
            values, log_prob, entropy = model.policy.evaluate_actions(
                batch.observations, batch.actions.long().flatten(), batch.lstm_states, batch.episode_starts)
            loss = (values.flatten()[mask].sum() + log_prob[mask].sum() + entropy[mask].sum())
            loss.backward()
            outputs.append((values, log_prob, entropy))
            grads.append([p.grad.clone() for p in model.policy.parameters() if p.grad is not None])
            if model is fast:
                assert calls[0] == 1
            else:
                assert calls[0] == starts.shape[1]
        for a, b in zip(*outputs, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert len(grads[0]) == len(grads[1]) > 0
        for a, b in zip(*grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        checked += 1
    assert checked > 0


def test_a_reset_inside_a_sequence_takes_sb3_contribs_loop_and_gives_its_result():
    stock, fast = _pair()
    fast.policy.load_state_dict(stock.policy.state_dict())
    lstm = stock.policy.lstm_actor
    n_seq, steps = 3, 7
    features = torch.randn(n_seq * steps, lstm.input_size)
    states = (torch.randn(1, n_seq, 8), torch.randn(1, n_seq, 8))
    starts = torch.zeros(n_seq, steps)
    starts[0, 0] = 1.0
    starts[1, 4] = 1.0  # mid-sequence
    expected = sb3_contrib.common.recurrent.policies.RecurrentActorCriticPolicy._process_sequence(
        features, states, starts.flatten(), lstm)
    got = MlpLstmPolicy._process_sequence(features, states, starts.flatten(), lstm)
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[1])


def test_training_follows_sb3_contribs_trajectory():
    stock, fast = _pair()
    fast.policy.load_state_dict(stock.policy.state_dict())
    for model in (stock, fast):  # the same action samples: the global RNG from the same seed
        model.set_random_seed(3)
        model.learn(256)
    for (name, a), b in zip(stock.policy.state_dict().items(), fast.policy.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_saved_models_load_across_both_classes(tmp_path):
    stock, fast = _pair()
    fast.save(tmp_path / "fast.zip")
    stock.save(tmp_path / "stock.zip")
    by_contrib = sb3_contrib.RecurrentPPO.load(tmp_path / "fast.zip")
    by_ours = RecurrentPPO.load(tmp_path / "stock.zip")
    assert isinstance(by_contrib.policy, MlpLstmPolicy)
    for a, b in zip(by_ours.policy.state_dict().values(), stock.policy.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
