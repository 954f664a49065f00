"""T-maze with a switching reward location (Soltoggio et al. 2008, "Evolutionary advantages of
neuromodulated plasticity in dynamic, reward-based scenarios").

Discrete version. A lifetime (episode) is ``n_trials`` trials (~100 in the paper). Each trial
starts at *home*; the agent walks ``corridor_length`` steps forward to the *junction* and then
turns left or right to an arm end. One arm end holds the high reward (1.0), the other the low
reward (0.2); their places swap once, at trial ``switch_trial`` (sampled per lifetime unless
given). Turning inside the corridor or going straight at the junction is a crash (-0.4) and ends
the trial. After an arm end or a crash the agent is back home for the next trial.

Observation: position one-hot (home, corridor, junction), previous reward, previous action
one-hot (forward, left, right), ``trial / n_trials``. Task: ``{"high_arm": 0 (left) | 1 (right),
"switch_trial": int}``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from neuromod_rl.envs.base import Task, TaskEnvMixin, check_int_range, check_range, check_task_keys, renders_observation

FORWARD, LEFT, RIGHT = 0, 1, 2



@renders_observation
class TMaze(TaskEnvMixin, gym.Env):
    """Single T-maze with one reward swap per lifetime."""

    _task_has_arrays = False


    def __init__(
        self,
        n_trials: int = 100,
        corridor_length: int = 1,
        high_reward: float = 1.0,
        low_reward: float = 0.2,
        crash_reward: float = -0.4,
        switch_range: tuple[float, float] = (0.25, 0.75),
    ):
        self.n_trials = check_int_range("n_trials", n_trials, 2)
        self.corridor_length = check_int_range("corridor_length", corridor_length, 0, 100)
        self.high_reward = check_range("high_reward", high_reward, -1e6, 1e6)
        self.low_reward = check_range("low_reward", low_reward, -1e6, 1e6)
        self.crash_reward = check_range("crash_reward", crash_reward, -1e6, 1e6)
        lo = check_range("switch_range[0]", switch_range[0], 0.0, 1.0)
        hi = check_range("switch_range[1]", switch_range[1], lo, 1.0)
        # the swap happens at a trial index in [lo, hi] * n_trials, never on the first trial
        self._switch_lo = max(1, int(round(lo * self.n_trials)))
        self._switch_hi = max(self._switch_lo, min(self.n_trials - 1, int(round(hi * self.n_trials))))
        self.max_steps = self.n_trials * (self.corridor_length + 1)
        self.action_space = spaces.Discrete(3)
        rewards = (self.high_reward, self.low_reward, self.crash_reward, 0.0)
        low, high = min(0.0, *rewards), max(1.0, *rewards)
        self.observation_space = spaces.Box(low, high, shape=(8,), dtype=np.float32)

    # -- task protocol --------------------------------------------------------------------------
    def _sample_task(self, rng: np.random.Generator) -> Task:
        return {
            "high_arm": int(rng.integers(2)),
            "switch_trial": int(rng.integers(self._switch_lo, self._switch_hi + 1)),
        }

    def validate_task(self, task: Any) -> Task:
        check_task_keys(task, ["high_arm", "switch_trial"], "TMaze")
        return {
            "high_arm": check_int_range("task['high_arm']", task["high_arm"], 0, 1),
            "switch_trial": check_int_range("task['switch_trial']", task["switch_trial"], 1, self.n_trials),
        }

    # -- dynamics -------------------------------------------------------------------------------
    def _obs(self) -> np.ndarray:
        obs = np.zeros(8, dtype=np.float32)
        if self._pos == 0:
            obs[0] = 1.0  # home
        if self._pos == self.corridor_length:
            obs[2] = 1.0  # junction (home and junction coincide when corridor_length == 0)
        elif self._pos > 0:
            obs[1] = 1.0  # corridor
        obs[3] = self._prev_reward
        if self._prev_action is not None:
            obs[4 + self._prev_action] = 1.0
        obs[7] = self._trial / self.n_trials
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = self._choose_task(options)
        self._pos, self._trial = 0, 0
        self._prev_reward = 0.0
        self._prev_action: int | None = None
        return self._obs(), {"task": self._task_info(), "trial": 0, "high_arm": task["high_arm"]}

    def high_arm(self) -> int:
        """The arm holding the high reward on the current trial."""
        swapped = self._trial >= self._task["switch_trial"]
        return self._task["high_arm"] ^ int(swapped)

    def step(self, action):
        a = self._check_action(action)
        high_arm = self.high_arm()
        trial_over, reward = False, 0.0
        if self._pos < self.corridor_length:
            if a == FORWARD:
                self._pos += 1
            else:
                reward, trial_over = self.crash_reward, True
        elif a == FORWARD:
            reward, trial_over = self.crash_reward, True
        else:
            arm = 0 if a == LEFT else 1
            reward = self.high_reward if arm == high_arm else self.low_reward
            trial_over = True
        if trial_over:
            self._trial += 1
            self._pos = 0
        self._prev_reward, self._prev_action = reward, a
        terminated = self._trial >= self.n_trials
        info = {
            "task": self._task_info(),
            "trial": self._trial,
            "trial_over": trial_over,
            "high_arm": high_arm,
        }
        return self._obs(), reward, terminated, False, info
