"""PlasticSAC / PlasticTD3 with the SB3 API: spaces, sequences, save/load, seeding, VecEnvs, ablation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import TimeLimit
from plastic_test_envs import CueRecall, DictCueRecall, TinyImageBox, record_log_dumps
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import SubprocVecEnv, VecNormalize

from neuromod_rl.agents import PlasticSAC, PlasticTD3, SequenceReplayBuffer
from neuromod_rl.agents.off_policy.policies import PlasticSACPolicy
from neuromod_rl.agents.on_policy.policies import _part

SMALL = dict(hidden_size=4, net_arch=[8])


def fast(**overrides) -> dict:
    """Small, quick settings, a fresh copy each time (SB3 writes into the policy_kwargs it is given)."""
    kw = dict(buffer_size=2_000, learning_starts=16, batch_size=16, sequence_length=4, policy_kwargs=dict(SMALL))
    return {**kw, **overrides}


def pendulum(steps: int = 13):
    return TimeLimit(gym.make("Pendulum-v1"), max_episode_steps=steps)


@pytest.mark.parametrize(
    "algo, env_fn, policy",
    [
        (PlasticSAC, pendulum, "MlpPlasticPolicy"),  # Box, time-outs inside sequences
        (PlasticTD3, pendulum, "MlpPlasticPolicy"),
        (PlasticSAC, DictCueRecall, "MultiInputPlasticPolicy"),  # Dict observations
        (PlasticTD3, TinyImageBox, "CnnPlasticPolicy"),  # images
    ],
    ids=["sac-box", "td3-box", "sac-dict", "td3-cnn"],
)
def test_spaces_learn_predict_evaluate(algo, env_fn, policy):
    env = make_vec_env(env_fn, 2, seed=0)
    kw = fast(seed=0)
    if algo is PlasticTD3:
        kw["action_noise"] = NormalActionNoise(np.zeros(1), 0.1 * np.ones(1))
    model = algo(policy, env, **kw).learn(60)
    assert model.num_timesteps == 60 and model._n_updates > 0
    mean, _ = evaluate_policy(model, env, n_eval_episodes=2)
    assert np.isfinite(mean)
    obs = env.reset()
    actions, state = model.predict(obs, state=None, episode_start=np.ones(2, bool))
    assert actions.shape[0] == 2 and env.action_space.contains(actions[0].astype(np.float32))
    assert state.shape == (2, model.policy.state_dim)


def _acted_latents(model, n_steps: int):
    """Train-free collection that records, for every buffer row, the actor's and critic's core outputs
    while acting and the cores' states after the step."""
    record = {}
    sample_action = model._sample_action

    def spy(learning_starts, action_noise=None, n_envs=1):
        row = model.replay_buffer.pos
        out = sample_action(learning_starts, action_noise, n_envs)
        state = model._state_before_step
        starts = torch.as_tensor(model._last_episode_starts).bool()
        obs = obs_as_tensor(model._last_obs, model.device)
        with torch.no_grad():
            for name, encoder in (("pi", model.actor.features_extractor), ("vf", model.critic.features_extractor)):
                part = _part(state, name).reset(starts, encoder.initial_state(1))
                y, _, after = encoder.step(obs, part)
                record[row, name] = (y, after)
        return out

    model._sample_action = spy
    model.learn(n_steps)
    return record


@pytest.mark.parametrize("burn_in", [0, 3])
def test_training_sequences_reproduce_the_latents_the_agent_acted_with(burn_in):
    """The actor and critic cores, run over a sampled sequence from its stored state, give at every
    trained step the output they gave while acting, and at its next observation the output one more
    step gives (the terminal observation where a time limit cut the episode). The ring wraps."""
    np.random.seed(0)  # noqa: NPY002  (the buffer samples from numpy's global generator)
    env = make_vec_env(pendulum, 2, seed=0)
    model = PlasticSAC(
        "MlpPlasticPolicy", env, sequence_length=8, burn_in=burn_in, gradient_steps=0, buffer_size=2 * 64,
        learning_starts=10, policy_kwargs=dict(hidden_size=6, net_arch=[8]), seed=0,
    )
    record = _acted_latents(model, 300)
    buf = model.replay_buffer
    assert buf.full and buf.states_stored == 150 // 8 + 1
    sample = buf.sample(8 * 12).observations.sample
    n = sample.n_seq
    for name, encoder in (("pi", model.actor.features_extractor), ("vf", model.critic.features_extractor)):
        with torch.no_grad():
            y = encoder.sequence(sample)
        for j in range(n):
            chunk_env = np.argwhere((buf.start_states == sample.start_state[j].numpy()).all(-1))
            c, e = chunk_env[0]
            for t in range(sample.seq_len):
                row = (c * 8 + burn_in + t) % buf.buffer_size
                acted, after = record[row, name]
                torch.testing.assert_close(y[sample.current[t, j], j], acted[e], atol=1e-5, rtol=0)
                nxt = torch.as_tensor(buf.next_observations[row, e][None])
                with torch.no_grad():
                    y_next, _, _ = encoder.step(nxt, after.index([int(e)]))
                torch.testing.assert_close(y[sample.next[t, j], j], y_next[0], atol=1e-5, rtol=0)


def test_zero_start_state_trains_without_stored_states():
    model = PlasticSAC("MlpPlasticPolicy", make_vec_env(pendulum, 2, seed=0), start_state="zero", burn_in=2,
                       **fast()).learn(60)
    assert model.replay_buffer.start_states is None and model._n_updates > 0
    assert set(model._last_plastic_state) == {k for k in model.policy.initial_state(1)}  # the actor's core only


def test_learning_starts_waits_for_one_sequence_per_env():
    model = PlasticSAC("MlpPlasticPolicy", make_vec_env(pendulum, 3, seed=0), sequence_length=8, burn_in=2,
                       learning_starts=5, policy_kwargs=dict(SMALL))
    assert model.learning_starts == (8 + 2) * 3


def test_save_load_identical_predictions_with_and_without_the_replay_buffer(tmp_path):
    env = make_vec_env(pendulum, 2, seed=0)
    model = PlasticSAC("MlpPlasticPolicy", env, seed=0, **fast(policy_kwargs=dict(
        hidden_size=5, rule="retroactive", modulation="fanout", net_arch=[8]))).learn(60)
    model.save(tmp_path / "model.zip")
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    loaded = PlasticSAC.load(tmp_path / "model.zip", env=env)
    obs = np.random.default_rng(0).uniform(-1, 1, (2, 3)).astype(np.float32)
    state = state_l = None
    for _ in range(4):
        a, state = model.predict(obs, state=state, deterministic=True)
        b, state_l = loaded.predict(obs, state=state_l, deterministic=True)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(state, state_l)
    assert loaded.policy.core_config == model.policy.core_config
    assert (loaded.sequence_length, loaded.burn_in, loaded.start_state) == (4, 0, "stored")
    # without its buffer, training waits until one whole sequence is collected again
    assert not loaded.replay_buffer.can_sample()
    n_updates = loaded._n_updates
    loaded.learn(20, reset_num_timesteps=False)
    assert loaded._n_updates > n_updates
    # with its buffer: the same transitions and stored states
    again = PlasticSAC.load(tmp_path / "model.zip", env=env)
    again.load_replay_buffer(tmp_path / "buffer.pkl")
    np.testing.assert_array_equal(again.replay_buffer.start_states, model.replay_buffer.start_states)
    np.testing.assert_array_equal(again.replay_buffer.observations, model.replay_buffer.observations)
    # the policy alone saves and loads too (its plastic configuration travels with it)
    model.policy.save(tmp_path / "policy.pth")
    policy = PlasticSACPolicy.load(tmp_path / "policy.pth")
    np.testing.assert_array_equal(policy.predict(obs, deterministic=True)[0],
                                  model.predict(obs, deterministic=True)[0])


def test_loading_a_replay_buffer_with_other_settings_fails(tmp_path):
    env = make_vec_env(pendulum, 1, seed=0)
    PlasticSAC("MlpPlasticPolicy", env, **fast()).learn(20).save_replay_buffer(tmp_path / "buffer.pkl")
    other = PlasticSAC("MlpPlasticPolicy", env, **fast(sequence_length=8))
    with pytest.raises(ValueError, match="does not match this model's"):
        other.load_replay_buffer(tmp_path / "buffer.pkl")


@pytest.mark.parametrize("algo", [PlasticSAC, PlasticTD3])
def test_same_seed_same_parameters_and_returns(algo):
    def run():
        model = algo("MlpPlasticPolicy", make_vec_env(pendulum, 2, seed=3), seed=3, **fast()).learn(50)
        returns, _ = evaluate_policy(model, make_vec_env(pendulum, 2, seed=5), n_eval_episodes=4,
                                     return_episode_rewards=True)
        return returns, [p.detach().clone() for p in model.policy.parameters()]

    (r1, p1), (r2, p2) = run(), run()
    assert r1 == r2
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))


def test_vecnormalize_subproc_callbacks_progress_bar(tmp_path):
    venv = VecNormalize(
        make_vec_env(pendulum, 2, seed=0, vec_env_cls=SubprocVecEnv, vec_env_kwargs=dict(start_method="fork"))
    )
    eval_env = VecNormalize(make_vec_env(pendulum, 1, seed=1), training=False)
    model = PlasticSAC("MlpPlasticPolicy", venv, **fast())
    eval_cb = EvalCallback(eval_env, n_eval_episodes=2, eval_freq=10, log_path=str(tmp_path / "eval"))
    ckpt_cb = CheckpointCallback(save_freq=10, save_path=str(tmp_path / "ckpt"), name_prefix="plastic")
    model.learn(60, callback=[eval_cb, ckpt_cb], progress_bar=True)
    # the buffer holds the original observations (SB3's convention), normalised when sampled
    raw = model.replay_buffer.observations[: model.replay_buffer.pos]
    assert np.abs(raw[..., :2]).max() <= 1.0 and np.abs(raw[..., 2]).max() > 1.0  # cos, sin, velocity
    venv.close()
    assert (tmp_path / "eval" / "evaluations.npz").exists()
    assert "plastic_20_steps.zip" in {p.name for p in (tmp_path / "ckpt").iterdir()}
    PlasticSAC.load(tmp_path / "ckpt" / "plastic_20_steps.zip")


def _alphas(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p for name, p in module.named_parameters() if name.endswith("rule.alpha")]


def test_freeze_plasticity_is_the_same_agent_without_plasticity():
    env = make_vec_env(pendulum, 2, seed=0)
    frozen = PlasticSAC("MlpPlasticPolicy", env, seed=0, **fast(policy_kwargs={**SMALL, "freeze_plasticity": True}))
    plastic = PlasticSAC("MlpPlasticPolicy", env, seed=0, **fast())
    before = [a.detach().clone() for a in _alphas(plastic.policy)]
    frozen.learn(60)
    plastic.learn(60)
    alphas = _alphas(frozen.policy)
    assert len(alphas) == 3  # actor, critic and target critic cores
    assert all(not a.requires_grad and bool((a == 0).all()) for a in alphas)
    assert any(not torch.equal(a, b) for a, b in zip(_alphas(plastic.policy), before))
    assert sum(p.numel() for p in frozen.policy.parameters()) == sum(p.numel() for p in plastic.policy.parameters())
    with pytest.raises(ValueError, match="alpha_shape='none'"):
        PlasticSAC("MlpPlasticPolicy", env, policy_kwargs=dict(alpha_shape="none", freeze_plasticity=True))


def test_shared_core_option():
    model = PlasticSAC("MlpPlasticPolicy", make_vec_env(pendulum, 2, seed=0),
                       **fast(policy_kwargs={**SMALL, "shared_core": True})).learn(40)
    assert model.critic.features_extractor is model.actor.features_extractor
    assert model.critic_target.features_extractor is not model.actor.features_extractor
    assert all(k.startswith("pi.") for k in model._last_plastic_state)
    assert model.replay_buffer.start_states.shape[-1] == model.policy.state_dim


def test_target_networks_have_their_own_plastic_cores():
    model = PlasticTD3("MlpPlasticPolicy", make_vec_env(pendulum, 2, seed=0), tau=0.5, **fast())
    targets = [(model.critic, model.critic_target), (model.actor, model.actor_target)]
    for online, target in targets:
        assert target.features_extractor.core is not online.features_extractor.core
    model.learn(60)
    for online, target in targets:
        w_online, w_target = online.features_extractor.core.w, target.features_extractor.core.w
        assert not torch.equal(w_online, w_target) and torch.allclose(w_online, w_target, atol=0.1)


def test_misuse_gives_clear_errors():
    env = make_vec_env(pendulum, 1, seed=0)
    with pytest.raises(ValueError, match=r"unknown policy 'MlpPolicy'.*stable_baselines3.SAC / TD3"):
        PlasticSAC("MlpPolicy", env)
    with pytest.raises(ValueError, match="td_error"):
        PlasticSAC("MlpPlasticPolicy", env, policy_kwargs=dict(modulation_source="td_error"))
    with pytest.raises(ValueError, match="use_sde"):
        PlasticSAC("MlpPlasticPolicy", env, use_sde=True)
    with pytest.raises(ValueError, match="n-step"):
        PlasticSAC("MlpPlasticPolicy", env, n_steps=3)
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        PlasticTD3("MlpPlasticPolicy", env, optimize_memory_usage=True)
    with pytest.raises(ValueError, match="replay_buffer_class=ReplayBuffer"):
        PlasticSAC("MlpPlasticPolicy", env, replay_buffer_class=ReplayBuffer)
    with pytest.raises(ValueError, match="contradicts shared_core"):
        PlasticSAC("MlpPlasticPolicy", env, policy_kwargs=dict(share_features_extractor=True))
    with pytest.raises(ValueError, match="unknown policy_kwargs"):
        PlasticSAC("MlpPlasticPolicy", env, policy_kwargs=dict(hiden_size=3))
    # SB3's SAC with a plastic policy class: a clear message when it first trains, not an AttributeError
    model = SAC(PlasticSACPolicy, env, learning_starts=8, batch_size=8, policy_kwargs=dict(SMALL))
    with pytest.raises(TypeError, match="PlasticSAC"):
        model.learn(16)


def test_diagnostics_reach_the_logger():
    model = PlasticSAC("MlpPlasticPolicy", make_vec_env(lambda: pendulum(10), 1, seed=0), **fast())
    model.set_logger(configure(None, ["csv"]))
    recorded = record_log_dumps(model)
    model.learn(80, log_interval=2)
    assert len(recorded) == 4
    for values in recorded:
        assert values["plastic/mean_abs_F"] > 0 and 0 <= values["plastic/clip_fraction"] <= 1
        assert -1 <= values["plastic/modulation_mean"] <= 1 and values["plastic/modulation_std"] > 0
    assert "train/critic_loss" in recorded[-1] and "train/ent_coef" in recorded[-1]


def test_sequence_buffer_is_used():
    model = PlasticSAC("MlpPlasticPolicy", make_vec_env(CueRecall, 1, seed=0), **fast())
    assert type(model.replay_buffer) is SequenceReplayBuffer
    assert model.replay_buffer.sequence_length == 4


def test_sequence_passes_are_shared_only_while_parameters_are_unchanged():
    """SAC reads the actor's outputs at the trained steps and at their next observations from one pass;
    after an optimizer step a new pass runs. The critic in the actor loss skips autograd through its
    core, and the actor's gradient is the same as with it."""
    model = PlasticSAC("MlpPlasticPolicy", make_vec_env(pendulum, 2, seed=0), **fast(seed=0)).learn(40)
    data = model.replay_buffer.sample(16)
    actor, critic = model.actor, model.critic
    encoder = actor.features_extractor
    _, log_prob = actor.action_log_prob(data.observations)
    with torch.no_grad():
        shared = encoder(data.next_observations)
        assert len(data.observations.sample.cache) == 1
        fresh = encoder.sequence(data.observations.sample)
    n = fresh.shape[1]
    torch.testing.assert_close(shared, fresh[data.next_observations.positions, torch.arange(n)].reshape(-1, 4))
    # an optimizer step changes the parameters: the next request runs a new pass
    actor.optimizer.zero_grad()
    log_prob.mean().backward()
    actor.optimizer.step()
    with torch.no_grad():
        after = encoder(data.next_observations)
    assert not torch.allclose(after, shared)

    def actor_grads(skip_core_autograd: bool) -> list[torch.Tensor]:
        actor.optimizer.zero_grad()
        critic.optimizer.zero_grad()
        torch.manual_seed(0)  # the same sampled actions both times
        actions_pi, _ = actor.action_log_prob(data.observations)
        obs = data.observations if skip_core_autograd else CoreOutputWithGrad(critic, data.observations)
        q = torch.cat(critic(obs, actions_pi), dim=1).min(dim=1).values.mean()
        (-q).backward()
        return [p.grad.clone() for p in actor.parameters() if p.grad is not None]

    fast_grads, full_grads = actor_grads(True), actor_grads(False)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(fast_grads, full_grads))
    assert critic.features_extractor.core.w.grad is not None  # the full path did reach the critic core


def CoreOutputWithGrad(critic, view):  # noqa: N802  (reads like the type it returns)
    """The critic core's outputs computed with autograd, as SB3's own critic would compute them."""
    from neuromod_rl.agents.off_policy.policies import CoreOutput

    return CoreOutput(critic.features_extractor(view))


def test_action_noise_can_be_a_number():
    """A YAML config cannot build an ActionNoise object; a number means Gaussian noise of that scale."""
    model = PlasticTD3("MlpPlasticPolicy", make_vec_env(pendulum, 1, seed=0), action_noise=0.2, **fast())
    assert isinstance(model.action_noise, NormalActionNoise)
    np.testing.assert_array_equal(model.action_noise._sigma, [0.2])
