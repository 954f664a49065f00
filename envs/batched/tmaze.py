"""Batched ``TMaze`` (``neuromod_rl.envs.tmaze``): same trials, reward swap, crashes and observations.

Observation: position one-hot (home, corridor, junction), previous reward, previous action one-hot
(forward, left, right), ``trial / n_trials``. Episodes end after ``n_trials`` trials, so lanes end at
different steps (a crash ends a trial early).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from gymnasium import spaces
from torch import Tensor

from neuromod_rl.envs.batched.base import BatchedTaskEnv, Tasks
from neuromod_rl.envs.batched.tensors import as_lane_tensor, check_task_keys
from neuromod_rl.envs.tmaze import FORWARD, LEFT, init_tmaze


class BatchedTMaze(BatchedTaskEnv):
    """``num_envs`` T-mazes; task ``{"high_arm": (num_envs,) 0 left | 1 right, "switch_trial": (num_envs,)}``.

    Args:
        num_envs, device, max_episode_steps, check_actions: see ``BatchedTaskEnv``.
        n_trials: trials per episode.
        corridor_length: forward steps from home to the junction.
        high_reward, low_reward, crash_reward: rewards of the high arm, the low arm and a crash.
        switch_range: the arms swap at a trial drawn in ``switch_range * n_trials`` (never the first).
    """

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        n_trials: int = 100,
        corridor_length: int = 1,
        high_reward: float = 1.0,
        low_reward: float = 0.2,
        crash_reward: float = -0.4,
        switch_range: tuple[float, float] = (0.25, 0.75),
        max_episode_steps: int | None = None,
        check_actions: bool = True,
    ):
        super().__init__(num_envs, device, max_episode_steps, check_actions)
        # the gym version's checks, switch bounds and observation space
        self.single_observation_space = init_tmaze(
            self, n_trials, corridor_length, high_reward, low_reward, crash_reward, switch_range
        )
        self.single_action_space = spaces.Discrete(3)
        n, dev = num_envs, self.device
        self.pos = torch.zeros(n, dtype=torch.int64, device=dev)
        self.trial = torch.zeros(n, dtype=torch.int64, device=dev)
        self.prev_action = torch.full((n,), -1, dtype=torch.int64, device=dev)  # -1: none yet
        self.prev_reward = torch.zeros(n, device=dev)

    def _sample_tasks(self, n: int) -> Tasks:
        high_arm = self._randint(2, n)
        switch = self._switch_lo + self._randint(self._switch_hi - self._switch_lo + 1, n)
        return {"high_arm": high_arm, "switch_trial": switch}

    def _validate_tasks(self, tasks: Mapping[str, Any], n: int) -> Tasks:
        check_task_keys(tasks, ["high_arm", "switch_trial"], "TMaze")
        dev = self.device
        return {
            "high_arm": as_lane_tensor(tasks, "high_arm", (n,), torch.int64, dev, "TMaze", 0, 1),
            "switch_trial": as_lane_tensor(tasks, "switch_trial", (n,), torch.int64, dev, "TMaze", 1, self.n_trials),
        }

    def high_arm(self) -> Tensor:
        """The arm holding the high reward on each lane's current trial, (num_envs,) int64."""
        return self.task["high_arm"] ^ (self.trial >= self.task["switch_trial"]).long()

    def _start_episodes(self, mask: Tensor) -> None:
        self.pos = torch.where(mask, 0, self.pos)
        self.trial = torch.where(mask, 0, self.trial)
        self.prev_action = torch.where(mask, -1, self.prev_action)
        self.prev_reward = torch.where(mask, 0.0, self.prev_reward)

    def _transition(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        forward = actions == FORWARD
        in_corridor = self.pos < self.corridor_length
        crash = in_corridor != forward  # turning in the corridor or going straight at the junction
        arm_end = ~in_corridor & ~forward
        arm = (actions != LEFT).long()
        arm_reward = torch.where(arm == self.high_arm(), self.high_reward, self.low_reward)
        reward = torch.where(crash, self.crash_reward, torch.where(arm_end, arm_reward, 0.0))
        trial_over = crash | arm_end
        self.trial = self.trial + trial_over.long()
        self.pos = torch.where(trial_over, 0, self.pos + 1)
        self.prev_action, self.prev_reward = actions, reward.float()
        return self.prev_reward, self.trial >= self.n_trials

    def _observe(self) -> Tensor:
        home = self.pos == 0
        junction = self.pos == self.corridor_length
        corridor = ~junction & (self.pos > 0)
        onehot = torch.nn.functional.one_hot(self.prev_action.clamp_min(0), 3).float()
        onehot = onehot * (self.prev_action >= 0).unsqueeze(1)
        trial = (self.trial.double() / self.n_trials).float()
        pos = torch.stack([home, corridor, junction], dim=1).float()
        return torch.cat([pos, self.prev_reward.unsqueeze(1), onehot, trial.unsqueeze(1)], dim=1)
