"""Meta-RL observation wrappers: previous action/reward/done inputs (RL^2, Duan et al. 2016;
Wang et al. 2016), multi-episode trials ("lifetimes") of one task, and the single-task control.

Typical stack, so that previous reward and action carry across the inner episodes of a trial::

    env = PrevActionReward(Trial(gymnasium.make("neuromod_rl/HalfCheetahVel-v0"), episodes=3))

or ``make_task_env("neuromod_rl/HalfCheetahVel-v0", trial_episodes=3, prev_action_reward=True)``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from neuromod_rl.envs.base import check_int_range


def _flat_box(space: gym.Space, name: str) -> spaces.Box:
    if not isinstance(space, spaces.Box):
        raise ValueError(f"{name} needs a Box observation space; got {space}")
    return space


class PrevActionReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Append the previous action (one-hot if Discrete), previous reward and previous done flag.

    Layout: ``[obs (flattened), prev action, prev reward, prev done]``. After a reset all three
    are zero. ``prev done`` is 1 on the first observation after an inner-episode boundary of a
    ``Trial`` (``info["inner_done"]``); wrap ``Trial`` with this wrapper, not the other way round.
    Box actions are clipped to the action space before they are fed back.
    """

    def __init__(self, env: gym.Env, include_done: bool = True):
        gym.utils.RecordConstructorArgs.__init__(self, include_done=include_done)  # lets gym re-create it
        gym.Wrapper.__init__(self, env)
        obs_space = _flat_box(env.observation_space, "PrevActionReward")
        act = env.action_space
        if isinstance(act, spaces.Discrete):
            self._n_act = int(act.n)
            a_low, a_high = np.zeros(self._n_act), np.ones(self._n_act)
        elif isinstance(act, spaces.Box):
            self._n_act = int(np.prod(act.shape))
            a_low, a_high = act.low.ravel(), act.high.ravel()
        else:
            raise ValueError(f"PrevActionReward supports Discrete or Box actions; got {act}")
        self.include_done = bool(include_done)
        extra_low = [a_low, [-np.inf]] + ([[0.0]] if self.include_done else [])
        extra_high = [a_high, [np.inf]] + ([[1.0]] if self.include_done else [])
        self.observation_space = spaces.Box(
            np.concatenate([obs_space.low.ravel(), *extra_low]).astype(np.float32),
            np.concatenate([obs_space.high.ravel(), *extra_high]).astype(np.float32),
            dtype=np.float32,
        )
        self._extra = np.zeros(self._n_act + 1 + int(self.include_done), dtype=np.float32)

    def _augment(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(obs, dtype=np.float32).ravel(), self._extra])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._extra[:] = 0.0
        return self._augment(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._extra[:] = 0.0
        if isinstance(self.env.action_space, spaces.Discrete):
            self._extra[int(action)] = 1.0
        else:
            space = self.env.action_space
            self._extra[: self._n_act] = np.clip(
                np.asarray(action).ravel(), space.low.ravel(), space.high.ravel()
            )
        self._extra[self._n_act] = reward
        if self.include_done:
            self._extra[self._n_act + 1] = float(bool(info.get("inner_done", False)))
        return self._augment(obs), reward, terminated, truncated, info


class Trial(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """``episodes`` episodes of one task form one lifetime (RL^2-style trials).

    The wrapped env's episode ends (terminated or truncated) become inner boundaries: the env
    is reset with the same task (``options={"task": ...}``, the task chosen at the lifetime's
    reset), and the lifetime goes on; only the last inner episode's end is reported. Observation:
    ``[obs, first]`` where ``first`` is 1 on the first observation of every inner episode.
    On a boundary step ``info`` has ``inner_done=True``, ``inner_final_observation`` and
    ``inner_final_info``; every step has ``inner_episode`` (0-based).
    """

    def __init__(self, env: gym.Env, episodes: int = 2):
        gym.utils.RecordConstructorArgs.__init__(self, episodes=episodes)
        gym.Wrapper.__init__(self, env)
        self.episodes = check_int_range("episodes", episodes, 1)
        obs_space = _flat_box(env.observation_space, "Trial")
        self.observation_space = spaces.Box(
            np.concatenate([obs_space.low.ravel(), [0.0]]).astype(np.float32),
            np.concatenate([obs_space.high.ravel(), [1.0]]).astype(np.float32),
            dtype=np.float32,
        )
        self._inner = 0
        self._lifetime_task: Any = None

    @staticmethod
    def _augment(obs: np.ndarray, first: bool) -> np.ndarray:
        return np.concatenate([np.asarray(obs, dtype=np.float32).ravel(), [np.float32(first)]])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._inner = 0
        episode_task = getattr(self.env.unwrapped, "episode_task", None)
        self._lifetime_task = episode_task() if callable(episode_task) else None
        info["inner_episode"] = 0
        return self._augment(obs, True), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["inner_episode"] = self._inner
        if (terminated or truncated) and self._inner + 1 < self.episodes:
            self._inner += 1
            options = None if self._lifetime_task is None else {"task": self._lifetime_task}
            final_obs, final_info = obs, info
            obs, info = self.env.reset(options=options)
            info.update(
                inner_done=True,
                inner_final_observation=final_obs,
                inner_final_info=final_info,
                inner_episode=self._inner,
            )
            return self._augment(obs, True), reward, False, False, info
        return self._augment(obs, False), reward, terminated, truncated, info


class FixedTask(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Every episode runs one task, drawn once from ``task_seed``: the single-task control of a meta-RL study.

    A meta-RL agent that fails on the task distribution may lack the skill (it cannot learn even one
    task) or the adaptation (it cannot tell tasks apart within an episode); trained under this wrapper
    it faces the first problem alone. Copies built with the same ``task_seed`` (the envs of a vector env)
    share the task, whatever their reset seeds. ``reset(options={"task": ...})`` still overrides it for
    one episode. Needs a task env of this package (one with ``set_task``).
    """

    def __init__(self, env: gym.Env, task_seed: int = 0):
        gym.utils.RecordConstructorArgs.__init__(self, task_seed=task_seed)
        gym.Wrapper.__init__(self, env)
        base = env.unwrapped
        if not (callable(getattr(base, "set_task", None)) and callable(getattr(base, "_sample_task", None))):
            raise ValueError(
                f"FixedTask needs a task env of neuromod_rl (one with set_task, e.g. neuromod_rl/CueReward-v0); "
                f"got {type(base).__name__}, which has a single task already"
            )
        self.task_seed = check_int_range("task_seed", task_seed, 0)
        base.set_task(base._sample_task(np.random.default_rng(self.task_seed)))


def make_task_env(
    env_id: str,
    trial_episodes: int | None = None,
    prev_action_reward: bool = False,
    **kwargs: Any,
) -> gym.Env:
    """``gymnasium.make(env_id, **kwargs)``, optionally wrapped in ``Trial`` then ``PrevActionReward``.

    Handy as an SB3 ``make_vec_env`` factory: ``make_vec_env(lambda: make_task_env(...), n_envs=8)``.
    """
    env = gym.make(env_id, **kwargs)
    if trial_episodes is not None:
        env = Trial(env, episodes=trial_episodes)
    if prev_action_reward:
        env = PrevActionReward(env)
    return env
