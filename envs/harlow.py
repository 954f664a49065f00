"""Harlow's learning-to-learn task with vector objects (Harlow 1949; Wang et al. 2018,
"Prefrontal cortex as a meta-reinforcement learning system").

Per episode (the task) two novel objects, random +-1 vectors of ``object_dim`` bits; one of them
is always rewarded. Each of the ``n_trials`` trials (6 in the paper) shows the two objects in the
left and right slots, sides shuffled every trial; the agent picks a side (0 left, 1 right):
``correct_reward`` (+1) for the rewarded object, ``wrong_reward`` (-1) otherwise. Optimal play is
a guess on trial 1 and then always the rewarded object. Wang et al. use images and a fixation
step; this vector version keeps the learning-to-learn structure and drops the vision.

Observation: left object, right object, previous action one-hot (2), previous reward,
``t / n_trials``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from neuromod_rl.envs.base import Task, TaskEnvMixin, check_int_range, check_range, check_task_keys, renders_observation


@renders_observation
class Harlow(TaskEnvMixin, gym.Env):
    """Vector-object Harlow task; task ``{"objects": (2, object_dim) +-1, "rewarded": 0 | 1}``."""


    def __init__(
        self,
        n_trials: int = 6,
        object_dim: int = 8,
        correct_reward: float = 1.0,
        wrong_reward: float = -1.0,
    ):
        self.n_trials = check_int_range("n_trials", n_trials, 1)
        self.object_dim = check_int_range("object_dim", object_dim, 1, 1024)
        self.correct_reward = check_range("correct_reward", correct_reward, -1e6, 1e6)
        self.wrong_reward = check_range("wrong_reward", wrong_reward, -1e6, 1e6)
        self.obs_dim = 2 * self.object_dim + 4
        self.action_space = spaces.Discrete(2)
        low = min(-1.0, self.correct_reward, self.wrong_reward)
        high = max(1.0, self.correct_reward, self.wrong_reward)
        self.observation_space = spaces.Box(low, high, shape=(self.obs_dim,), dtype=np.float32)

    def _sample_task(self, rng: np.random.Generator) -> Task:
        while True:  # the two objects must differ
            objects = rng.choice(np.array([-1.0, 1.0]), size=(2, self.object_dim))
            if not np.array_equal(objects[0], objects[1]):
                break
        return {"objects": objects, "rewarded": int(rng.integers(2))}

    def validate_task(self, task: Any) -> Task:
        check_task_keys(task, ["objects", "rewarded"], "Harlow")
        objects = np.asarray(task["objects"], dtype=np.float64)
        if objects.shape != (2, self.object_dim) or not np.all(np.abs(objects) == 1.0):
            raise ValueError(
                f"task['objects'] must be a (2, {self.object_dim}) array of -1/+1; got shape {objects.shape}"
            )
        return {"objects": objects, "rewarded": check_int_range("task['rewarded']", task["rewarded"], 0, 1)}

    def _obs(self) -> np.ndarray:
        d = self.object_dim
        obs = np.zeros(self.obs_dim, dtype=np.float32)
        objects = self._task["objects"]
        obs[:d] = objects[self._left]
        obs[d : 2 * d] = objects[1 - self._left]
        if self._prev_action is not None:
            obs[2 * d + self._prev_action] = 1.0
        obs[2 * d + 2] = self._prev_reward
        obs[2 * d + 3] = self._t / self.n_trials
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._choose_task(options)
        self._t = 0
        self._prev_reward = 0.0
        self._prev_action: int | None = None
        self._left = int(self.np_random.integers(2))  # which object sits on the left this trial
        return self._obs(), {"task": self._task_info(), "left_object": self._left}

    def step(self, action):
        a = self._check_action(action)
        chosen = self._left if a == 0 else 1 - self._left
        correct = chosen == self._task["rewarded"]
        reward = self.correct_reward if correct else self.wrong_reward
        self._t += 1
        self._prev_reward, self._prev_action = reward, a
        self._left = int(self.np_random.integers(2))
        terminated = self._t >= self.n_trials
        info = {"task": self._task_info(), "correct": correct, "left_object": self._left}
        return self._obs(), reward, terminated, False, info
