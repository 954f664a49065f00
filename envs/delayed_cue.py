"""DelayedCue: a minimal memory task (delayed match-to-cue), used as a fast learning check.

The task is one of ``n_cues`` one-hot cues. It is shown on the first observation only, then
``delay`` blank observations follow, then a *go* observation; the action taken on the go
observation is scored: ``+1`` if it matches the cue, ``wrong_reward`` otherwise. Actions before
the go step are ignored. An episode is ``delay + 2`` steps.

A feed-forward policy sees no cue at the go step, so it can only reach chance
(``1 / n_cues`` with the default ``wrong_reward=0``); a recurrent or plastic policy can reach 1.

Observation: cue one-hot (``n_cues``), go flag (1).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from neuromod_rl.envs.base import Task, TaskEnvMixin, check_int_range, check_range, check_task_keys, renders_observation


@renders_observation
class DelayedCue(TaskEnvMixin, gym.Env):
    """Delayed match-to-cue; task ``{"cue": int}``."""

    _task_has_arrays = False


    def __init__(self, n_cues: int = 2, delay: int = 5, wrong_reward: float = 0.0):
        self.n_cues = check_int_range("n_cues", n_cues, 2, 4)
        self.delay = check_int_range("delay", delay, 0, 10_000)
        self.wrong_reward = check_range("wrong_reward", wrong_reward, -1.0, 0.0)
        self.episode_length = self.delay + 2
        self.action_space = spaces.Discrete(self.n_cues)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.n_cues + 1,), dtype=np.float32)

    def _sample_task(self, rng: np.random.Generator) -> Task:
        return {"cue": int(rng.integers(self.n_cues))}

    def validate_task(self, task: Any) -> Task:
        check_task_keys(task, ["cue"], "DelayedCue")
        return {"cue": check_int_range("task['cue']", task["cue"], 0, self.n_cues - 1)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = self._choose_task(options)
        self._t = 0
        obs = np.zeros(self.n_cues + 1, dtype=np.float32)
        obs[task["cue"]] = 1.0
        return obs, {"task": self._task_info()}

    def step(self, action):
        a = self._check_action(action)
        self._t += 1
        obs = np.zeros(self.n_cues + 1, dtype=np.float32)
        reward, terminated = 0.0, False
        if self._t == self.delay + 1:
            obs[self.n_cues] = 1.0  # go: the next action is the answer
        elif self._t == self.delay + 2:
            reward = 1.0 if a == self._task["cue"] else self.wrong_reward
            terminated = True
        return obs, reward, terminated, False, {"task": self._task_info()}
