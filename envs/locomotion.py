"""Goal-conditioned locomotion task distributions on Gymnasium's v5 bodies (MAML / PEARL / VariBAD).

- ``HalfCheetahVel``: target velocity ``v_goal ~ U[0, 3]``; reward ``-|v_x - v_goal| - 0.05 ||a||^2``.
- ``HalfCheetahDir``: direction ``d in {-1, +1}``; reward ``d * v_x - 0.05 ||a||^2``.
- ``AntDir``: direction angle ``theta ~ U[0, 2 pi)`` (or ``{0, pi}`` with ``forward_backward``);
  reward ``v_xy . (cos theta, sin theta) + 1 (healthy) - 0.5 ||a||^2 - contact cost`` (v5 weights).
- ``AntGoal``: goal uniform in a disc of radius 3 (``r = 3 sqrt(U)``, as PEARL);
  reward ``-||xy - goal||_1 - 0.5 ||a||^2 - contact cost``; no survival bonus and no termination
  (a negative reward with termination would teach the ant to fall over).

Numbers are not comparable with the mujoco-py originals (different bodies and simulator). Every
class takes ``change_at`` (see ``mujoco_base``) and the v5 env's keyword arguments.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import utils
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

from neuromod_rl.envs.base import ChangeAt, Task, check_choice, check_range, check_task_keys
from neuromod_rl.envs.mujoco_base import MujocoTaskMixin


class HalfCheetahVel(MujocoTaskMixin, HalfCheetahEnv):
    """HalfCheetah running at a target velocity; task ``{"velocity": float}`` in ``[low, high]``."""

    _task_has_arrays = False

    def __init__(
        self,
        velocity_range: tuple[float, float] = (0.0, 3.0),
        ctrl_cost_weight: float = 0.05,
        change_at: ChangeAt = None,
        **kwargs: Any,
    ):
        self.velocity_range = (
            check_range("velocity_range[0]", velocity_range[0], -20.0, 20.0),
            check_range("velocity_range[1]", velocity_range[1], velocity_range[0], 20.0),
        )
        HalfCheetahEnv.__init__(self, ctrl_cost_weight=ctrl_cost_weight, **kwargs)
        self._init_task_env(change_at)
        self._goal_velocity = 0.0
        utils.EzPickle.__init__(
            self,
            velocity_range=velocity_range,
            ctrl_cost_weight=ctrl_cost_weight,
            change_at=change_at,
            **kwargs,
        )

    def _sample_task(self, rng: np.random.Generator) -> Task:
        return {"velocity": float(rng.uniform(*self.velocity_range))}

    def validate_task(self, task: Any) -> Task:
        check_task_keys(task, ["velocity"], "HalfCheetahVel")
        low, high = self.velocity_range
        return {"velocity": check_range("task['velocity']", task["velocity"], low, high)}

    def _apply_task(self, task: Task) -> None:
        self._task = task
        self._goal_velocity = task["velocity"]

    def _encode_task(self, task: Task) -> np.ndarray:
        low, high = self.velocity_range  # the range mapped onto [-1, 1]
        return np.array([0.0 if high == low else 2 * (task["velocity"] - low) / (high - low) - 1])

    def _get_rew(self, x_velocity: float, action):
        # replaces the v5 forward reward; called by HalfCheetahEnv.step, so no extra pass
        forward = -abs(x_velocity - self._goal_velocity)
        ctrl_cost = self.control_cost(action)
        return forward - ctrl_cost, {"reward_forward": forward, "reward_ctrl": -ctrl_cost}


class HalfCheetahDir(MujocoTaskMixin, HalfCheetahEnv):
    """HalfCheetah running forward or backward; task ``{"direction": -1 | 1}``."""

    _task_has_arrays = False

    def __init__(self, ctrl_cost_weight: float = 0.05, change_at: ChangeAt = None, **kwargs: Any):
        HalfCheetahEnv.__init__(self, ctrl_cost_weight=ctrl_cost_weight, **kwargs)
        self._init_task_env(change_at)
        self._direction = 1.0
        utils.EzPickle.__init__(self, ctrl_cost_weight=ctrl_cost_weight, change_at=change_at, **kwargs)

    def _sample_task(self, rng: np.random.Generator) -> Task:
        return {"direction": int(rng.choice([-1, 1]))}

    def validate_task(self, task: Any) -> Task:
        check_task_keys(task, ["direction"], "HalfCheetahDir")
        return {"direction": int(check_choice("task['direction']", task["direction"], (-1, 1)))}

    def _apply_task(self, task: Task) -> None:
        self._task = task
        self._direction = float(task["direction"])

    def _encode_task(self, task: Task) -> np.ndarray:
        return np.array([float(task["direction"])])

    def _get_rew(self, x_velocity: float, action):
        forward = self._direction * x_velocity
        ctrl_cost = self.control_cost(action)
        return forward - ctrl_cost, {"reward_forward": forward, "reward_ctrl": -ctrl_cost}


class AntDir(MujocoTaskMixin, AntEnv):
    """Ant running along a direction; task ``{"angle": float}`` in ``[0, 2 pi)``."""

    _task_has_arrays = False

    def __init__(self, forward_backward: bool = False, change_at: ChangeAt = None, **kwargs: Any):
        self.forward_backward = bool(forward_backward)
        AntEnv.__init__(self, **kwargs)
        self._init_task_env(change_at)
        self._unit = np.array([1.0, 0.0])
        utils.EzPickle.__init__(self, forward_backward=forward_backward, change_at=change_at, **kwargs)

    def _sample_task(self, rng: np.random.Generator) -> Task:
        if self.forward_backward:
            return {"angle": float(rng.choice([0.0, np.pi]))}
        return {"angle": float(rng.uniform(0.0, 2 * np.pi))}

    def validate_task(self, task: Any) -> Task:
        check_task_keys(task, ["angle"], "AntDir")
        return {"angle": check_range("task['angle']", task["angle"], 0.0, 2 * np.pi)}

    def _apply_task(self, task: Task) -> None:
        self._task = task
        self._unit = np.array([np.cos(task["angle"]), np.sin(task["angle"])])

    def _encode_task(self, task: Task) -> np.ndarray:
        return np.array([np.cos(task["angle"]), np.sin(task["angle"])])  # continuous across 0 = 2 pi

    def _task_reward(self, reward: float, info: dict[str, Any]) -> float:
        forward = info["x_velocity"] * self._unit[0] + info["y_velocity"] * self._unit[1]
        info["reward_forward"] = forward
        return forward + info["reward_survive"] + info["reward_ctrl"] + info["reward_contact"]


class AntGoal(MujocoTaskMixin, AntEnv):
    """Ant walking to a goal position; task ``{"goal": (x, y)}`` with ``||goal|| <= radius``."""

    _task_has_arrays = False

    def __init__(
        self,
        radius: float = 3.0,
        terminate_when_unhealthy: bool = False,
        change_at: ChangeAt = None,
        **kwargs: Any,
    ):
        self.radius = check_range("radius", radius, 0.0, 100.0)
        AntEnv.__init__(self, terminate_when_unhealthy=terminate_when_unhealthy, **kwargs)
        self._init_task_env(change_at)
        self._goal = np.zeros(2)
        utils.EzPickle.__init__(
            self,
            radius=radius,
            terminate_when_unhealthy=terminate_when_unhealthy,
            change_at=change_at,
            **kwargs,
        )

    def _sample_task(self, rng: np.random.Generator) -> Task:
        angle = rng.uniform(0.0, 2 * np.pi)
        r = self.radius * np.sqrt(rng.uniform())  # sqrt: uniform over the disc's area
        return {"goal": (float(r * np.cos(angle)), float(r * np.sin(angle)))}

    def validate_task(self, task: Any) -> Task:
        check_task_keys(task, ["goal"], "AntGoal")
        goal = task["goal"]
        if np.shape(goal) != (2,):
            raise ValueError(f"task['goal']={goal!r} must be an (x, y) pair")
        x = check_range("task['goal'][0]", goal[0], -self.radius, self.radius)
        y = check_range("task['goal'][1]", goal[1], -self.radius, self.radius)
        check_range("||task['goal']||", float(np.hypot(x, y)), 0.0, self.radius)
        return {"goal": (x, y)}

    def _apply_task(self, task: Task) -> None:
        self._task = task
        self._goal = np.asarray(task["goal"], dtype=np.float64)

    def _encode_task(self, task: Task) -> np.ndarray:
        return np.asarray(task["goal"], dtype=np.float64) / (self.radius or 1.0)

    def _task_reward(self, reward: float, info: dict[str, Any]) -> float:
        goal_reward = -(abs(info["x_position"] - self._goal[0]) + abs(info["y_position"] - self._goal[1]))
        info["reward_goal"] = goal_reward
        return goal_reward + info["reward_ctrl"] + info["reward_contact"]
