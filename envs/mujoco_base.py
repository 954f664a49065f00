"""Shared machinery of the MuJoCo task distributions (on Gymnasium's v5 bodies).

``MujocoTaskMixin`` goes first in the bases of a task class, before the Gymnasium v5 env class.
It adds the task protocol (``envs/base.py``), float32 observations, and the mid-episode switch:

- ``change_at=None``: the task is fixed for the whole episode;
- ``change_at=k``: the task switches just before step ``k`` (0-based), so steps ``0..k-1`` run
  the episode's task and step ``k`` onwards the new one;
- ``change_at=(low, high)``: ``k`` is drawn per episode from ``self.np_random``, ``low..high``
  inclusive.

On the switch a new task is sampled from ``self.np_random`` (or taken from
``reset(options={"next_task": ...})``). Every ``info`` carries ``task`` (the task in force),
``task_switched`` (True on the step of the switch only) and ``change_at`` (this episode's switch
step, or None). Importing this module imports MuJoCo: keep it out of ``neuromod_rl``'s import path.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from neuromod_rl.envs.base import (
    ChangeAt,
    Task,
    TaskEnvMixin,
    check_int_range,
    check_reset_options,
    sample_change_step,
    validate_change_at,
)


def check_cue_phase(owner: str, change_at: ChangeAt, cue_steps: Any, episode_length: Any) -> tuple[int, int]:
    """``(cue_steps, episode_length)`` of a task shown once in a cue phase, checked: at least one cue step, a go
    phase after it, and no mid-episode switch (a task changed after its cue could not be known to any agent)."""
    if change_at is not None:
        raise ValueError(
            f"{owner}: change_at={change_at!r} is not supported: a task changed after the cue could not be known to "
            "any agent; leave change_at=None"
        )
    cue_steps = check_int_range("cue_steps", cue_steps, 1, 100_000)
    return cue_steps, check_int_range("episode_length", episode_length, cue_steps + 1, 100_000)


class MujocoTaskMixin(TaskEnvMixin):
    """Task protocol + ``change_at`` switching for a Gymnasium v5 MuJoCo env."""

    _change_step: int | None = None
    _t: int = 0
    reset_option_keys = ("task", "next_task")

    def _init_task_env(self, change_at: ChangeAt) -> None:
        """Call at the end of ``__init__``, after the v5 env is built."""
        self.change_at = validate_change_at(change_at)
        self._next_task: Task | None = None
        # SB3/torch policies work in float32; the v5 bodies return float64
        shape = self.observation_space.shape
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=shape, dtype=np.float32)

    # -- hooks --------------------------------------------------------------------------------
    def _transform_action(self, action: np.ndarray) -> np.ndarray:
        """The action passed to the body (crippled tasks zero some commands)."""
        return action

    def _task_reward(self, reward: float, info: dict[str, Any]) -> float:
        """The task's reward from the v5 step's reward and info (default: unchanged)."""
        return reward

    def _task_after_switch(self) -> Task:
        """The task in force after the mid-episode switch."""
        if self._next_task is not None:
            return self._next_task
        return self._sample_task(self.np_random)

    # -- gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        check_reset_options(options, self.reset_option_keys, type(self).__name__)
        gym.Env.reset(self, seed=seed)  # seed np_random first: the task must come from it
        self._t = 0
        self._change_step = sample_change_step(self.change_at, self.np_random)
        next_task = None if options is None else options.get("next_task")
        self._next_task = None if next_task is None else copy.deepcopy(self.validate_task(next_task))
        self._choose_task(options)  # applied to the model before the body is reset
        obs, info = super().reset(seed=None, options=options)
        info["task"] = self._task_info()
        info["task_switched"] = False
        info["change_at"] = self._change_step
        return np.asarray(obs, dtype=np.float32), info

    def step(self, action):
        action = self._check_action(action)
        switched = self._t == self._change_step
        if switched:
            previous = self._task
            self._apply_task(self._task_after_switch())
        obs, reward, terminated, truncated, info = super().step(self._transform_action(action))
        self._t += 1
        reward = self._task_reward(reward, info)
        info["task"] = self._task_info()
        info["task_switched"] = switched
        info["change_at"] = self._change_step
        if switched:
            info["previous_task"] = self._task_info(previous)
        return np.asarray(obs, dtype=np.float32), float(reward), terminated, truncated, info
