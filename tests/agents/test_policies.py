"""The plastic policy: configuration errors, and the rollout path (one step at a time) agreeing
with the training path (whole sequences through ``scan``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from neuromod_rl.agents import MlpPlasticPolicy, MultiInputPlasticPolicy, SequenceBatch
from neuromod_rl.plasticity import available_rules

OBS = spaces.Box(-1.0, 1.0, (5,), np.float32)  # reward at index -2 (PrevActionReward layout)
ACT = spaces.Box(-1.0, 1.0, (2,), np.float32)


def make_policy(obs=OBS, act=ACT, **kw) -> MlpPlasticPolicy:
    torch.manual_seed(0)
    return MlpPlasticPolicy(obs, act, lambda _: 1e-3, **{"hidden_size": 6, **kw})


CONFIGS = [
    dict(core="rnn", rule="neuromod"),
    dict(core="rnn", rule="neuromod", modulation="fanout", alpha_shape="neuron", rule_kwargs={"clip": 2.0}),
    dict(core="rnn", rule="neuromod", modulation_source="reward"),
    dict(core="rnn", rule="retroactive", modulation_source="td_error", td_gamma=0.9),
    dict(core="rnn", rule="hebbian"),
    dict(core="lstm", rule="neuromod", shared_core=False),
    dict(core="mlp", rule="abcd", alpha_shape="none", net_arch=[5]),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_sequence_training_path_matches_rollout_steps(config):
    """evaluate_actions on whole sequences (scan) == the values and log-probs of the step-by-step rollout,
    across an episode reset in the middle and from a non-initial start state."""
    policy = make_policy(**config)
    T, n = 7, 3
    g = torch.Generator().manual_seed(1)
    obs = torch.rand(T, n, 5, generator=g) * 2 - 1
    starts = torch.zeros(T, n, dtype=torch.bool)
    starts[4, 1] = starts[2, 2] = True
    with torch.no_grad():
        state = policy.initial_state(n)
        for _ in range(3):  # a non-trivial start state (non-zero traces, td.v)
            state = policy.step(torch.rand(n, 5, generator=g), state, torch.zeros(n, dtype=torch.bool)).state
        start_flat = policy.pack_state(state)
        actions, values, log_probs, stored = [], [], [], []
        for t in range(T):
            out = policy.step(obs[t], state, starts[t])
            state = out.state
            actions.append(out.actions)
            values.append(out.values)
            log_probs.append(out.log_prob)
            stored.append(out.stored_signal)
    modulation = torch.stack(stored) if stored[0] is not None else None
    batch = SequenceBatch(obs.reshape(T * n, 5), starts, start_flat, modulation)
    v, lp, ent = policy.evaluate_actions(batch, torch.cat(actions))
    torch.testing.assert_close(v, torch.cat(values), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lp, torch.cat(log_probs), rtol=1e-5, atol=1e-5)
    assert ent.shape == (T * n,)
    # and gradients reach the plastic meta-parameters through the sequence
    (lp.sum() + v.sum()).backward()
    alpha = policy.core.rule.alpha if policy.core.rule.alpha is not None else policy.core.rule.A
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0


def test_td_error_signal_is_the_causal_td_error():
    """M(t) = r_{t-1} + gamma V(s_t) - V(s_{t-1}), 0 at an episode start."""
    policy = make_policy(rule="neuromod", modulation_source="td_error", td_gamma=0.5)
    obs = torch.rand(2, 3, 5)
    with torch.no_grad():
        s = policy.initial_state(3)
        o0 = policy.step(obs[0], s, torch.ones(3, dtype=torch.bool))
        o1 = policy.step(obs[1], o0.state, torch.tensor([False, False, True]))
    assert torch.equal(o0.stored_signal, torch.zeros(3))
    expected = obs[1, :, -2] + 0.5 * o1.values[:, 0] - o0.values[:, 0]
    torch.testing.assert_close(o1.stored_signal[:2], expected[:2])
    assert o1.stored_signal[2] == 0


def test_reward_modulation_reads_previous_reward_from_observation():
    policy = make_policy(rule="neuromod", modulation_source="reward")
    obs = torch.zeros(2, 5)
    obs[:, -2] = torch.tensor([0.5, -1.0])
    with torch.no_grad():
        out = policy.step(obs, policy.initial_state(2), torch.zeros(2, dtype=torch.bool))
    torch.testing.assert_close(out.modulation, torch.tensor([0.5, -1.0]))


def test_predict_state_round_trip_and_episode_start_resets():
    policy = make_policy()
    obs = np.random.default_rng(0).uniform(-1, 1, (4, 5)).astype(np.float32)
    a0, s0 = policy.predict(obs, deterministic=True)
    assert s0.shape == (4, policy.state_dim) and a0.shape == (4, 2)
    a1, s1 = policy.predict(obs, state=s0, deterministic=True)
    assert not np.allclose(s1, s0)
    # episode_start resets to the initial state: same as state=None
    a2, s2 = policy.predict(obs, state=s1, episode_start=np.ones(4, bool), deterministic=True)
    np.testing.assert_allclose(a2, a0, rtol=1e-6)
    np.testing.assert_allclose(s2, s0, rtol=1e-6)
    with pytest.raises(ValueError, match=r"shape \[n_envs, "):
        policy.predict(obs, state=s0[:, :-1])


def test_dict_observations():
    obs_space = spaces.Dict({"a": spaces.Box(0, 1, (3,), np.float32), "b": spaces.Box(0, 1, (2,), np.float32)})
    policy = MultiInputPlasticPolicy(obs_space, spaces.Discrete(3), lambda _: 1e-3, hidden_size=4)
    obs = {"a": np.zeros((2, 3), np.float32), "b": np.ones((2, 2), np.float32)}
    actions, state = policy.predict(obs)
    assert actions.shape == (2,) and state.shape == (2, policy.state_dim)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rule="nope"), r"rule='nope'.*valid choices: \[.*'neuromod'"),
        (dict(core="gru"), r"core='gru'.*valid choices: \['lstm', 'mlp', 'rnn'\]"),
        (dict(hidden_sise=8), r"unknown policy_kwargs \['hidden_sise'\]; plastic keys: .*hidden_size"),
        (dict(modulation="broadcast"), r"modulation='broadcast'.*valid choices"),
        (dict(modulation_source="dopamine"), r"modulation_source='dopamine'.*'hidden', 'reward', 'td_error'"),
        (dict(alpha_shape="diag"), r"alpha_shape='diag'.*valid choices"),
        (dict(hidden_size=0), r"hidden_size must be a positive int"),
        (dict(rule="hebbian", modulation_source="reward"), r"needs a modulated rule"),
        (dict(modulation_source="reward", reward_index=9), r"reward_index=9 of a Box observation of size 5"),
        (dict(shared_core=True, share_features_extractor=False), r"shared_core=True needs share_features_extractor"),
    ],
)
def test_bad_policy_kwargs_name_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_policy(**kwargs)


def test_every_registered_rule_is_offered_in_the_error():
    with pytest.raises(ValueError) as err:
        make_policy(rule="nope")
    for name in available_rules():
        assert repr(name) in str(err.value)


def test_reward_source_needs_box_or_dict_observation():
    with pytest.raises(ValueError, match="needs a Box or Dict observation"):
        make_policy(obs=spaces.Discrete(4), modulation_source="reward")


def test_feed_forward_entry_points_refuse_clearly():
    policy = make_policy()
    with pytest.raises(TypeError, match="is recurrent.*PlasticPPO"):
        policy(torch.zeros(2, 5))
    with pytest.raises(TypeError, match="is recurrent"):
        policy.evaluate_actions(torch.zeros(2, 5), torch.zeros(2, 2))


def test_default_heads_are_two_64_unit_layers_and_net_arch_empty_gives_linear_heads():
    """The plastic policy's heads after the core: RecurrentPPO's 64x64 MLPs unless ``net_arch`` says otherwise
    (``[]``: Backpropamine's linear action and value heads on ``h_t``)."""
    import gymnasium as gym

    from neuromod_rl.agents import PlasticPPO
    from neuromod_rl.agents.on_policy.policies import DEFAULT_NET_ARCH

    env = gym.make("neuromod_rl/Recall-v0")
    policy = PlasticPPO("MlpPlasticPolicy", env, n_steps=52, batch_size=52, policy_kwargs={"hidden_size": 8}).policy
    assert list(DEFAULT_NET_ARCH) == [64, 64] and policy.net_arch == [64, 64]
    assert [m.out_features for m in policy.mlp_extractor.policy_net if hasattr(m, "out_features")] == [64, 64]
    assert policy.action_net.in_features == 64 and policy.value_net.in_features == 64
    linear = PlasticPPO("MlpPlasticPolicy", env, n_steps=52, batch_size=52,
                        policy_kwargs={"hidden_size": 8, "net_arch": []}).policy
    assert len(linear.mlp_extractor.policy_net) == 0 and linear.action_net.in_features == 8


def test_a_model_saved_while_the_default_heads_were_linear_loads_with_linear_heads(tmp_path):
    """A zip whose ``policy_kwargs`` name no ``net_arch`` was saved while the default heads were linear:
    ``load`` rebuilds those heads (not today's default) and the weights fit; every save now names its heads."""
    import gymnasium as gym
    import numpy as np
    from stable_baselines3.common.save_util import load_from_zip_file, save_to_zip_file

    from neuromod_rl.agents import PlasticPPO

    env = gym.make("neuromod_rl/Recall-v0")
    model = PlasticPPO("MlpPlasticPolicy", env, n_steps=52, batch_size=52, seed=0,
                       policy_kwargs={"hidden_size": 8, "net_arch": []})
    model.save(tmp_path / "new.zip")
    fresh = PlasticPPO("MlpPlasticPolicy", env, n_steps=52, batch_size=52, policy_kwargs={"hidden_size": 8})
    assert fresh.policy_kwargs["net_arch"] == [64, 64]  # named, so its saves rebuild the same heads
    data, params, variables = load_from_zip_file(tmp_path / "new.zip")
    del data["policy_kwargs"]["net_arch"]  # as a save made before the default changed
    save_to_zip_file(tmp_path / "old.zip", data=data, params=params, pytorch_variables=variables)
    loaded = PlasticPPO.load(tmp_path / "old.zip")
    assert loaded.policy.net_arch == []
    obs = np.eye(4, dtype=np.float32)[[0, 1, 2, 3]]
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
