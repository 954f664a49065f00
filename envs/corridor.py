"""HiddenGoalCorridor: search a dark corridor for a goal on either side, a task that needs memory.

The agent starts at cell 0 of an endless corridor; the task is an invisible goal cell
``g = +-d`` with ``d`` in ``distance_range`` (default 3..6, so 8 tasks). Actions: 0 left, 1 stay,
2 right. Every step that *ends* on the goal pays ``goal_reward`` (1); nothing else is paid. The
observation is a constant 1: the corridor is dark, so the agent never sees where it is. An episode
is ``episode_length`` (40) steps.

Why a reactive agent cannot solve it: until the first reward, nothing the agent sees depends on the
task (the observation is constant and every reward is 0), so its path is the same whichever side
the goal is on. A memory agent walks out to ``+d_max`` and, finding nothing, turns back to ``-d_max``;
turning back needs the number of steps walked so far. A reactive agent sees the observation, its
previous action (3 values) and its previous reward: while nothing is paid, a deterministic one is a
machine whose only state is its last action, so it walks one way for good or stays within a cell or
two of the start, and finds the goals on one side at most. Expected returns with the defaults:

- oracle (walks straight to the goal and stays): ``episode_length + 1 - E[d]`` = 36.5;
- a memory agent that sweeps right to ``d_max``, then left: 30.5;
- best deterministic reactive policy (walk one way, stay on the first reward): half the oracle, 18.25;
- best stochastic reactive policy found (walk right, turn left for good with probability 0.12 per
  step, stay on the first reward: a random timer): 22.6;
- best Markov policy (one fixed action distribution, which cannot stop on the goal; grid search): 2.25.

``tests/envs/test_adaptation_tasks.py`` computes these by dynamic programming: every deterministic reactive policy is
scored (staying after a reward is the best reply to it, so 81 policies remain), and thousands of
stochastic ones are scored; none beats 22.6 (a search, not a proof, for stochastic policies).

This is the exact, discrete abstraction of ``HalfCheetahHiddenGoal``, where the bound holds in the
same way but cannot be enumerated. Task: ``{"goal": int}``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from neuromod_rl.envs.base import Task, TaskEnvMixin, check_int_range, check_range, check_task_keys, renders_observation

LEFT, STAY, RIGHT = 0, 1, 2


@renders_observation
class HiddenGoalCorridor(TaskEnvMixin, gym.Env):
    """A dark corridor with a goal ``d`` cells to the left or right; task ``{"goal": int}``."""

    _task_has_arrays = False

    def __init__(
        self,
        distance_range: tuple[int, int] = (3, 6),
        episode_length: int = 40,
        goal_reward: float = 1.0,
    ):
        """Args:
        distance_range: the goal's distance from the start, ``(low, high)`` cells inclusive, ``low >= 1``.
        episode_length: steps per episode; at least ``3 * high`` so that a sweep can reach both sides.
        goal_reward: paid on every step that ends on the goal (positive).
        """
        if not isinstance(distance_range, tuple | list) or len(distance_range) != 2:
            raise ValueError(f"distance_range={distance_range!r} must be a (low, high) pair of cell counts")
        low = check_int_range("distance_range[0]", distance_range[0], 1, 1000)
        high = check_int_range("distance_range[1]", distance_range[1], low, 1000)
        self.distance_range = (low, high)
        self.episode_length = check_int_range("episode_length", episode_length, 3 * high, 100_000)
        self.goal_reward = check_range("goal_reward", goal_reward, 1e-6, 1e6)
        self.action_space = spaces.Discrete(3)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self._obs = np.ones(1, dtype=np.float32)

    # -- task protocol --------------------------------------------------------------------------
    def _sample_task(self, rng: np.random.Generator) -> Task:
        low, high = self.distance_range
        distance = int(rng.integers(low, high + 1))
        return {"goal": distance if rng.random() < 0.5 else -distance}

    def validate_task(self, task: Any) -> Task:
        check_task_keys(task, ["goal"], "HiddenGoalCorridor")
        low, high = self.distance_range
        goal = check_int_range("task['goal']", task["goal"], -high, high)
        if abs(goal) < low:
            raise ValueError(f"task['goal']={goal} is too close to the start; valid goals are +-{low}..{high}")
        return {"goal": goal}

    def _encode_task(self, task: Task) -> np.ndarray:
        return np.array([task["goal"] / self.distance_range[1]])

    # -- dynamics -------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._choose_task(options)
        self._pos, self._t = 0, 0
        return self._obs.copy(), {"task": self._task_info(), "position": 0}

    def step(self, action):
        a = self._check_action(action)
        self._pos += a - 1
        self._t += 1
        on_goal = self._pos == self._task["goal"]
        reward = self.goal_reward if on_goal else 0.0
        info = {"task": self._task_info(), "position": self._pos, "on_goal": on_goal}
        return self._obs.copy(), reward, self._t >= self.episode_length, False, info
