"""Batched ``CueReward`` (``neuromod_rl.envs.cue_reward``): same tasks, trials, rewards and observations.

Each lane keeps its current trial as a row of codes (cue index, ``BLANK`` or ``GO``), padded to the longest
possible trial; new trials are drawn for the lanes that finished theirs, all lanes at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from gymnasium import spaces
from torch import Tensor

from neuromod_rl.envs.batched.base import BatchedTaskEnv, Tasks, lane_mask
from neuromod_rl.envs.batched.tensors import as_lane_tensor, check_task_keys, distinct_sign_vectors
from neuromod_rl.envs.cue_reward import BLANK, GO, init_cue_reward


class BatchedCueReward(BatchedTaskEnv):
    """``num_envs`` Backpropamine cue-reward tasks; task ``{"cues": (num_envs, n_cues, cue_bits) ±1,
    "target": (num_envs,) int64}``.

    Args:
        num_envs, device, max_episode_steps, check_actions: see ``BatchedTaskEnv``.
        n_cues: cues per task (half of them are shown per trial).
        cue_bits: bits per cue.
        episode_length: steps per episode.
        reward: reward for a right answer on the go step (minus it for a wrong one).
        response_penalty: cost of every action 1.
    """

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        n_cues: int = 4,
        cue_bits: int = 20,
        episode_length: int = 120,
        reward: float = 1.0,
        response_penalty: float = 0.0,
        max_episode_steps: int | None = None,
        check_actions: bool = True,
    ):
        super().__init__(num_envs, device, max_episode_steps, check_actions)
        # the gym version's checks and observation space
        self.single_observation_space = init_cue_reward(
            self, n_cues, cue_bits, episode_length, reward, response_penalty
        )
        self.single_action_space = spaces.Discrete(2)
        self.n_shown = self.n_cues // 2
        self.max_middle = self.n_shown + self.n_cues - 1  # longest run of cues and blanks in a trial
        n, dev = num_envs, self.device
        self.trial = torch.full((n, self.max_middle + 3), BLANK, dtype=torch.int64, device=dev)
        self.trial_len = torch.zeros(n, dtype=torch.int64, device=dev)
        self.trial_step = torch.zeros(n, dtype=torch.int64, device=dev)
        self.target_shown = torch.zeros(n, dtype=torch.bool, device=dev)
        self.t = torch.zeros(n, dtype=torch.int64, device=dev)
        self.prev_action = torch.full((n,), -1, dtype=torch.int64, device=dev)  # -1: none yet
        self.prev_reward = torch.zeros(n, device=dev)

    # -- tasks ----------------------------------------------------------------------------------
    def _sample_tasks(self, n: int) -> Tasks:
        cues = distinct_sign_vectors(n, self.n_cues, self.cue_bits, self.generator, self.device)
        return {"cues": cues, "target": self._randint(self.n_cues, n)}

    def _validate_tasks(self, tasks: Mapping[str, Any], n: int) -> Tasks:
        check_task_keys(tasks, ["cues", "target"], "CueReward")
        shape = (n, self.n_cues, self.cue_bits)
        cues = as_lane_tensor(tasks, "cues", shape, torch.float32, self.device, "CueReward", signs=True)
        target = as_lane_tensor(tasks, "target", (n,), torch.int64, self.device, "CueReward", 0, self.n_cues - 1)
        return {"cues": cues, "target": target}

    # -- trials ---------------------------------------------------------------------------------
    def _new_trials(self, mask: Tensor) -> None:
        """Draw a fresh trial where ``mask``: ``n_cues // 2`` distinct cues placed at random among
        ``n_cues // 2 + U{0..n_cues-1}`` middle steps, framed by a blank, then go and a blank."""
        n, dev = self.num_envs, self.device
        shown = self._permutations(n, self.n_cues)[:, : self.n_shown]
        middle = self.n_shown + self._randint(self.n_cues, n)
        # uniform distinct positions for the shown cues inside the middle (a shuffle of cues among blanks)
        keys = self._rand(n, self.max_middle).masked_fill(
            torch.arange(self.max_middle, device=dev) >= middle.unsqueeze(1), float("inf")
        )
        places = torch.argsort(keys, dim=1)[:, : self.n_shown]
        steps = torch.arange(self.max_middle + 3, device=dev).unsqueeze(0)
        trial = torch.full((n, self.max_middle + 3), BLANK, dtype=torch.int64, device=dev)
        trial = torch.where(steps == middle.unsqueeze(1) + 1, GO, trial)
        trial.scatter_(1, places + 1, shown)
        self.trial = torch.where(lane_mask(mask, trial), trial, self.trial)
        self.trial_len = torch.where(mask, middle + 3, self.trial_len)
        self.trial_step = torch.where(mask, 0, self.trial_step)
        shown_target = (shown == self.task["target"].unsqueeze(1)).any(dim=1)
        self.target_shown = torch.where(mask, shown_target, self.target_shown)

    def _code(self) -> Tensor:
        return self.trial.gather(1, self.trial_step.unsqueeze(1)).squeeze(1)

    # -- dynamics -------------------------------------------------------------------------------
    def _start_episodes(self, mask: Tensor) -> None:
        self.t = torch.where(mask, 0, self.t)
        self.prev_action = torch.where(mask, -1, self.prev_action)
        self.prev_reward = torch.where(mask, 0.0, self.prev_reward)
        self._new_trials(mask)

    def _transition(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        respond = actions == 1
        reward = torch.where(respond, -self.response_penalty, 0.0)
        answered = self._code() == GO
        correct = respond == self.target_shown
        reward = reward + answered * torch.where(correct, self.reward_value, -self.reward_value)
        self.t = self.t + 1
        self.trial_step = self.trial_step + 1
        over = self.trial_step >= self.trial_len
        if self.device.type != "cpu" or bool(over.any()):
            self._new_trials(over)
        self.prev_action, self.prev_reward = actions, reward.float()
        return self.prev_reward, self.t >= self.episode_length

    def _observe(self) -> Tensor:
        code = self._code()
        cue = self.task["cues"].gather(1, code.clamp_min(0).view(-1, 1, 1).expand(-1, 1, self.cue_bits)).squeeze(1)
        cue = torch.where((code >= 0).unsqueeze(1), cue, 0.0)
        go = (code == GO).float().unsqueeze(1)
        bias = torch.ones_like(go)
        time = (self.t.double() / self.episode_length).float().unsqueeze(1)
        onehot = torch.nn.functional.one_hot(self.prev_action.clamp_min(0), 2).float()
        onehot = onehot * (self.prev_action >= 0).unsqueeze(1)
        return torch.cat([cue, go, bias, time, self.prev_reward.unsqueeze(1), onehot], dim=1)
