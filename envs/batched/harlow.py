"""Batched ``Harlow`` (``neuromod_rl.envs.harlow``): same objects, side shuffles, rewards and observations.

Observation: left object, right object, previous action one-hot (2), previous reward, ``t / n_trials``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from neuromod_rl.envs.base import check_int_range, check_range
from neuromod_rl.envs.batched.base import BatchedTaskEnv, Tasks
from neuromod_rl.envs.batched.tensors import as_lane_tensor, check_task_keys, distinct_sign_vectors


class BatchedHarlow(BatchedTaskEnv):
    """``num_envs`` vector-object Harlow tasks; task ``{"objects": (num_envs, 2, object_dim) ±1,
    "rewarded": (num_envs,) 0 | 1}``. ``self.left`` (num_envs,) is the object on the left this trial.

    Args:
        num_envs, device, max_episode_steps, check_actions: see ``BatchedTaskEnv``.
        n_trials: trials (steps) per episode.
        object_dim: bits per object.
        correct_reward, wrong_reward: reward for picking the rewarded object, or the other one.
    """

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        n_trials: int = 6,
        object_dim: int = 8,
        correct_reward: float = 1.0,
        wrong_reward: float = -1.0,
        max_episode_steps: int | None = None,
        check_actions: bool = True,
    ):
        super().__init__(num_envs, device, max_episode_steps, check_actions)
        self.n_trials = check_int_range("n_trials", n_trials, 1)
        self.object_dim = check_int_range("object_dim", object_dim, 1, 1024)
        self.correct_reward = check_range("correct_reward", correct_reward, -1e6, 1e6)
        self.wrong_reward = check_range("wrong_reward", wrong_reward, -1e6, 1e6)
        self.single_action_space = spaces.Discrete(2)
        low = min(-1.0, self.correct_reward, self.wrong_reward)
        high = max(1.0, self.correct_reward, self.wrong_reward)
        self.single_observation_space = spaces.Box(low, high, shape=(2 * self.object_dim + 4,), dtype=np.float32)
        n, dev = num_envs, self.device
        self.left = torch.zeros(n, dtype=torch.int64, device=dev)
        self.t = torch.zeros(n, dtype=torch.int64, device=dev)
        self.prev_action = torch.full((n,), -1, dtype=torch.int64, device=dev)  # -1: none yet
        self.prev_reward = torch.zeros(n, device=dev)

    def _sample_tasks(self, n: int) -> Tasks:
        objects = distinct_sign_vectors(n, 2, self.object_dim, self.generator, self.device)
        return {"objects": objects, "rewarded": self._randint(2, n)}

    def _validate_tasks(self, tasks: Mapping[str, Any], n: int) -> Tasks:
        check_task_keys(tasks, ["objects", "rewarded"], "Harlow")
        shape = (n, 2, self.object_dim)
        return {
            "objects": as_lane_tensor(tasks, "objects", shape, torch.float32, self.device, "Harlow", signs=True),
            "rewarded": as_lane_tensor(tasks, "rewarded", (n,), torch.int64, self.device, "Harlow", 0, 1),
        }

    def _start_episodes(self, mask: Tensor) -> None:
        self.t = torch.where(mask, 0, self.t)
        self.prev_action = torch.where(mask, -1, self.prev_action)
        self.prev_reward = torch.where(mask, 0.0, self.prev_reward)
        self.left = torch.where(mask, self._randint(2, self.num_envs), self.left)

    def _transition(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        chosen = torch.where(actions == 0, self.left, 1 - self.left)
        correct = chosen == self.task["rewarded"]
        reward = torch.where(correct, self.correct_reward, self.wrong_reward).float()
        self.t = self.t + 1
        self.prev_action, self.prev_reward = actions, reward
        self.left = self._randint(2, self.num_envs)
        return reward, self.t >= self.n_trials

    def _observe(self) -> Tensor:
        objects = self.task["objects"]
        lanes = torch.arange(self.num_envs, device=self.device)
        onehot = torch.nn.functional.one_hot(self.prev_action.clamp_min(0), 2).float()
        onehot = onehot * (self.prev_action >= 0).unsqueeze(1)
        time = (self.t.double() / self.n_trials).float().unsqueeze(1)
        return torch.cat(
            [objects[lanes, self.left], objects[lanes, 1 - self.left], onehot, self.prev_reward.unsqueeze(1), time],
            dim=1,
        )
