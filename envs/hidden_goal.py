"""HalfCheetahHiddenGoal: find a goal on the x axis without seeing where you are (Gymnasium v5 body).

The task is a goal position ``g = +-d`` on the x axis, ``d ~ U[distance_range]`` (2 to 4 m) and the
side drawn with probability 1/2. Every step that ends with the torso within ``radius`` (0.5 m) of
the goal pays ``goal_reward`` (1); the control cost is ``0.05 ||a||^2``. The observation is the v5
body's, which leaves the x position out: the cheetah never sees where it is, only how it moves.

Why a reactive agent cannot solve it: until the first goal reward, nothing the agent sees depends on
the task (the x position is hidden and every goal reward is 0), so its path up to then is the same
whichever side the goal is on. A memory agent runs out to ``+d_max`` and, finding nothing, turns back
to ``-d_max``; turning back at the right place needs the distance run so far, the integral of the
velocity over time, which no single (observation, previous action, previous reward) holds. A reactive
agent that runs one way and stops on the first reward finds the goals on that side only: about half
the oracle's return (the oracle runs straight to the goal). ``HiddenGoalCorridor`` is the exact
discrete version, whose reactive bound the tests compute by enumeration; here the tests check the
premise on the body (mirrored goals give the same observations and rewards until a goal is reached).
A reactive policy could still build a step counter out of its own previous action, which
``PrevActionReward`` feeds back: that is memory, and the bound does not cover it.

Task: ``{"goal": float}``. ``change_at`` moves the goal mid-episode (see ``mujoco_base``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import utils
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

from neuromod_rl.envs.base import ChangeAt, Task, check_range, check_task_keys
from neuromod_rl.envs.mujoco_base import MujocoTaskMixin


def check_position_hidden(kwargs: dict[str, Any], owner: str) -> None:
    """Refuse ``exclude_current_positions_from_observation=False``: a task that needs memory because
    the body's position is hidden would become solvable from one observation."""
    if not kwargs.get("exclude_current_positions_from_observation", True):
        raise ValueError(
            f"{owner}: exclude_current_positions_from_observation=False would show the body's position, "
            "which this task hides on purpose (it is what makes memory necessary); leave it at True"
        )


class HalfCheetahHiddenGoal(MujocoTaskMixin, HalfCheetahEnv):
    """HalfCheetah searching for a hidden goal at ``+-d`` on the x axis; task ``{"goal": float}``."""

    _task_has_arrays = False

    def __init__(
        self,
        distance_range: tuple[float, float] = (2.0, 4.0),
        radius: float = 0.5,
        goal_reward: float = 1.0,
        ctrl_cost_weight: float = 0.05,
        change_at: ChangeAt = None,
        **kwargs: Any,
    ):
        """Args:
        distance_range: ``(low, high)`` metres from the origin to the goal; ``low > radius``.
        radius: the goal pays while the torso's x is within ``radius`` metres of it.
        goal_reward: paid per step inside the goal (positive).
        ctrl_cost_weight: weight of ``||a||^2`` in the cost.
        change_at: when the goal moves mid-episode (``None``: never; see ``mujoco_base``).
        kwargs: Gymnasium's HalfCheetah-v5 arguments (the x position must stay hidden).
        """
        check_position_hidden(kwargs, "HalfCheetahHiddenGoal")
        self.radius = check_range("radius", radius, 1e-3, 100.0)
        low = check_range("distance_range[0]", distance_range[0], 0.0, 1000.0)
        if low <= self.radius:
            raise ValueError(
                f"distance_range[0]={low} is within radius={self.radius} of the start; make it larger than radius"
            )
        self.distance_range = (low, check_range("distance_range[1]", distance_range[1], low, 1000.0))
        self.goal_reward = check_range("goal_reward", goal_reward, 1e-6, 1e6)
        HalfCheetahEnv.__init__(self, ctrl_cost_weight=ctrl_cost_weight, **kwargs)
        self._init_task_env(change_at)
        self._goal = self.distance_range[0]
        utils.EzPickle.__init__(
            self,
            distance_range=distance_range,
            radius=radius,
            goal_reward=goal_reward,
            ctrl_cost_weight=ctrl_cost_weight,
            change_at=change_at,
            **kwargs,
        )

    def _sample_task(self, rng: np.random.Generator) -> Task:
        distance = float(rng.uniform(*self.distance_range))
        return {"goal": distance if rng.random() < 0.5 else -distance}

    def validate_task(self, task: Any) -> Task:
        check_task_keys(task, ["goal"], "HalfCheetahHiddenGoal")
        low, high = self.distance_range
        goal = check_range("task['goal']", task["goal"], -high, high)
        if abs(goal) < low:
            raise ValueError(
                f"task['goal']={goal} is too close to the start; valid goals have {low} <= |goal| <= {high}"
            )
        return {"goal": goal}

    def _apply_task(self, task: Task) -> None:
        self._task = task
        self._goal = task["goal"]

    def _encode_task(self, task: Task) -> np.ndarray:
        return np.array([task["goal"] / self.distance_range[1]])

    def _get_rew(self, x_velocity: float, action):
        # replaces the v5 forward reward; called by HalfCheetahEnv.step, after the physics
        goal = self.goal_reward if abs(self.data.qpos[0] - self._goal) <= self.radius else 0.0
        ctrl_cost = self.control_cost(action)
        return goal - ctrl_cost, {"reward_goal": goal, "reward_ctrl": -ctrl_cost}
