"""Batched ``DelayedCue`` (``neuromod_rl.envs.delayed_cue``): cue on the first step, ``delay`` blanks, go,
then the answer is scored. Observation: cue one-hot (``n_cues``), go flag.
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
from neuromod_rl.envs.batched.tensors import as_lane_tensor, check_task_keys


class BatchedDelayedCue(BatchedTaskEnv):
    """``num_envs`` delayed match-to-cue tasks; task ``{"cue": (num_envs,) int64}``.

    Args:
        num_envs, device, max_episode_steps, check_actions: see ``BatchedTaskEnv``.
        n_cues: number of cues (and actions), 2 to 4.
        delay: blank steps between the cue and the go step.
        wrong_reward: reward of a wrong answer (a right one gives 1).
    """

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        n_cues: int = 2,
        delay: int = 5,
        wrong_reward: float = 0.0,
        max_episode_steps: int | None = None,
        check_actions: bool = True,
    ):
        super().__init__(num_envs, device, max_episode_steps, check_actions)
        self.n_cues = check_int_range("n_cues", n_cues, 2, 4)
        self.delay = check_int_range("delay", delay, 0, 10_000)
        self.wrong_reward = check_range("wrong_reward", wrong_reward, -1.0, 0.0)
        self.single_action_space = spaces.Discrete(self.n_cues)
        self.single_observation_space = spaces.Box(0.0, 1.0, shape=(self.n_cues + 1,), dtype=np.float32)
        self.t = torch.zeros(num_envs, dtype=torch.int64, device=self.device)

    def _sample_tasks(self, n: int) -> Tasks:
        return {"cue": self._randint(self.n_cues, n)}

    def _validate_tasks(self, tasks: Mapping[str, Any], n: int) -> Tasks:
        check_task_keys(tasks, ["cue"], "DelayedCue")
        return {"cue": as_lane_tensor(tasks, "cue", (n,), torch.int64, self.device, "DelayedCue", 0, self.n_cues - 1)}

    def _start_episodes(self, mask: Tensor) -> None:
        self.t = torch.where(mask, 0, self.t)

    def _transition(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        self.t = self.t + 1
        scored = self.t == self.delay + 2
        right = actions == self.task["cue"]
        reward = torch.where(scored, torch.where(right, 1.0, self.wrong_reward), 0.0).float()
        return reward, scored

    def _observe(self) -> Tensor:
        cue = torch.nn.functional.one_hot(self.task["cue"], self.n_cues).float() * (self.t == 0).unsqueeze(1)
        go = (self.t == self.delay + 1).float().unsqueeze(1)
        return torch.cat([cue, go], dim=1)
