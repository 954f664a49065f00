"""The device-resident rollout path of PlasticPPO / PlasticA2C over a BatchedVecEnv: for the same seed it
stores the same rollout and trains to the same weights as SB3's path over the same env, keeps SB3's API
(callbacks, episode statistics, save/load), and refuses what it cannot honour."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

from neuromod_rl.agents import PlasticA2C, PlasticPPO
from neuromod_rl.agents.on_policy.buffers import SequenceRolloutBuffer
from neuromod_rl.agents.on_policy.device_buffer import DeviceSequenceRolloutBuffer
from neuromod_rl.envs.batched import BatchedVecEnv, make_batched
from neuromod_rl.envs.batched.base import BatchedTaskEnv

FIELDS = ("observations", "actions", "rewards", "episode_starts", "log_probs", "advantages", "modulations")
ALGOS = {PlasticPPO: dict(batch_size=8, n_epochs=2), PlasticA2C: {}}


def cue_env(n_envs: int = 3, device: str = "cpu", **kwargs: Any) -> BatchedVecEnv:
    """The batched cue-reward task, small: 4-bit cues, 6-step episodes (episodes start inside a rollout)."""
    kwargs = {"cue_bits": 4, "episode_length": 6, **kwargs}
    return BatchedVecEnv(make_batched("neuromod_rl/CueReward-v0", n_envs, device=device, **kwargs))


def model(cls, env, device_path: bool = True, device: str = "cpu", policy_kwargs: dict | None = None, **kwargs):
    m = cls("MlpPlasticPolicy", env, n_steps=8, seed=1, device=device,
            policy_kwargs=dict(hidden_size=8, net_arch=[], **(policy_kwargs or {})), **{**ALGOS[cls], **kwargs})
    m.use_device_rollouts = device_path
    return m


def host(buffer, name: str) -> np.ndarray:
    value = getattr(buffer, name)
    return value.cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def assert_same_training(a, b, atol: float = 0.0) -> None:
    """Same rollout buffer contents and same weights (``atol``: float rounding allowed)."""
    assert isinstance(a.rollout_buffer, DeviceSequenceRolloutBuffer)
    assert type(b.rollout_buffer) is SequenceRolloutBuffer
    for name in (*FIELDS, "values", "returns"):
        np.testing.assert_allclose(host(a.rollout_buffer, name), host(b.rollout_buffer, name), atol=atol, rtol=0,
                                   err_msg=name)
    torch.testing.assert_close(a.rollout_buffer.start_states, b.rollout_buffer.start_states, atol=atol, rtol=0)
    for (name, p), q in zip(a.policy.named_parameters(), b.policy.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=max(atol, 1e-7), rtol=1e-6, msg=name)
    assert a.num_timesteps == b.num_timesteps


@pytest.mark.parametrize("cls", list(ALGOS), ids=lambda c: c.__name__)
@pytest.mark.parametrize("policy_kwargs", [{}, {"core": "lstm", "shared_core": False}], ids=["default", "lstm"])
@pytest.mark.parametrize("bptt_length", ["episode", 4])
def test_device_path_stores_and_trains_like_sb3_path(cls, policy_kwargs, bptt_length):
    # one rollout, then one update: the buffer compared is the one the update read
    a = model(cls, cue_env(), True, policy_kwargs=policy_kwargs, bptt_length=bptt_length).learn(24)
    b = model(cls, cue_env(), False, policy_kwargs=policy_kwargs, bptt_length=bptt_length).learn(24)
    assert_same_training(a, b)


@pytest.mark.parametrize("cls", list(ALGOS), ids=lambda c: c.__name__)
def test_device_path_matches_over_several_rollouts_with_td_error_modulation(cls):
    # the plastic state, episode starts and random stream carry from rollout to rollout alike
    kwargs = dict(policy_kwargs=dict(modulation_source="td_error", reward_index=-3))
    a = model(cls, cue_env(), True, **kwargs).learn(72)
    b = model(cls, cue_env(), False, **kwargs).learn(72)
    assert_same_training(a, b)


@pytest.mark.parametrize("cls", list(ALGOS), ids=lambda c: c.__name__)
def test_time_limit_cuts_are_bootstrapped_like_sb3_path(cls):
    # the limit cuts every episode at the rollout's last step: SB3's path then draws no action before the
    # update, so both runs keep one random stream (the bootstrap itself differs by float rounding only)
    a = model(cls, cue_env(episode_length=50, max_episode_steps=8), True).learn(24)
    b = model(cls, cue_env(episode_length=50, max_episode_steps=8), False).learn(24)
    untouched = model(cls, cue_env(episode_length=50), True).learn(24)
    assert_same_training(a, b, atol=1e-6)
    bonus = host(a.rollout_buffer, "rewards") - host(untouched.rollout_buffer, "rewards")
    assert np.all(bonus[:-1] == 0) and np.all(bonus[-1] != 0)


class Capture(KVWriter):
    """Keeps what SB3's logger dumps."""

    def __init__(self):
        self.dumps: list[dict] = []

    def write(self, key_values, key_excluded, step=0):
        self.dumps.append(dict(key_values))


def test_device_path_never_steps_through_the_numpy_vec_env():
    env = cue_env()

    def numpy_step():
        raise AssertionError("the device path stepped the VecEnv's numpy interface")

    env.step_wait = numpy_step
    m = model(PlasticPPO, env, True).learn(48)
    assert m.num_timesteps == 48 and env.batched.check_actions  # its action check is back on after the rollout


def test_episode_statistics_match_vec_monitor_and_are_logged():
    a = model(PlasticPPO, VecMonitor(cue_env()), True)
    a.set_logger(Logger(folder=None, output_formats=[capture := Capture()]))
    a.learn(48)
    b = model(PlasticPPO, VecMonitor(cue_env()), False).learn(48)
    assert isinstance(a.rollout_buffer, DeviceSequenceRolloutBuffer)
    got = [(e["r"], e["l"]) for e in a.ep_info_buffer]
    # 16 steps per env of 6-step episodes: two finished episodes per env
    assert len(got) == 2 * 3 and got == [(float(e["r"]), int(e["l"])) for e in b.ep_info_buffer]
    logged = capture.dumps[-1]
    assert logged["rollout/ep_rew_mean"] == pytest.approx(np.mean([r for r, _ in got]))
    assert logged["rollout/ep_len_mean"] == 6


class Recorder(BaseCallback):
    def __init__(self, stop_after: int | None = None):
        super().__init__()
        self.stop_after, self.steps, self.rollouts, self.seen = stop_after, 0, 0, {}

    def _on_rollout_start(self) -> None:
        self.rollouts += 1

    def _on_step(self) -> bool:
        self.steps += 1
        self.seen = {k: self.locals[k] for k in ("new_obs", "rewards", "dones", "actions", "infos")}
        return self.stop_after is None or self.steps < self.stop_after


@pytest.mark.parametrize("cls", list(ALGOS), ids=lambda c: c.__name__)
def test_callbacks_run_every_step_with_the_step_tensors(cls):
    m = model(cls, cue_env(), True)
    cb = Recorder()
    m.learn(48, callback=cb)
    assert (cb.steps, cb.rollouts, cb.n_calls) == (16, 2, 16)
    assert cb.seen["new_obs"].shape == (3, 10) and cb.seen["rewards"].shape == (3,)
    assert cb.seen["dones"].dtype == torch.bool and cb.seen["infos"] == [{}, {}, {}]

    stopped = model(cls, cue_env(), True)
    stopped.learn(48, callback=Recorder(stop_after=3))
    assert stopped.num_timesteps == 9  # three steps of three envs, then learn stops


def test_save_load_round_trip(tmp_path):
    m = model(PlasticPPO, cue_env(), True).learn(24)
    assert m._last_obs.shape == (3, 10) and isinstance(m._last_obs, np.ndarray)
    path = tmp_path / "model.zip"
    m.save(path)
    env = cue_env()
    loaded = PlasticPPO.load(path, env=env, device="cpu")
    assert loaded.use_device_rollouts and getattr(loaded, "_device_carry", None) is None
    obs = env.reset()
    a, state_a = m.predict(obs, deterministic=True)
    b, state_b = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(state_a, state_b)
    loaded.learn(24, reset_num_timesteps=False)
    assert loaded.num_timesteps == 48 and isinstance(loaded.rollout_buffer, DeviceSequenceRolloutBuffer)
    # the attribute is saved: a model told to keep SB3's path keeps it after loading
    m.use_device_rollouts = False
    m.save(path)
    assert PlasticPPO.load(path, env=cue_env(), device="cpu").use_device_rollouts is False


def test_other_vec_envs_keep_sb3_path():
    env = DummyVecEnv([lambda: gym.make("neuromod_rl/CueReward-v0", cue_bits=4, episode_length=6)] * 2)
    m = model(PlasticPPO, env, True).learn(16)
    assert type(m.rollout_buffer) is SequenceRolloutBuffer
    # switching env on the same model moves between the paths, and back
    m.set_env(cue_env(n_envs=2))
    m.learn(16, reset_num_timesteps=False)
    assert isinstance(m.rollout_buffer, DeviceSequenceRolloutBuffer)
    m.use_device_rollouts = False
    m.learn(16, reset_num_timesteps=False)
    assert type(m.rollout_buffer) is SequenceRolloutBuffer


def test_vec_normalize_is_refused_on_the_device_path_and_trains_on_sb3_path():
    m = model(PlasticPPO, VecNormalize(cue_env()), True)
    with pytest.raises(ValueError, match="cannot apply VecNormalize.*use_device_rollouts = False"):
        m.learn(24)
    m.use_device_rollouts = False
    m.learn(24)
    assert type(m.rollout_buffer) is SequenceRolloutBuffer


def test_a_wrapper_it_would_skip_sends_it_to_sb3_path_with_a_warning(tmp_path):
    m = model(PlasticPPO, VecMonitor(cue_env(), filename=str(tmp_path / "monitor")), True)
    with pytest.warns(UserWarning, match="instead of the device-resident one: it would skip the wrapper VecMonitor"):
        m.learn(24)
    assert type(m.rollout_buffer) is SequenceRolloutBuffer


class NaNReward(BatchedTaskEnv):
    """A protocol-conforming two-action task whose reward turns NaN in lane 1 at its third step."""

    def __init__(self, num_envs: int, device: str = "cpu"):
        super().__init__(num_envs, device)
        self.single_observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.single_action_space = spaces.Discrete(2)
        self.t = torch.zeros(num_envs, dtype=torch.int64, device=self.device)

    def _sample_tasks(self, n):
        return {"sign": torch.ones(n, device=self.device)}

    def _validate_tasks(self, tasks, n):
        return dict(tasks)

    def _start_episodes(self, mask):
        self.t = torch.where(mask, torch.zeros_like(self.t), self.t)

    def _transition(self, actions):
        self.t = self.t + 1
        reward = actions.float()
        reward[1] = torch.where(self.t[1] == 3, torch.nan, reward[1])
        return reward, self.t >= 100

    def _observe(self):
        return torch.stack([self.t.float() / 100, torch.ones_like(self.t, dtype=torch.float32)], dim=1)


def test_a_non_finite_reward_is_named_before_the_update():
    m = model(PlasticA2C, BatchedVecEnv(NaNReward(2)), True)
    before = [p.detach().clone() for p in m.policy.parameters()]
    with pytest.raises(FloatingPointError, match=r"a non-finite reward \(nan\) in env 1 at step 6;"):
        m.learn(16)
    assert all(torch.equal(p, q) for p, q in zip(before, m.policy.parameters()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
@pytest.mark.parametrize("cls", list(ALGOS), ids=lambda c: c.__name__)
def test_cuda_device_path_keeps_the_rollout_on_the_gpu_and_trains_like_sb3_path(cls):
    a = model(cls, cue_env(device="cuda"), True, device="cuda").learn(48)
    b = model(cls, cue_env(device="cuda"), False, device="cuda").learn(48)
    buffer = a.rollout_buffer
    assert all(getattr(buffer, name).is_cuda for name in FIELDS) and buffer.start_states.is_cuda
    # the same kernels draw the same actions; cuBLAS may round the two paths' batches differently
    assert_same_training(a, b, atol=1e-5)
