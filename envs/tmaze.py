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


def init_tmaze(
    env: Any,
    n_trials: int,
    corridor_length: int,
    high_reward: float,
    low_reward: float,
    crash_reward: float,
    switch_range: tuple[float, float],
) -> spaces.Box:
    """Check the T-maze's arguments and set them on ``env`` (this env and its batched version share them):
    ``n_trials``, ``corridor_length``, the three rewards and the bounds of the swap trial.

    Args:
        env: the env under construction.
        n_trials: trials per lifetime (at least 2).
        corridor_length: forward steps from home to the junction (0 to 100).
        high_reward, low_reward, crash_reward: rewards of the high arm, the low arm and a crash.
        switch_range: the arms swap at a trial drawn in ``switch_range * n_trials``.

    Returns:
        The observation space (8 inputs, bounds covering every reward).
    """
    env.n_trials = check_int_range("n_trials", n_trials, 2)
    env.corridor_length = check_int_range("corridor_length", corridor_length, 0, 100)
    env.high_reward = check_range("high_reward", high_reward, -1e6, 1e6)
    env.low_reward = check_range("low_reward", low_reward, -1e6, 1e6)
    env.crash_reward = check_range("crash_reward", crash_reward, -1e6, 1e6)
    lo = check_range("switch_range[0]", switch_range[0], 0.0, 1.0)
    hi = check_range("switch_range[1]", switch_range[1], lo, 1.0)
    # the swap happens at a trial index in [lo, hi] * n_trials, never on the first trial
    env._switch_lo = max(1, int(round(lo * env.n_trials)))
    env._switch_hi = max(env._switch_lo, min(env.n_trials - 1, int(round(hi * env.n_trials))))
    rewards = (env.high_reward, env.low_reward, env.crash_reward, 0.0)
    low, high = min(0.0, *rewards), max(1.0, *rewards)
    return spaces.Box(low, high, shape=(8,), dtype=np.float32)



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
        self.observation_space = init_tmaze(
            self, n_trials, corridor_length, high_reward, low_reward, crash_reward, switch_range
        )
        self.max_steps = self.n_trials * (self.corridor_length + 1)
        self.action_space = spaces.Discrete(3)

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
