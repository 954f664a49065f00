"""Dynamics-randomisation task distributions (the ``rand_param_envs`` of MAML/ProMP/PEARL) on
Gymnasium's v5 HalfCheetah and Hopper.

Each task scales the model's physical parameters element-wise, always from the *original*
values (so tasks never compound): ``body_mass`` and ``body_inertia`` and ``geom_friction`` by
``1.5**u``, ``dof_damping`` by ``1.3**u``, with ``u ~ U[-log_scale_limit, log_scale_limit]``
drawn per element (``log_scale_limit = 3``, the value of the original ``rand_param_envs``). The
task holds the multipliers as nested tuples of floats (``np.asarray(task["body_mass"])`` gives the array):
``{"body_mass": (nbody,), "body_inertia": (nbody, 3), "geom_friction": (ngeom, 3),
"dof_damping": (nv,)}`` (only the fields listed in ``rand_params``). The reward is the v5 reward.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import utils
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv

from neuromod_rl.envs.base import (
    ChangeAt,
    Task,
    check_array_range,
    check_choice,
    check_range,
    check_task_keys,
)
from neuromod_rl.envs.mujoco_base import MujocoTaskMixin

BASES = {"body_mass": 1.5, "body_inertia": 1.5, "geom_friction": 1.5, "dof_damping": 1.3}
RAND_PARAMS = tuple(BASES)


def _frozen(arr: np.ndarray) -> tuple:
    """Nested tuples of floats: immutable, so ``info["task"]`` needs only a shallow copy per step
    (copying four arrays on every step would cost a few percent of a HalfCheetah step)."""
    return tuple(map(float, arr)) if arr.ndim == 1 else tuple(_frozen(row) for row in arr)


class _RandParamsMixin(MujocoTaskMixin):
    """Element-wise scaling of model parameters; subclasses call ``_init_rand_params``."""

    _task_has_arrays = False

    def _init_rand_params(
        self, rand_params: tuple[str, ...], log_scale_limit: float, change_at: ChangeAt
    ) -> None:
        if isinstance(rand_params, str):
            rand_params = (rand_params,)
        self.rand_params = tuple(check_choice("rand_params", p, RAND_PARAMS) for p in rand_params)
        if not self.rand_params:
            raise ValueError(f"rand_params is empty; choose one or more of {list(RAND_PARAMS)}")
        self.log_scale_limit = check_range("log_scale_limit", log_scale_limit, 0.0, 10.0)
        self._original = {p: getattr(self.model, p).copy() for p in self.rand_params}
        self._init_task_env(change_at)

    def _sample_task(self, rng: np.random.Generator) -> Task:
        lim = self.log_scale_limit
        return {
            p: _frozen(BASES[p] ** rng.uniform(-lim, lim, size=self._original[p].shape))
            for p in self.rand_params
        }

    def validate_task(self, task: Any) -> Task:
        check_task_keys(task, list(self.rand_params), type(self).__name__)
        lim = self.log_scale_limit
        out = {}
        for p in self.rand_params:
            # a tiny slack so that multipliers written out with rounding still pass
            low, high = BASES[p] ** -lim * (1 - 1e-9), BASES[p] ** lim * (1 + 1e-9)
            out[p] = _frozen(check_array_range(f"task['{p}']", task[p], self._original[p].shape, low, high))
        return out

    def _apply_task(self, task: Task) -> None:
        self._task = task
        for p in self.rand_params:
            getattr(self.model, p)[:] = self._original[p] * np.asarray(task[p])

    def _encode_task(self, task: Task) -> np.ndarray:
        # the drawn exponents u / log_scale_limit, each in [-1, 1] (all 0 for the unscaled model)
        lim = self.log_scale_limit or 1.0
        parts = [np.log(np.asarray(task[p])).ravel() / (np.log(BASES[p]) * lim) for p in self.rand_params]
        return np.clip(np.concatenate(parts), -1.0, 1.0)  # clip: the validation slack of 1e-9

    def neutral_task(self) -> Task:
        """The unscaled model (all multipliers 1)."""
        return {p: _frozen(np.ones_like(self._original[p])) for p in self.rand_params}


class HalfCheetahRandParams(_RandParamsMixin, HalfCheetahEnv):
    """HalfCheetah with randomised mass, inertia, friction and damping."""

    def __init__(
        self,
        rand_params: tuple[str, ...] = RAND_PARAMS,
        log_scale_limit: float = 3.0,
        change_at: ChangeAt = None,
        **kwargs: Any,
    ):
        HalfCheetahEnv.__init__(self, **kwargs)
        self._init_rand_params(rand_params, log_scale_limit, change_at)
        utils.EzPickle.__init__(
            self, rand_params=rand_params, log_scale_limit=log_scale_limit, change_at=change_at, **kwargs
        )


class HopperRandParams(_RandParamsMixin, HopperEnv):
    """Hopper with randomised mass, inertia, friction and damping."""

    def __init__(
        self,
        rand_params: tuple[str, ...] = RAND_PARAMS,
        log_scale_limit: float = 3.0,
        change_at: ChangeAt = None,
        **kwargs: Any,
    ):
        HopperEnv.__init__(self, **kwargs)
        self._init_rand_params(rand_params, log_scale_limit, change_at)
        utils.EzPickle.__init__(
            self, rand_params=rand_params, log_scale_limit=log_scale_limit, change_at=change_at, **kwargs
        )
