"""HalfCheetahCueDir: a direction shown once, then the body is reset, and the run is paid at the end.

The task is a direction ``d in {-1, +1}``. An episode has two phases:

- *cue* (the first ``cue_steps`` observations, 10 by default): the observation shows ``d``; nothing
  is paid, not even the control cost;
- *go* (the rest, up to ``episode_length`` = 200 steps): at its start the body is put back to a fresh
  initial state (drawn as ``reset`` draws it), the cue is gone, and the last step pays
  ``d * (x_end - x_go)``: the metres run in direction ``d`` during the go phase. Until then only the
  control cost (and, if ``speed_reward_weight > 0``, a direction-blind ``w |v_x|``) is paid.

Observation: the v5 body's (without the x position), then the cue (``d`` during the cue phase, else
0) and a go flag (1 during the go phase). The episode ends (``terminated``) after ``episode_length``
steps, when the run is paid, whatever ``max_episode_steps`` says: a shorter ``TimeLimit`` cuts the
payment off.

Why a reactive agent cannot solve it: the body reset wipes whatever the cue-phase motion stored in the
body, and the cue phase pays nothing, so in the go phase the observation (a fresh body, no cue) and the
rewards (control cost and the direction-blind term) are the same whichever way ``d`` points. A policy
of those inputs runs the same way under both directions, so its direction payment averages exactly 0
over the task distribution (``d`` is +1 or -1 with probability 1/2; the tests check the cancellation on
the body), while an agent that remembers ``d`` across the reset earns ``E|x_end - x_go|`` metres
(scripted gaits: 13 to 25 m). The one route around the bound is the previous action that
``PrevActionReward`` feeds back: a policy that writes ``d`` into its last cue-phase action and reads it
back at the first go step relays the cue through its action, i.e. builds a one-step memory out of it
(after that, the direction it runs in carries itself); a reactive baseline that beats 0 has learnt such
a relay.

Task: ``{"direction": -1 | 1}``. No mid-episode switch (the cue would be stale).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces, utils
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

from neuromod_rl.envs.base import ChangeAt, Task, check_choice, check_range, check_task_keys
from neuromod_rl.envs.hidden_goal import check_position_hidden
from neuromod_rl.envs.mujoco_base import MujocoTaskMixin, check_cue_phase


class HalfCheetahCueDir(MujocoTaskMixin, HalfCheetahEnv):
    """HalfCheetah told its direction once, reset, then paid for the run at the end; task ``{"direction": +-1}``."""

    _task_has_arrays = False
    reset_option_keys = ("task",)
    _direction = 1
    _x_go = 0.0

    def __init__(
        self,
        cue_steps: int = 10,
        episode_length: int = 200,
        speed_reward_weight: float = 0.0,
        ctrl_cost_weight: float = 0.05,
        change_at: ChangeAt = None,
        **kwargs: Any,
    ):
        """Args:
        cue_steps: observations that show the cue (the reset's and the next ``cue_steps - 1``).
        episode_length: steps per episode (cue and go phases together), more than ``cue_steps``.
        speed_reward_weight: weight of a direction-blind ``|v_x|`` term paid per go step (0: none).
        ctrl_cost_weight: weight of ``||a||^2`` in the cost.
        change_at: must stay ``None``: this task has no mid-episode switch.
        kwargs: Gymnasium's HalfCheetah-v5 arguments (the x position must stay hidden).
        """
        check_position_hidden(kwargs, "HalfCheetahCueDir")
        self.cue_steps, self.episode_length = check_cue_phase("HalfCheetahCueDir", change_at, cue_steps, episode_length)
        self.speed_reward_weight = check_range("speed_reward_weight", speed_reward_weight, 0.0, 1e6)
        HalfCheetahEnv.__init__(self, ctrl_cost_weight=ctrl_cost_weight, **kwargs)
        self._init_task_env(None)
        body = self.observation_space.shape[0]
        self.observation_space = spaces.Box(
            np.concatenate([np.full(body, -np.inf), [-1.0, 0.0]]).astype(np.float32),
            np.concatenate([np.full(body, np.inf), [1.0, 1.0]]).astype(np.float32),
            dtype=np.float32,
        )
        utils.EzPickle.__init__(
            self,
            cue_steps=cue_steps,
            episode_length=episode_length,
            speed_reward_weight=speed_reward_weight,
            ctrl_cost_weight=ctrl_cost_weight,
            **kwargs,
        )

    # -- task protocol --------------------------------------------------------------------------
    def _sample_task(self, rng: np.random.Generator) -> Task:
        return {"direction": int(rng.choice([-1, 1]))}

    def validate_task(self, task: Any) -> Task:
        check_task_keys(task, ["direction"], "HalfCheetahCueDir")
        return {"direction": int(check_choice("task['direction']", task["direction"], (-1, 1)))}

    def _apply_task(self, task: Task) -> None:
        self._task = task
        self._direction = task["direction"]

    def _encode_task(self, task: Task) -> np.ndarray:
        return np.array([float(task["direction"])])

    # -- dynamics -------------------------------------------------------------------------------
    def _get_obs(self):
        go = self._t >= self.cue_steps
        cue = 0.0 if go else float(self._direction)
        return np.concatenate([HalfCheetahEnv._get_obs(self), [cue, float(go)]])

    def _get_rew(self, x_velocity: float, action):
        if self._t < self.cue_steps:
            # nothing is paid in the cue phase: a control cost there would pass on, through the next
            # reward, how hard the agent pushed after seeing the cue
            return 0.0, {"reward_speed": 0.0, "reward_ctrl": 0.0}
        speed = self.speed_reward_weight * abs(x_velocity)
        ctrl_cost = self.control_cost(action)
        return speed - ctrl_cost, {"reward_speed": speed, "reward_ctrl": -ctrl_cost}

    def step(self, action):
        _, reward, terminated, truncated, info = super().step(action)  # advances self._t
        if self._t == self.cue_steps:
            self.reset_model()  # the go phase starts from a fresh body: nothing of the cue phase survives in it
            self._x_go = float(self.data.qpos[0])
        info["reward_direction"] = 0.0
        if self._t >= self.episode_length:
            info["displacement"] = float(self.data.qpos[0]) - self._x_go
            info["reward_direction"] = self._direction * info["displacement"]
            reward += info["reward_direction"]
            terminated = True
        info["phase"] = "go" if self._t >= self.cue_steps else "cue"
        return np.asarray(self._get_obs(), dtype=np.float32), reward, terminated, truncated, info
