"""Cue-reward association ("stimulus-response") task of Backpropamine (Miconi et al., ICLR 2019).

Per episode (the task): ``n_cues`` random binary (+-1) cues of ``cue_bits`` bits, one of which is
the target. The episode is a sequence of trials; each trial shows a blank step, then
``n_cues // 2`` distinct cues (one step each) shuffled among a random number of blank steps, then
a *go* cue, then a blank step. On the go step the agent answers: action 1 ("the target was
shown") or 0 ("it was not"); +1 if right, -1 if wrong. As in the paper code, the reward is the
reward of the go step, so the agent perceives it in the next observation (previous reward).
Episodes are 120 steps.

Observation (paper layout): cue bits, go bit, bias 1, ``t / episode_length``, previous reward,
previous action one-hot (2).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from neuromod_rl.envs.base import Task, TaskEnvMixin, check_int_range, check_range, check_task_keys, renders_observation

BLANK, GO = -1, -2  # codes for the non-cue steps of a trial


def init_cue_reward(
    env: Any, n_cues: int, cue_bits: int, episode_length: int, reward: float, response_penalty: float
) -> spaces.Box:
    """Check the task's arguments and set them on ``env`` (this env and its batched version share them):
    ``n_cues``, ``cue_bits``, ``episode_length``, ``reward_value`` and ``response_penalty``.

    Args:
        env: the env under construction.
        n_cues: cues per task (2 to 64).
        cue_bits: bits per cue (1 to 1024, with ``2**cue_bits >= n_cues``).
        episode_length: steps per episode (at least 1).
        reward: reward for a right answer on the go step (minus it for a wrong one).
        response_penalty: cost of every action 1.

    Returns:
        The observation space: cue bits, go bit, bias, time, previous reward, previous action one-hot.
    """
    env.n_cues = check_int_range("n_cues", n_cues, 2, 64)
    env.cue_bits = check_int_range("cue_bits", cue_bits, 1, 1024)
    if 2**env.cue_bits < env.n_cues:
        raise ValueError(f"cue_bits={cue_bits} too small for n_cues={n_cues}; need 2**cue_bits >= n_cues")
    env.episode_length = check_int_range("episode_length", episode_length, 1)
    env.reward_value = check_range("reward", reward, 0.0, 1e6)
    env.response_penalty = check_range("response_penalty", response_penalty, 0.0, 1e6)
    # the previous-reward input spans [-reward - penalty, reward]; every other input is in [-1, 1]
    low = min(-1.0, -env.reward_value - env.response_penalty)
    high = max(1.0, env.reward_value)
    return spaces.Box(low, high, shape=(env.cue_bits + 1 + 3 + 2,), dtype=np.float32)



@renders_observation
class CueReward(TaskEnvMixin, gym.Env):
    """Backpropamine cue-reward association; task ``{"cues": (n_cues, cue_bits) +-1, "target": int}``."""


    def __init__(
        self,
        n_cues: int = 4,
        cue_bits: int = 20,
        episode_length: int = 120,
        reward: float = 1.0,
        response_penalty: float = 0.0,
    ):
        self.observation_space = init_cue_reward(self, n_cues, cue_bits, episode_length, reward, response_penalty)
        self.obs_dim = self.observation_space.shape[0]
        self.action_space = spaces.Discrete(2)

    # -- task protocol --------------------------------------------------------------------------
    def _sample_task(self, rng: np.random.Generator) -> Task:
        while True:  # cues must be distinct, otherwise the target is ambiguous
            cues = rng.choice(np.array([-1.0, 1.0]), size=(self.n_cues, self.cue_bits))
            if len(np.unique(cues, axis=0)) == self.n_cues:
                break
        return {"cues": cues, "target": int(rng.integers(self.n_cues))}

    def validate_task(self, task: Any) -> Task:
        check_task_keys(task, ["cues", "target"], "CueReward")
        cues = np.asarray(task["cues"], dtype=np.float64)
        if cues.shape != (self.n_cues, self.cue_bits) or not np.all(np.abs(cues) == 1.0):
            raise ValueError(
                f"task['cues'] must be a ({self.n_cues}, {self.cue_bits}) array of -1/+1; "
                f"got shape {cues.shape}"
            )
        target = check_int_range("task['target']", task["target"], 0, self.n_cues - 1)
        return {"cues": cues, "target": target}

    # -- dynamics -------------------------------------------------------------------------------
    def _new_trial(self) -> None:
        rng = self.np_random
        shown = list(rng.permutation(self.n_cues)[: self.n_cues // 2])
        length = self.n_cues // 2 + 3 + int(rng.integers(self.n_cues))  # as in the paper code
        middle = shown + [BLANK] * (length - 3 - len(shown))
        middle = [middle[i] for i in rng.permutation(len(middle))]
        self._trial = [BLANK, *middle, GO, BLANK]
        self._trial_step = 0
        self._target_shown = self._task["target"] in shown

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.obs_dim, dtype=np.float32)
        code = self._trial[self._trial_step]
        if code >= 0:
            obs[: self.cue_bits] = self._task["cues"][code]
        elif code == GO:
            obs[self.cue_bits] = 1.0
        obs[self.cue_bits + 1] = 1.0  # bias input
        obs[self.cue_bits + 2] = self._t / self.episode_length
        obs[self.cue_bits + 3] = self._prev_reward
        if self._prev_action is not None:
            obs[self.cue_bits + 4 + self._prev_action] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._choose_task(options)
        self._t = 0
        self._prev_reward = 0.0
        self._prev_action: int | None = None
        self._new_trial()
        return self._obs(), {"task": self._task_info()}

    def step(self, action):
        a = self._check_action(action)
        reward = -self.response_penalty if a == 1 else 0.0
        answered = self._trial[self._trial_step] == GO
        if answered:
            correct = (a == 1) == self._target_shown
            reward += self.reward_value if correct else -self.reward_value
        self._t += 1
        self._trial_step += 1
        if self._trial_step >= len(self._trial):
            self._new_trial()
        self._prev_reward, self._prev_action = reward, a
        terminated = self._t >= self.episode_length
        info = {"task": self._task_info(), "answered": answered}
        return self._obs(), reward, terminated, False, info
