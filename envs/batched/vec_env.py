"""``BatchedVecEnv``: an SB3 ``VecEnv`` over a ``BatchedTaskEnv`` (numpy in and out).

It lets every SB3 algorithm (PlasticPPO's normal path included) train on a batched task: one
``step`` of the batched env per ``step_wait``, one host copy of the observations, rewards and dones.
SB3's conventions hold: ``dones = terminated | truncated``, the returned observation of a done lane is
already the first one of its next episode, and that lane's info holds ``"terminal_observation"`` and
``"TimeLimit.truncated"``. Episode statistics come from wrapping it in ``VecMonitor``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from neuromod_rl.envs.batched.base import BatchedTaskEnv


class BatchedVecEnv(VecEnv):
    """SB3 ``VecEnv`` view of ``batched``; ``self.batched`` is the wrapped ``BatchedTaskEnv``.

    Args:
        batched: the batched task env (any device; observations come back to the host as numpy).

    The lanes share one set of attributes and one generator, so ``get_attr``/``env_method`` answer once per
    requested index with the batched env's value, and ``seed(s)`` seeds the generator at the next ``reset``.
    """

    def __init__(self, batched: BatchedTaskEnv):
        if not isinstance(batched, BatchedTaskEnv):
            raise ValueError(
                f"BatchedVecEnv wraps a BatchedTaskEnv, got {type(batched).__name__}; build one with "
                "neuromod_rl.envs.batched.make_batched(env_id, num_envs)"
            )
        self.batched = batched
        super().__init__(batched.num_envs, batched.single_observation_space, batched.single_action_space)
        self._actions: torch.Tensor | None = None

    # -- the VecEnv loop ------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        seed = self._seeds[0]
        obs = self.batched.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs.cpu().numpy()

    def step_async(self, actions: np.ndarray) -> None:
        arr = np.asarray(actions)
        if arr.dtype.kind not in "iu":
            # SB3's discrete policies send int64; a float array of whole numbers is cast, anything else refused
            if arr.dtype.kind != "f" or not np.all(arr == np.round(arr)):
                raise ValueError(
                    f"BatchedVecEnv.step: actions of dtype {arr.dtype} are not whole numbers; pass integer actions "
                    f"of shape ({self.num_envs},)"
                )
            arr = arr.astype(np.int64)
        if arr.shape == (self.num_envs, 1):
            arr = arr.reshape(self.num_envs)  # the shape of a one-column discrete action batch
        self._actions = torch.as_tensor(arr.astype(np.int64, copy=False), device=self.batched.device)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("BatchedVecEnv.step_wait() needs a step_async(actions) first")
        actions, self._actions = self._actions, None
        obs, reward, terminated, truncated = self.batched.step(actions)
        obs_np = obs.cpu().numpy()
        reward_np = reward.cpu().numpy()
        term_np = terminated.cpu().numpy()
        trunc_np = truncated.cpu().numpy()
        dones = term_np | trunc_np
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        done_lanes = np.flatnonzero(dones)
        if done_lanes.size:
            final = self.batched.final_observation.cpu().numpy()
            for i in done_lanes:
                infos[i]["terminal_observation"] = final[i]
                infos[i]["TimeLimit.truncated"] = bool(trunc_np[i] and not term_np[i])
        return obs_np, reward_np, dones, infos

    def close(self) -> None:
        """Nothing to release (the state is tensors)."""

    # -- the rest of the VecEnv API ----------------------------------------------------------------
    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The batched env's attribute ``attr_name``, once per index (the lanes share it)."""
        value = getattr(self.batched, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set ``attr_name`` on the batched env; the lanes share their attributes, so ``indices`` must be all."""
        if sorted(self._indices(indices)) != list(range(self.num_envs)):
            raise ValueError(
                f"BatchedVecEnv.set_attr({attr_name!r}): the lanes share their attributes, so it can only be set "
                "for every env (indices=None)"
            )
        setattr(self.batched, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        """Call the batched env's ``method_name`` once and return its result once per index."""
        result = getattr(self.batched, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        """Always False: a batched env is not a Gymnasium env and carries no Gymnasium wrappers."""
        return [False for _ in self._indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        """Batched tasks do not render."""
        return [None for _ in range(self.num_envs)]
