"""PlasticPPO / PlasticA2C with the SB3 API: spaces, VecEnvs, callbacks, save/load, seeding, diagnostics."""

from __future__ import annotations

import hashlib
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from plastic_test_envs import DictCue, TinyImage, TinyMultiDiscrete, cue_env, record_log_dumps
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

from neuromod_rl.agents import PlasticA2C, PlasticPPO, SequenceRolloutBuffer


def test_rollout_buffer_stores_state_only_at_sequence_starts():
    """State memory: one [n_envs, D] per sequence -- for 'episode' independent of n_steps."""
    sizes = {}
    for n_steps in (8, 32):
        model = PlasticPPO(
            "MlpPlasticPolicy",
            make_vec_env(cue_env, 2, seed=0),
            n_steps=n_steps,
            batch_size=16,
            n_epochs=1,
            policy_kwargs=dict(hidden_size=4),
        )
        model.learn(n_steps * 2)
        buf = model.rollout_buffer
        assert isinstance(buf, SequenceRolloutBuffer)
        assert buf.start_states.shape == (1, 2, model.policy.state_dim)
        sizes[n_steps] = buf.state_nbytes()
    assert sizes[8] == sizes[32] > 0
    chunked = PlasticPPO(
        "MlpPlasticPolicy",
        make_vec_env(cue_env, 2, seed=0),
        n_steps=32,
        batch_size=16,
        bptt_length=8,
        n_epochs=1,
        policy_kwargs=dict(hidden_size=4),
    )
    chunked.learn(64)
    assert chunked.rollout_buffer.start_states.shape == (4, 2, chunked.policy.state_dim)


def test_minibatches_are_whole_time_major_sequences():
    model = PlasticPPO(
        "MlpPlasticPolicy",
        make_vec_env(cue_env, 3, seed=0),
        n_steps=8,
        bptt_length=4,
        batch_size=8,
        n_epochs=1,
        policy_kwargs=dict(hidden_size=4),
    )
    model.learn(24)
    buf = model.rollout_buffer
    seen = 0
    for batch in buf.get(8):
        seq = batch.observations
        assert seq.seq_len == 4 and seq.n_seq == 2
        obs = seq.observations.reshape(4, 2, -1)
        for s in range(2):
            # find the (chunk, env) this sequence came from and compare every step
            matches = [
                (c, e)
                for c in range(2)
                for e in range(3)
                if np.allclose(buf.observations[4 * c : 4 * c + 4, e], obs[:, s].numpy())
                and torch.equal(buf.start_states[c, e], seq.start_state[s])
            ]
            assert matches, "a minibatch sequence is not a contiguous chunk of one env with its stored state"
        seen += seq.n_seq
    assert seen == 6


@pytest.mark.parametrize("bptt", ["episode", 3, 2.5, 0])
def test_bptt_length_validation(bptt):
    env = make_vec_env(cue_env, 1, seed=0)
    if bptt == "episode":
        PlasticPPO("MlpPlasticPolicy", env, n_steps=8, batch_size=8, bptt_length=bptt)
        return
    match = "must divide n_steps=8" if bptt == 3 else "bptt_length must be 'episode'"
    with pytest.raises(ValueError, match=match):
        PlasticPPO("MlpPlasticPolicy", env, n_steps=8, batch_size=8, bptt_length=bptt)


def test_batch_size_shorter_than_a_sequence_warns_with_the_gradient_steps_it_costs():
    """A minibatch is whole sequences: batch_size=8 under 32-step sequences is not honoured, and says so."""
    env = make_vec_env(cue_env, 2, seed=0)
    with pytest.warns(UserWarning, match=r"batch_size=8 is shorter than one training sequence \(32 steps.*"
                      r"2 gradient steps per epoch instead of the 8.*bptt_length=8"):
        PlasticPPO("MlpPlasticPolicy", env, n_steps=32, batch_size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the suggested fixes are silent
        PlasticPPO("MlpPlasticPolicy", env, n_steps=32, batch_size=8, bptt_length=8)
        PlasticPPO("MlpPlasticPolicy", env, n_steps=32, batch_size=32)
        PlasticA2C("MlpPlasticPolicy", env, n_steps=32)  # no minibatches


@pytest.mark.parametrize(
    "algo, env_fn, policy",
    [
        (PlasticPPO, cue_env, "MlpPlasticPolicy"),  # Discrete
        (PlasticA2C, lambda: gym.make("Pendulum-v1", max_episode_steps=20), "MlpPlasticPolicy"),  # Box + timeouts
        (PlasticPPO, TinyMultiDiscrete, "MlpPlasticPolicy"),  # MultiDiscrete
        (PlasticA2C, lambda: DictCue(cue_env()), "MultiInputPlasticPolicy"),  # Dict observations
        (PlasticPPO, TinyImage, "CnnPlasticPolicy"),  # images
    ],
    ids=["ppo-discrete", "a2c-box", "ppo-multidiscrete", "a2c-dict", "ppo-cnn"],
)
def test_spaces_learn_predict_evaluate(algo, env_fn, policy):
    env = make_vec_env(env_fn, 2, seed=0)
    kw = dict(n_steps=10, policy_kwargs=dict(hidden_size=4), seed=0)
    if algo is PlasticPPO:
        kw.update(batch_size=10, n_epochs=1)
    model = algo(policy, env, **kw).learn(40)
    assert model.num_timesteps == 40
    mean, _ = evaluate_policy(model, env, n_eval_episodes=2)
    assert np.isfinite(mean)
    obs = env.reset()
    actions, state = model.predict(obs, state=None, episode_start=np.ones(2, bool))
    assert actions.shape[0] == 2 and env.action_space.contains(actions[0])
    assert state.shape == (2, model.policy.state_dim)


def test_unsupported_spaces_give_clear_errors():
    class TupleAct(gym.Env):
        observation_space = spaces.Box(0, 1, (2,), np.float32)
        action_space = spaces.Tuple([spaces.Discrete(2), spaces.Discrete(2)])

    with pytest.raises(AssertionError, match="only supports"):
        PlasticPPO("MlpPlasticPolicy", DummyVecEnv([TupleAct]))
    with pytest.raises(ValueError, match=r"unknown policy 'MlpPolicy'.*valid choices: \['CnnPlasticPolicy'"):
        PlasticPPO("MlpPolicy", make_vec_env(cue_env, 1))
    with pytest.raises(ValueError, match="needs a plastic policy.*MlpPlasticPolicy"):
        PlasticPPO(ActorCriticPolicy, make_vec_env(cue_env, 1))
    with pytest.raises(ValueError, match="Policy MlpPlasticPolicy unknown"):
        PPO("MlpPlasticPolicy", make_vec_env(cue_env, 1))


def test_plain_ppo_with_a_plastic_policy_class_refuses_clearly():
    from neuromod_rl.agents import MlpPlasticPolicy

    model = PPO(MlpPlasticPolicy, make_vec_env(cue_env, 1), n_steps=8, batch_size=8)
    with pytest.raises(TypeError, match="is recurrent.*PlasticPPO"):
        model.learn(8)


def test_same_seed_same_returns():
    def run():
        model = PlasticPPO(
            "MlpPlasticPolicy",
            make_vec_env(cue_env, 2, seed=3),
            n_steps=14,
            batch_size=14,
            n_epochs=2,
            seed=3,
            policy_kwargs=dict(hidden_size=4),
        )
        model.learn(56)
        returns, _ = evaluate_policy(
            model, make_vec_env(cue_env, 2, seed=5), n_eval_episodes=6, return_episode_rewards=True
        )
        return returns, [p.detach().clone() for p in model.policy.parameters()]

    (r1, p1), (r2, p2) = run(), run()
    assert r1 == r2
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))


def test_save_load_round_trip_identical_predictions(tmp_path):
    env = make_vec_env(cue_env, 2, seed=0)
    model = PlasticPPO(
        "MlpPlasticPolicy",
        env,
        n_steps=8,
        batch_size=8,
        n_epochs=1,
        policy_kwargs=dict(hidden_size=5, rule="retroactive", modulation="fanout"),
    )
    model.learn(16)
    path = tmp_path / "model.zip"
    model.save(path)
    loaded = PlasticPPO.load(path, env=env)
    obs = np.random.default_rng(0).uniform(0, 1, (2, 3)).astype(np.float32)
    state = None
    state_l = None
    for _ in range(4):
        a, state = model.predict(obs, state=state, deterministic=True)
        b, state_l = loaded.predict(obs, state=state_l, deterministic=True)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(state, state_l)
    assert loaded.bptt_length == "episode" and loaded.policy.core_config == model.policy.core_config


def test_loading_with_a_mismatching_configuration_fails_and_keeps_the_file(tmp_path):
    env = make_vec_env(cue_env, 1, seed=0)
    path = tmp_path / "model.zip"
    PlasticPPO("MlpPlasticPolicy", env, n_steps=8, batch_size=8, policy_kwargs=dict(hidden_size=5)).save(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=r"does not match.*'hidden_size': \(5, 7\)"):
        PlasticPPO.load(path, env=env, custom_objects={"policy_kwargs": dict(hidden_size=7)})
    with pytest.raises(ValueError, match=r"does not match.*'rule': \('neuromod', 'retroactive'\)"):
        PlasticPPO.load(path, env=env, custom_objects={"policy_kwargs": dict(hidden_size=5, rule="retroactive")})
    with pytest.raises(ValueError, match="policy kwargs do not equal the stored policy kwargs"):
        PlasticPPO.load(path, env=env, policy_kwargs=dict(hidden_size=7))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_vecnormalize_subproc_callbacks_progress_bar(tmp_path):
    venv = VecNormalize(
        make_vec_env(cue_env, 2, seed=0, vec_env_cls=SubprocVecEnv, vec_env_kwargs=dict(start_method="fork"))
    )
    eval_env = VecNormalize(make_vec_env(cue_env, 1, seed=1), training=False)
    model = PlasticPPO("MlpPlasticPolicy", venv, n_steps=8, batch_size=8, n_epochs=1, policy_kwargs=dict(hidden_size=4))
    eval_cb = EvalCallback(eval_env, n_eval_episodes=2, eval_freq=8, log_path=str(tmp_path / "eval"))
    ckpt_cb = CheckpointCallback(save_freq=8, save_path=str(tmp_path / "ckpt"), name_prefix="plastic")
    model.learn(32, callback=[eval_cb, ckpt_cb], progress_bar=True)
    venv.close()
    assert (tmp_path / "eval" / "evaluations.npz").exists()
    saved = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert "plastic_16_steps.zip" in saved
    PlasticPPO.load(tmp_path / "ckpt" / "plastic_16_steps.zip")  # checkpoints load


@pytest.mark.parametrize(
    "rule, modulated, rule_kwargs",
    [("neuromod", True, {"clip": 0.001}), ("clipped", False, {"clip": 0.001, "eta": 1.0})],
)
def test_diagnostics_recorded_each_rollout(rule, modulated, rule_kwargs):
    model = PlasticPPO(
        "MlpPlasticPolicy",
        make_vec_env(cue_env, 2, seed=0),
        n_steps=14,
        batch_size=14,
        n_epochs=1,
        policy_kwargs=dict(hidden_size=4, rule=rule, rule_kwargs=rule_kwargs),
        seed=0,
    )
    model.set_logger(configure(None, ["csv"]))
    recorded = record_log_dumps(model)
    model.learn(56)
    assert len(recorded) == 2
    for values in recorded:
        assert values["plastic/mean_abs_F"] > 0
        # a tiny clip bound saturates many trace entries
        assert 0 < values["plastic/clip_fraction"] <= 1
        assert ("plastic/modulation_std" in values) == modulated
        if modulated:
            assert -1 <= values["plastic/modulation_mean"] <= 1 and values["plastic/modulation_std"] > 0


def test_gsde_exploration_resamples_noise_and_trains():
    """use_sde=True (rl-zoo3's setting for Pendulum-like tasks): a new exploration matrix every
    sde_sample_freq steps, state-dependent actions, and training runs; save/load keeps it."""
    env = make_vec_env(lambda: gym.make("Pendulum-v1", max_episode_steps=20), 2, seed=0)
    model = PlasticPPO("MlpPlasticPolicy", env, n_steps=20, batch_size=20, n_epochs=1, use_sde=True,
                       sde_sample_freq=4, policy_kwargs=dict(hidden_size=4), seed=0)
    resets = []
    original = model.policy.reset_noise
    model.policy.reset_noise = lambda n_envs=1: (resets.append(n_envs), original(n_envs))[1]
    model.learn(40)
    assert resets == [2] * 6  # one rollout of 20 steps: at its start, then every 4 steps (0, 4, ..., 16)
    obs = env.reset()
    model.policy.reset_noise(2)
    a1, _ = model.predict(obs, episode_start=np.ones(2, bool))
    a2, _ = model.predict(obs, episode_start=np.ones(2, bool))
    np.testing.assert_array_equal(a1, a2)  # same noise matrix, same state: same action
    assert model.policy.use_sde and np.isfinite(evaluate_policy(model, env, n_eval_episodes=2)[0])
