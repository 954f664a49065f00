"""Crippled-limb task distributions (Nagabandi et al. 2019, "Learning to adapt in dynamic,
real-world environments through meta-reinforcement learning"; Schmidgall's plastic-network
versions) on Gymnasium's v5 HalfCheetah and Ant.

The task is ``{"limb": k}``: the commands of actuator group ``k`` are zeroed before they reach
the body (``{"limb": None}`` is the intact body). Groups:

- HalfCheetah, ``groups="joints"`` (default): bthigh, bshin, bfoot, fthigh, fshin, ffoot;
  ``groups="legs"``: back (thigh, shin, foot), front (thigh, shin, foot).
- Ant, ``groups="legs"`` (default): leg 1-4 (hip + ankle each); ``groups="joints"``: the 8 motors.

One group (``test_limb``, default the last) is held out: ``split="train"`` (default) samples only
the other groups, ``split="test"`` only the held-out one, ``split="all"`` any group.

With ``change_at=None`` the limb is disabled from the first step. With ``change_at`` set, the
body starts intact and the episode's limb breaks at the switch step ("mid-episode"); the task
in force (``info["task"]``) is ``{"limb": None}`` before and ``{"limb": k}`` after.

The control cost is charged on the *commanded* action, so the reward does not reveal which limb
is broken through a cheaper control bill. Shortening the limb (an option in some published
versions of these tasks) is not implemented.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import utils
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

from neuromod_rl.envs.base import ChangeAt, Task, check_choice, check_int_range, check_task_keys
from neuromod_rl.envs.mujoco_base import MujocoTaskMixin

SPLITS = ("train", "test", "all")
INTACT: Task = {"limb": None}

HALF_CHEETAH_GROUPS = {
    "joints": {"bthigh": [0], "bshin": [1], "bfoot": [2], "fthigh": [3], "fshin": [4], "ffoot": [5]},
    "legs": {"back": [0, 1, 2], "front": [3, 4, 5]},
}
# ant.xml actuator order: hip_4, ankle_4, hip_1, ankle_1, hip_2, ankle_2, hip_3, ankle_3
ANT_GROUPS = {
    "legs": {"leg1": [2, 3], "leg2": [4, 5], "leg3": [6, 7], "leg4": [0, 1]},
    "joints": {
        "hip_1": [2],
        "ankle_1": [3],
        "hip_2": [4],
        "ankle_2": [5],
        "hip_3": [6],
        "ankle_3": [7],
        "hip_4": [0],
        "ankle_4": [1],
    },
}


class _CrippledMixin(MujocoTaskMixin):
    """Actuator-group masking; subclasses call ``_init_crippled`` in ``__init__``."""

    _task_has_arrays = False

    def _init_crippled(
        self,
        table: dict[str, dict[str, list[int]]],
        groups: str,
        test_limb: int | None,
        split: str,
        change_at: ChangeAt,
    ) -> None:
        self.groups = check_choice("groups", groups, tuple(table))
        self.group_names = list(table[groups])
        self.group_actuators = [table[groups][name] for name in self.group_names]
        n = len(self.group_names)
        self.test_limb = n - 1 if test_limb is None else check_int_range("test_limb", test_limb, 0, n - 1)
        self.split = check_choice("split", split, SPLITS)
        self.train_limbs = [k for k in range(n) if k != self.test_limb]
        self._limbs = {"train": self.train_limbs, "test": [self.test_limb], "all": list(range(n))}[self.split]
        self._mask = np.ones(self.action_space.shape, dtype=np.float32)
        self._cmd_action = np.zeros(self.action_space.shape, dtype=np.float32)
        self._pending: Task | None = None
        self._init_task_env(change_at)

    # -- task protocol --------------------------------------------------------------------------
    def _sample_task(self, rng: np.random.Generator) -> Task:
        return {"limb": self._limbs[int(rng.integers(len(self._limbs)))]}

    def validate_task(self, task: Any) -> Task:
        check_task_keys(task, ["limb"], type(self).__name__)
        if task["limb"] is None:
            return dict(INTACT)
        return {"limb": check_int_range("task['limb']", task["limb"], 0, len(self.group_names) - 1)}

    def task_split(self, seed: int = 0, n_train: int | None = None, n_test: int | None = None):
        """The fixed split: every limb but ``test_limb`` for training, ``test_limb`` for testing."""
        return [{"limb": k} for k in self.train_limbs], [{"limb": self.test_limb}]

    def _apply_task(self, task: Task) -> None:
        self._task = task
        self._mask[:] = 1.0
        if task["limb"] is not None:
            self._mask[self.group_actuators[task["limb"]]] = 0.0

    def _encode_task(self, task: Task) -> np.ndarray:
        features = np.zeros(len(self.group_names))  # the intact body is all zeros
        if task["limb"] is not None:
            features[task["limb"]] = 1.0
        return features

    def _choose_task(self, options: dict[str, Any] | None) -> Task:
        task = super()._choose_task(options)
        if self._change_step is None:
            return task
        self._pending = task  # breaks at the switch step; intact until then
        self._apply_task(dict(INTACT))
        return self._task

    def _task_after_switch(self) -> Task:
        if self._next_task is not None:
            return self._next_task
        return self._pending if self._pending is not None else self._sample_task(self.np_random)

    # -- dynamics -------------------------------------------------------------------------------
    def _transform_action(self, action: np.ndarray) -> np.ndarray:
        self._cmd_action = action
        return action * self._mask

    def control_cost(self, action):
        return super().control_cost(self._cmd_action)  # charge what the agent commanded

    def limb_name(self, limb: int | None) -> str:
        return "intact" if limb is None else self.group_names[limb]


class CrippledHalfCheetah(_CrippledMixin, HalfCheetahEnv):
    """HalfCheetah (v5 reward) with one joint or leg disabled; task ``{"limb": int | None}``."""

    def __init__(
        self,
        groups: str = "joints",
        test_limb: int | None = None,
        split: str = "train",
        change_at: ChangeAt = None,
        **kwargs: Any,
    ):
        HalfCheetahEnv.__init__(self, **kwargs)
        self._init_crippled(HALF_CHEETAH_GROUPS, groups, test_limb, split, change_at)
        utils.EzPickle.__init__(
            self, groups=groups, test_limb=test_limb, split=split, change_at=change_at, **kwargs
        )


class CrippledAnt(_CrippledMixin, AntEnv):
    """Ant (v5 reward) with one leg or motor disabled; task ``{"limb": int | None}``."""

    def __init__(
        self,
        groups: str = "legs",
        test_limb: int | None = None,
        split: str = "train",
        change_at: ChangeAt = None,
        **kwargs: Any,
    ):
        AntEnv.__init__(self, **kwargs)
        self._init_crippled(ANT_GROUPS, groups, test_limb, split, change_at)
        utils.EzPickle.__init__(
            self, groups=groups, test_limb=test_limb, split=split, change_at=change_at, **kwargs
        )
