"""Grid maze with an invisible, per-episode goal (Backpropamine, Miconi et al., ICLR 2019).

``size`` x ``size`` grid (13 in the paper; 9 and 11 also used) with border walls and pillars at
every even (row, col) inside; the centre is kept free and the agent starts there. The task is an
invisible goal cell sampled per episode. Entering the goal gives ``goal_reward`` (+10) and
teleports the agent to a random free cell other than the goal; bumping a wall leaves the agent
in place and costs ``wall_penalty`` (0 in the paper). Episodes are 200 steps.

Observation (paper layout): 3x3 view of walls around the agent (9), bias 1, ``t / episode_length``,
previous reward, previous action one-hot (4). Actions: 0 up, 1 down, 2 left, 3 right.
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
    split_finite,
)

SIZES = (9, 11, 13)
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])  # up, down, left, right


def make_maze(size: int) -> np.ndarray:
    """The maze layout: 1 = wall, 0 = free (border walls, pillars at even interior cells)."""
    lab = np.ones((size, size), dtype=np.int8)
    lab[1:-1, 1:-1] = 0
    lab[2:-1:2, 2:-1:2] = 1
    lab[size // 2, size // 2] = 0  # the start cell is always free (a pillar site when size//2 is even)
    return lab



@renders_observation
class Maze(TaskEnvMixin, gym.Env):
    """Backpropamine grid maze; task ``{"goal": (row, col)}``."""

    _task_has_arrays = False


    def __init__(
        self,
        size: int = 13,
        episode_length: int = 200,
        goal_reward: float = 10.0,
        wall_penalty: float = 0.0,
    ):
        self.size = check_choice("size", size, SIZES)
        self.episode_length = check_int_range("episode_length", episode_length, 1)
        self.goal_reward = check_range("goal_reward", goal_reward, 0.0, 1e6)
        self.wall_penalty = check_range("wall_penalty", wall_penalty, 0.0, 1e6)
        self.lab = make_maze(self.size)
        self.start = (self.size // 2, self.size // 2)
        free = np.argwhere(self.lab == 0)
        self.free_cells: list[tuple[int, int]] = [(int(r), int(c)) for r, c in free]
        self.goal_cells = [cell for cell in self.free_cells if cell != self.start]
        self.action_space = spaces.Discrete(4)
        low = min(0.0, -self.wall_penalty)
        high = max(1.0, self.goal_reward)
        self.observation_space = spaces.Box(low, high, shape=(16,), dtype=np.float32)

    # -- task protocol --------------------------------------------------------------------------
    def _sample_task(self, rng: np.random.Generator) -> Task:
        return {"goal": self.goal_cells[int(rng.integers(len(self.goal_cells)))]}

    def validate_task(self, task: Any) -> Task:
        check_task_keys(task, ["goal"], "Maze")
        goal = task["goal"]
        if np.shape(goal) != (2,):
            raise ValueError(f"task['goal']={goal!r} must be a (row, col) pair")
        r = check_int_range("task['goal'][0]", goal[0], 1, self.size - 2)
        c = check_int_range("task['goal'][1]", goal[1], 1, self.size - 2)
        if (r, c) not in self.goal_cells:
            raise ValueError(
                f"task['goal']={(r, c)} is a wall or the start cell; valid goals are free cells "
                f"(row, col) in [1, {self.size - 2}] other than pillars (both even) "
                f"and the start {self.start}"
            )
        return {"goal": (r, c)}

    def task_split(self, seed: int, n_train: int | None = None, n_test: int = 10):
        """Disjoint goal cells: ``n_test`` held out, the rest (or ``n_train`` of them) for training."""
        train, test = split_finite([{"goal": g} for g in self.goal_cells], seed, n_test)
        return (train if n_train is None else train[:n_train]), test

    # -- dynamics -------------------------------------------------------------------------------
    def _obs(self) -> np.ndarray:
        r, c = self._pos
        obs = np.zeros(16, dtype=np.float32)
        obs[:9] = self.lab[r - 1 : r + 2, c - 1 : c + 2].ravel()
        obs[9] = 1.0  # bias input
        obs[10] = self._t / self.episode_length
        obs[11] = self._prev_reward
        if self._prev_action is not None:
            obs[12 + self._prev_action] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = self._choose_task(options)
        self._goal = task["goal"]
        self._pos = self.start
        self._t = 0
        self._prev_reward = 0.0
        self._prev_action: int | None = None
        return self._obs(), {"task": self._task_info(), "position": self._pos}

    def step(self, action):
        a = self._check_action(action)
        r, c = self._pos[0] + MOVES[a, 0], self._pos[1] + MOVES[a, 1]
        reward = 0.0
        if self.lab[r, c]:
            reward -= self.wall_penalty
        else:
            self._pos = (int(r), int(c))
        reached = self._pos == self._goal
        if reached:
            reward += self.goal_reward
            # teleport to a random free cell other than the goal (paper code)
            while True:
                cell = self.free_cells[int(self.np_random.integers(len(self.free_cells)))]
                if cell != self._goal:
                    break
            self._pos = cell
        self._t += 1
        self._prev_reward, self._prev_action = reward, a
        terminated = self._t >= self.episode_length
        info = {"task": self._task_info(), "position": self._pos, "reached_goal": reached}
        return self._obs(), reward, terminated, False, info
