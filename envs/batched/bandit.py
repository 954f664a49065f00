"""Batched ``TwoArmedBandit`` (``neuromod_rl.envs.bandit``): same tasks, rewards and observations.

Observation: previous action one-hot (2), previous reward, ``t / n_pulls``; an episode is ``n_pulls``
pulls of two Bernoulli arms whose probabilities (the task ``p``, shape (num_envs, 2)) are drawn per episode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from neuromod_rl.envs.bandit import DIFFICULTIES, VARIANTS
from neuromod_rl.envs.base import check_choice, check_int_range
from neuromod_rl.envs.batched.base import BatchedTaskEnv, Tasks
from neuromod_rl.envs.batched.tensors import as_lane_tensor


class BatchedTwoArmedBandit(BatchedTaskEnv):
    """``num_envs`` two-armed Bernoulli bandits; task ``{"p": (num_envs, 2) float32}``.

    Args:
        num_envs, device, max_episode_steps, check_actions: see ``BatchedTaskEnv``.
        variant: ``"independent"``, ``"dependent"`` (``p2 = 1 - p1``) or ``"fixed"`` (a difficulty pair).
        n_pulls: pulls per episode.
        difficulty: the pair of the ``"fixed"`` variant: ``"easy"``, ``"medium"`` or ``"hard"``.
    """

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        variant: str = "independent",
        n_pulls: int = 100,
        difficulty: str = "medium",
        max_episode_steps: int | None = None,
        check_actions: bool = True,
    ):
        super().__init__(num_envs, device, max_episode_steps, check_actions)
        self.variant = check_choice("variant", variant, VARIANTS)
        self.difficulty = check_choice("difficulty", difficulty, tuple(DIFFICULTIES))
        self.n_pulls = check_int_range("n_pulls", n_pulls, 1)
        self.single_action_space = spaces.Discrete(2)
        self.single_observation_space = spaces.Box(0.0, 1.0, shape=(4,), dtype=np.float32)
        self._pair = torch.tensor(DIFFICULTIES[self.difficulty], dtype=torch.float32, device=self.device)
        n = num_envs
        self.t = torch.zeros(n, dtype=torch.int64, device=self.device)
        self.prev_action = torch.full((n,), -1, dtype=torch.int64, device=self.device)  # -1: none yet
        self.prev_reward = torch.zeros(n, device=self.device)

    def _sample_tasks(self, n: int) -> Tasks:
        if self.variant == "independent":
            p = self._rand(n, 2)
        elif self.variant == "dependent":
            p1 = self._rand(n)
            p = torch.stack([p1, 1.0 - p1], dim=1)
        else:
            flip = self._randint(2, n).bool().unsqueeze(1)
            p = torch.where(flip, self._pair.flip(0), self._pair).expand(n, 2).clone()
        return {"p": p}

    def _validate_tasks(self, tasks: Mapping[str, Any], n: int) -> Tasks:
        p = as_lane_tensor(tasks, "p", (n, 2), torch.float32, self.device, "TwoArmedBandit", low=0.0, high=1.0)
        return {"p": p}

    def _start_episodes(self, mask: Tensor) -> None:
        self.t = torch.where(mask, 0, self.t)
        self.prev_action = torch.where(mask, -1, self.prev_action)
        self.prev_reward = torch.where(mask, 0.0, self.prev_reward)

    def _transition(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        p_chosen = self.task["p"].gather(1, actions.unsqueeze(1)).squeeze(1)
        reward = (self._rand(self.num_envs) < p_chosen).float()
        self.t = self.t + 1
        self.prev_action, self.prev_reward = actions, reward
        return reward, self.t >= self.n_pulls

    def _observe(self) -> Tensor:
        onehot = torch.nn.functional.one_hot(self.prev_action.clamp_min(0), 2).float()
        onehot = onehot * (self.prev_action >= 0).unsqueeze(1)
        time = (self.t.double() / self.n_pulls).float()  # as the gym version: float64 quotient cast to float32
        return torch.cat([onehot, self.prev_reward.unsqueeze(1), time.unsqueeze(1)], dim=1)

    def regret(self, actions: Tensor) -> Tensor:
        """The expected regret ``max(p) - p[a]`` of ``actions`` (num_envs,) under the tasks in force."""
        p = self.task["p"]
        return p.max(dim=1).values - p.gather(1, actions.long().unsqueeze(1)).squeeze(1)
