"""Reacher tasks that need memory (Gymnasium's Reacher-v5 arm): the target is hidden from the observation.

The task is the target's position ``(x, y)``, drawn uniform in area over the annulus
``target_range`` (5 to 20 cm from the shoulder; the arm reaches 21 cm). The observation is the v5
arm's without the target and the fingertip-to-target vector: ``cos``/``sin`` of the two joint
angles and their velocities, from which the fingertip's position follows but not the target's.

- ``ReacherHiddenGoal``: the target is never shown. Each step pays ``goal_reward * max(0, 1 - d / radius)``
  (``d`` the fingertip's distance to the target; ``radius`` 10 cm, nothing beyond it) less the control
  cost ``ctrl_cost_weight ||a||^2``. *Why a reactive agent cannot solve it*: until the first goal reward
  nothing the agent sees depends on the task (the target is hidden and every goal reward is 0), so its
  path up to then is the same for every target: it must sweep the annulus and stop where it is paid, in
  every episode, while the oracle reaches straight for the target. Inside the radius the reward says how
  near the target is, not which way: climbing it needs two rewards compared, i.e. memory. A memory agent
  sweeps in the first episode of a trial and, remembering where it was paid, reaches straight for it in
  the later ones. The tests check the premise on the arm (two targets give the same observations and
  rewards until the fingertip is paid).
- ``ReacherCue``: the same reward, and the target shown (two extra observation entries) for the first
  ``cue_steps`` observations, which pay nothing; then the arm is put back to a fresh initial state and the
  cue is gone (a go flag says so). *Why a reactive agent cannot use the cue*: after the reset nothing it
  sees depends on the cue (the arm is fresh, the cue is gone, and the cue phase paid nothing that its
  first previous reward could pass on), so it is left with the hidden-goal task, while a memory agent
  reaches straight for the target it was shown (the tests check both on the arm). The one route around
  it is the previous action that ``PrevActionReward`` feeds back: a policy that writes the target into
  its last cue-phase action and reads it back builds a one-step memory out of it.

Task: ``{"target": (x, y)}``. ``ReacherHiddenGoal`` takes ``change_at`` (see ``mujoco_base``);
``ReacherCue`` has no mid-episode switch (the cue would be stale).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces, utils
from gymnasium.envs.mujoco.reacher_v5 import ReacherEnv

from neuromod_rl.envs.base import ChangeAt, Task, check_range, check_task_keys
from neuromod_rl.envs.mujoco_base import MujocoTaskMixin, check_cue_phase

ARM_REACH = 0.21  # the two links' lengths (0.1 m + 0.11 m) in Gymnasium's reacher.xml


def _check_annulus(target_range: Any, owner: str) -> tuple[float, float]:
    if np.shape(target_range) != (2,):
        raise ValueError(f"{owner}: target_range={target_range!r} must be a (low, high) pair of radii in metres")
    low = check_range("target_range[0]", target_range[0], 0.0, ARM_REACH)
    return low, check_range("target_range[1]", target_range[1], low, ARM_REACH)


class _ReacherTask(MujocoTaskMixin, ReacherEnv):
    """The shared part: the target as the task, hidden from the v5 observation."""

    _task_has_arrays = False

    def _init_reacher(self, target_range: Any, ctrl_cost_weight: float, change_at: ChangeAt, kwargs: dict) -> None:
        for name in ("reward_dist_weight", "reward_control_weight"):
            if name in kwargs:
                raise ValueError(f"{type(self).__name__}: {name} is the v5 reward's; this task pays its own, "
                                 "set ctrl_cost_weight instead")  # fmt: skip
        self.target_range = _check_annulus(target_range, type(self).__name__)
        self.ctrl_cost_weight = check_range("ctrl_cost_weight", ctrl_cost_weight, 0.0, 1e6)
        self._target = np.array([self.target_range[1], 0.0])
        ReacherEnv.__init__(self, **kwargs)
        self._init_task_env(change_at)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(6,), dtype=np.float32)

    # -- task protocol --------------------------------------------------------------------------
    def _sample_task(self, rng: np.random.Generator) -> Task:
        low, high = self.target_range
        radius = float(np.sqrt(rng.uniform(low**2, high**2)))  # uniform in area
        angle = float(rng.uniform(-np.pi, np.pi))
        return {"target": (radius * float(np.cos(angle)), radius * float(np.sin(angle)))}

    def validate_task(self, task: Any) -> Task:
        check_task_keys(task, ["target"], type(self).__name__)
        target = task["target"]
        if np.shape(target) != (2,):
            raise ValueError(f"task['target']={target!r} must be an (x, y) pair in metres")
        high = self.target_range[1]
        x = check_range("task['target'][0]", target[0], -high, high)
        y = check_range("task['target'][1]", target[1], -high, high)
        low, distance = self.target_range[0], float(np.hypot(x, y))
        if not low <= distance <= high:
            raise ValueError(
                f"task['target']={target!r} is {distance:.3f} m from the shoulder; valid targets lie "
                f"{low} to {high} m from it (target_range)"
            )
        return {"target": (x, y)}

    def _apply_task(self, task: Task) -> None:
        self._task = task
        self._target = np.asarray(task["target"], dtype=np.float64)
        self.data.qpos[2:4] = self._target  # the target body, so that renders show it

    def _encode_task(self, task: Task) -> np.ndarray:
        return np.asarray(task["target"], dtype=np.float64) / self.target_range[1]

    # -- arm ------------------------------------------------------------------------------------
    def reset_model(self):
        # v5's reset, with the task's target in place of a freshly drawn one
        qpos = self.init_qpos + self.np_random.uniform(low=-0.1, high=0.1, size=self.model.nq)
        qpos[2:4] = self._target
        qvel = self.init_qvel + self.np_random.uniform(low=-0.005, high=0.005, size=self.model.nv)
        qvel[2:4] = 0.0
        self.set_state(qpos, qvel)
        return self._get_obs()

    def _arm_obs(self) -> np.ndarray:
        theta = self.data.qpos[:2]
        return np.concatenate([np.cos(theta), np.sin(theta), self.data.qvel[:2]])

    def _get_obs(self):
        return self._arm_obs()

    def distance(self) -> float:
        """The fingertip's distance to the target, in metres."""
        return float(np.linalg.norm(self.get_body_com("fingertip")[:2] - self._target))

    def _ctrl_cost(self, action) -> float:
        return self.ctrl_cost_weight * float(np.square(action).sum())


class ReacherHiddenGoal(_ReacherTask):
    """Reacher paid only near a hidden target; task ``{"target": (x, y)}``."""

    def __init__(
        self,
        target_range: tuple[float, float] = (0.05, 0.2),
        radius: float = 0.1,
        goal_reward: float = 1.0,
        ctrl_cost_weight: float = 0.1,
        change_at: ChangeAt = None,
        **kwargs: Any,
    ):
        """Args:
        target_range: ``(low, high)`` distance of the target from the shoulder, metres (at most the
            arm's reach, 0.21).
        radius: the target pays while the fingertip is within ``radius`` metres of it.
        goal_reward: paid per step on the target itself, falling linearly to 0 at ``radius``.
        ctrl_cost_weight: weight of ``||a||^2`` in the cost.
        change_at: when the target moves mid-episode (``None``: never; see ``mujoco_base``).
        kwargs: Gymnasium's Reacher-v5 arguments (``frame_skip``, ``xml_file``, ...).
        """
        self.radius = check_range("radius", radius, 1e-3, 1.0)
        self.goal_reward = check_range("goal_reward", goal_reward, 1e-6, 1e6)
        self._init_reacher(target_range, ctrl_cost_weight, change_at, kwargs)
        utils.EzPickle.__init__(self, target_range=target_range, radius=radius, goal_reward=goal_reward,
                                ctrl_cost_weight=ctrl_cost_weight, change_at=change_at, **kwargs)  # fmt: skip

    def _paid(self) -> bool:
        return True

    def _get_rew(self, action):
        # replaces the v5 reward; called by ReacherEnv.step, after the physics
        if not self._paid():
            return 0.0, {"reward_goal": 0.0, "reward_ctrl": 0.0}
        goal = self.goal_reward * max(0.0, 1.0 - self.distance() / self.radius)
        ctrl_cost = self._ctrl_cost(action)
        return goal - ctrl_cost, {"reward_goal": goal, "reward_ctrl": -ctrl_cost}


class ReacherCue(ReacherHiddenGoal):
    """``ReacherHiddenGoal`` whose target is shown for the first steps, before the arm is reset."""

    reset_option_keys = ("task",)

    def __init__(
        self,
        target_range: tuple[float, float] = (0.05, 0.2),
        cue_steps: int = 5,
        episode_length: int = 50,
        radius: float = 0.1,
        goal_reward: float = 1.0,
        ctrl_cost_weight: float = 0.1,
        change_at: ChangeAt = None,
        **kwargs: Any,
    ):
        """Args:
        target_range: ``(low, high)`` distance of the target from the shoulder, metres (at most 0.21).
        cue_steps: observations that show the target (the reset's and the next ``cue_steps - 1``).
        episode_length: steps per episode (cue and go phases together), more than ``cue_steps``.
        radius, goal_reward, ctrl_cost_weight: the go phase's reward, as ``ReacherHiddenGoal``'s.
        change_at: must stay ``None``: this task has no mid-episode switch.
        kwargs: Gymnasium's Reacher-v5 arguments.
        """
        self.cue_steps, self.episode_length = check_cue_phase("ReacherCue", change_at, cue_steps, episode_length)
        super().__init__(target_range, radius, goal_reward, ctrl_cost_weight, None, **kwargs)
        self.observation_space = spaces.Box(
            np.array([-np.inf] * 6 + [-1.0, -1.0, 0.0], dtype=np.float32),
            np.array([np.inf] * 6 + [1.0, 1.0, 1.0], dtype=np.float32),
            dtype=np.float32,
        )
        utils.EzPickle.__init__(self, target_range=target_range, cue_steps=cue_steps, episode_length=episode_length,
                                radius=radius, goal_reward=goal_reward, ctrl_cost_weight=ctrl_cost_weight,
                                **kwargs)  # fmt: skip

    def _get_obs(self):
        go = self._t >= self.cue_steps
        cue = np.zeros(2) if go else self._target / self.target_range[1]
        return np.concatenate([self._arm_obs(), cue, [float(go)]])

    def _paid(self) -> bool:
        # nothing is paid in the cue phase: a reward there would pass on, through the first go step's
        # previous reward, how near the arm was to the target before the reset
        return self._t >= self.cue_steps

    def step(self, action):
        _, reward, terminated, truncated, info = super().step(action)  # advances self._t
        if self._t == self.cue_steps:
            self.reset_model()  # the go phase starts from a fresh arm: nothing of the cue phase survives in it
        terminated = terminated or self._t >= self.episode_length
        info["phase"] = "go" if self._t >= self.cue_steps else "cue"
        return np.asarray(self._get_obs(), dtype=np.float32), reward, terminated, truncated, info
