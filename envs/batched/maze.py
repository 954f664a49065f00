"""Batched ``Maze`` (``neuromod_rl.envs.maze``): same layout, goals, teleports, rewards and observations.

Observation: 3x3 wall view around the agent (9), bias 1, ``t / episode_length``, previous reward, previous
action one-hot (4). Actions: 0 up, 1 down, 2 left, 3 right.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from neuromod_rl.envs.base import check_choice, check_int_range, check_range
from neuromod_rl.envs.batched.base import BatchedTaskEnv, Tasks
from neuromod_rl.envs.batched.tensors import as_lane_tensor, check_task_keys
from neuromod_rl.envs.maze import MOVES, SIZES, make_maze


class BatchedMaze(BatchedTaskEnv):
    """``num_envs`` Backpropamine grid mazes; task ``{"goal": (num_envs, 2) int64 (row, col)}``.

    Args:
        num_envs, device, max_episode_steps, check_actions: see ``BatchedTaskEnv``.
        size: the grid side, 9, 11 or 13.
        episode_length: steps per episode.
        goal_reward: reward for entering the goal (the agent is then teleported to a random free cell).
        wall_penalty: cost of bumping a wall.
    """

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        size: int = 13,
        episode_length: int = 200,
        goal_reward: float = 10.0,
        wall_penalty: float = 0.0,
        max_episode_steps: int | None = None,
        check_actions: bool = True,
    ):
        super().__init__(num_envs, device, max_episode_steps, check_actions)
        self.size = check_choice("size", size, SIZES)
        self.episode_length = check_int_range("episode_length", episode_length, 1)
        self.goal_reward = check_range("goal_reward", goal_reward, 0.0, 1e6)
        self.wall_penalty = check_range("wall_penalty", wall_penalty, 0.0, 1e6)
        dev = self.device
        lab = make_maze(self.size)
        self.lab = torch.as_tensor(lab, dtype=torch.int64, device=dev)
        self.start = torch.tensor([self.size // 2, self.size // 2], device=dev)
        self.free_cells = torch.as_tensor(np.argwhere(lab == 0), dtype=torch.int64, device=dev)  # row-major
        # index of each cell in free_cells (-1 for walls): the teleport draws "any free cell but the goal"
        index = -np.ones(lab.shape, dtype=np.int64)
        index[lab == 0] = np.arange(len(self.free_cells))
        self.free_index = torch.as_tensor(index, device=dev)
        self.moves = torch.as_tensor(MOVES, dtype=torch.int64, device=dev)
        offsets = np.array([(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)])
        self.view = torch.as_tensor(offsets, dtype=torch.int64, device=dev)
        start_index = int(index[self.size // 2, self.size // 2])
        self.n_free = len(self.free_cells)
        self.single_action_space = spaces.Discrete(4)
        low, high = min(0.0, -self.wall_penalty), max(1.0, self.goal_reward)
        self.single_observation_space = spaces.Box(low, high, shape=(16,), dtype=np.float32)
        self._start_index = start_index
        n = num_envs
        self.pos = self.start.expand(n, 2).clone()
        self.t = torch.zeros(n, dtype=torch.int64, device=dev)
        self.prev_action = torch.full((n,), -1, dtype=torch.int64, device=dev)  # -1: none yet
        self.prev_reward = torch.zeros(n, device=dev)

    def _sample_tasks(self, n: int) -> Tasks:
        # goal cells are the free cells but the start, in the same order as the gym version
        i = self._randint(self.n_free - 1, n)
        i = i + (i >= self._start_index).long()
        return {"goal": self.free_cells[i]}

    def _validate_tasks(self, tasks: Mapping[str, Any], n: int) -> Tasks:
        check_task_keys(tasks, ["goal"], "Maze")
        goal = as_lane_tensor(tasks, "goal", (n, 2), torch.int64, self.device, "Maze", 1, self.size - 2)
        bad = (self.lab[goal[:, 0], goal[:, 1]] == 1) | (goal == self.start).all(dim=1)
        if bool(bad.any()):
            raise ValueError(
                f"tasks['goal'] holds a wall or the start cell {tuple(self.start.tolist())}; valid goals are "
                f"free cells (row, col) in [1, {self.size - 2}] other than pillars (both even) and the start"
            )
        return {"goal": goal}

    def _start_episodes(self, mask: Tensor) -> None:
        m = mask.unsqueeze(1)
        self.pos = torch.where(m, self.start, self.pos)
        self.t = torch.where(mask, 0, self.t)
        self.prev_action = torch.where(mask, -1, self.prev_action)
        self.prev_reward = torch.where(mask, 0.0, self.prev_reward)

    def _transition(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        target = self.pos + self.moves[actions]
        wall = self.lab[target[:, 0], target[:, 1]] == 1
        self.pos = torch.where(wall.unsqueeze(1), self.pos, target)
        goal = self.task["goal"]
        reached = (self.pos == goal).all(dim=1)
        reward = reached * self.goal_reward - wall * self.wall_penalty
        # teleport: a uniform free cell other than the goal (skip the goal's index)
        i = self._randint(self.n_free - 1, self.num_envs)
        i = i + (i >= self.free_index[goal[:, 0], goal[:, 1]]).long()
        self.pos = torch.where(reached.unsqueeze(1), self.free_cells[i], self.pos)
        self.t = self.t + 1
        self.prev_action, self.prev_reward = actions, reward.float()
        return self.prev_reward, self.t >= self.episode_length

    def _observe(self) -> Tensor:
        cells = self.pos.unsqueeze(1) + self.view  # (n, 9, 2)
        walls = self.lab[cells[..., 0], cells[..., 1]].float()
        bias = torch.ones(self.num_envs, 1, device=self.device)
        time = (self.t.double() / self.episode_length).float().unsqueeze(1)
        onehot = torch.nn.functional.one_hot(self.prev_action.clamp_min(0), 4).float()
        onehot = onehot * (self.prev_action >= 0).unsqueeze(1)
        return torch.cat([walls, bias, time, self.prev_reward.unsqueeze(1), onehot], dim=1)
