"""Two-armed Bernoulli bandit as a meta-RL task (Wang et al. 2016, "Learning to reinforcement learn").

One episode = ``n_pulls`` pulls (100 in the paper) of two Bernoulli arms whose success
probabilities are the task, resampled every episode. Variants:

- ``"independent"``: ``p1, p2 ~ U[0, 1]`` independently;
- ``"dependent"``: ``p1 ~ U[0, 1]``, ``p2 = 1 - p1``;
- ``"fixed"``: a fixed-difficulty pair (easy 0.1/0.9, medium 0.25/0.75, hard 0.4/0.6, as in the
  paper's fixed-difficulty evaluation), the better arm placed at random.

Observation (as in the paper): previous action one-hot (2), previous reward (1), time
``t / n_pulls`` (1). The metric is the cumulative (expected) regret ``sum_t max(p) - p[a_t]``,
reported per step in ``info["regret"]``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from neuromod_rl.envs.base import (
    Task,
    TaskEnvMixin,
    check_choice,
    check_int_range,
    check_range,
    check_task_keys,
    renders_observation,
)

VARIANTS = ("independent", "dependent", "fixed")
DIFFICULTIES = {"easy": (0.1, 0.9), "medium": (0.25, 0.75), "hard": (0.4, 0.6)}



@renders_observation
class TwoArmedBandit(TaskEnvMixin, gym.Env):
    """Two-armed Bernoulli bandit; task ``{"p": (p1, p2)}``."""

    _task_has_arrays = False


    def __init__(self, variant: str = "independent", n_pulls: int = 100, difficulty: str = "medium"):
        self.variant = check_choice("variant", variant, VARIANTS)
        self.difficulty = check_choice("difficulty", difficulty, tuple(DIFFICULTIES))
        self.n_pulls = check_int_range("n_pulls", n_pulls, 1)
        self.action_space = spaces.Discrete(2)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(4,), dtype=np.float32)
        self._obs = np.zeros(4, dtype=np.float32)
        self._t = 0

    def _sample_task(self, rng: np.random.Generator) -> Task:
        if self.variant == "independent":
            p = rng.uniform(0.0, 1.0, size=2)
        elif self.variant == "dependent":
            p1 = rng.uniform(0.0, 1.0)
            p = np.array([p1, 1.0 - p1])
        else:
            p = np.array(DIFFICULTIES[self.difficulty])
            if rng.integers(2):
                p = p[::-1]
        return {"p": (float(p[0]), float(p[1]))}

    def validate_task(self, task: Any) -> Task:
        check_task_keys(task, ["p"], "TwoArmedBandit")
        p = task["p"]
        if np.shape(p) != (2,):
            raise ValueError(f"task['p']={p!r} must be a pair (p1, p2); valid range of each is [0, 1]")
        p1 = check_range("task['p'][0]", p[0], 0.0, 1.0)
        p2 = check_range("task['p'][1]", p[1], 0.0, 1.0)
        return {"p": (p1, p2)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = self._choose_task(options)
        self._p = np.asarray(task["p"])
        self._pmax = float(self._p.max())
        self._t = 0
        self._obs = np.zeros(4, dtype=np.float32)
        return self._obs.copy(), {"task": self._task_info()}

    def step(self, action):
        a = self._check_action(action)
        reward = float(self.np_random.random() < self._p[a])
        self._t += 1
        obs = np.zeros(4, dtype=np.float32)
        obs[a] = 1.0
        obs[2] = reward
        obs[3] = self._t / self.n_pulls
        self._obs = obs
        terminated = self._t >= self.n_pulls  # the lifetime really ends: no bootstrapping past it
        info = {"task": self._task_info(), "regret": self._pmax - float(self._p[a])}
        return obs.copy(), reward, terminated, False, info
