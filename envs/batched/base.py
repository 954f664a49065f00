"""``BatchedTaskEnv``: the protocol every batched (torch) task distribution follows.

A batched task env holds ``num_envs`` independent copies ("lanes") of one task distribution as
tensors on one device and steps all of them in a few tensor ops. It mirrors an SB3 ``VecEnv``:

- ``reset(seed)`` samples a task per lane and returns the first observations ``(num_envs, obs_dim)``;
- ``step(actions)`` takes ``(num_envs,)`` int64 actions and returns ``(obs, reward, terminated,
  truncated)``; where an episode ended the lane is already reset (a new task sampled), ``obs`` holds
  the first observation of the next episode and ``final_observation`` the last one of the ended episode.

All randomness comes from ``self.generator`` (a ``torch.Generator`` on the env's device) seeded by
``reset(seed)``. Tasks live in ``self.task``, a dict of tensors whose first dimension is the lane;
``set_tasks`` writes given tasks into chosen lanes and restarts their episodes (the batched form of the
Gymnasium tasks' ``reset(options={"task": ...})``), ``get_tasks`` reads them.

A subclass implements ``_sample_tasks``, ``_validate_tasks``, ``_start_episodes``, ``_transition`` and
``_observe`` (see their docstrings) and sets the two single spaces.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
from gymnasium import spaces
from torch import Tensor

Tasks = dict[str, Tensor]


def lane_mask(mask: Tensor, like: Tensor) -> Tensor:
    """``mask`` (num_envs,) reshaped to broadcast against ``like`` (num_envs, ...)."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


class BatchedTaskEnv(ABC):
    """``num_envs`` lanes of one task distribution stepped together on ``device``.

    Args:
        num_envs: number of lanes (independent envs), at least 1.
        device: torch device the state, observations and actions live on.
        max_episode_steps: the registered time limit (``TimeLimit`` of the Gymnasium version): a lane is
            truncated when its episode reaches this many steps; ``None`` for no limit.
        check_actions: check the range of the actions on every step. On a GPU that check costs one host
            synchronisation per step; pass ``False`` once the caller is known to send valid actions.
    """

    single_observation_space: spaces.Box
    single_action_space: spaces.Discrete
    #: the Gymnasium id this env reproduces (set by ``make_batched``)
    env_id: str | None = None
    #: batched tasks do not render (SB3's VecEnv asks every env for this attribute)
    render_mode: str | None = None

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        max_episode_steps: int | None = None,
        check_actions: bool = True,
    ):
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r} must be an int >= 1")
        if max_episode_steps is not None and (not isinstance(max_episode_steps, int) or max_episode_steps < 1):
            raise ValueError(f"max_episode_steps={max_episode_steps!r} must be None or an int >= 1")
        self.num_envs = num_envs
        # the device tensors report ("cuda:0", not "cuda"), so that the action check compares like with like
        self.device = torch.empty(0, device=device).device
        self.max_episode_steps = max_episode_steps
        self.check_actions = check_actions
        self.generator = torch.Generator(device=self.device)
        self.generator.seed()
        self.task: Tasks = {}
        self.elapsed_steps = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self.final_observation: Tensor | None = None
        self._ready = False

    # -- to implement ---------------------------------------------------------------------------
    @abstractmethod
    def _sample_tasks(self, n: int) -> Tasks:
        """``n`` tasks drawn from ``self.generator``: a dict of tensors with first dimension ``n``."""

    @abstractmethod
    def _validate_tasks(self, tasks: Mapping[str, Any], n: int) -> Tasks:
        """``tasks`` for ``n`` lanes as tensors on the device, or ``ValueError`` naming the bad field."""

    @abstractmethod
    def _start_episodes(self, mask: Tensor) -> None:
        """Begin a new episode (tasks already written) in the lanes where ``mask`` (num_envs,) is True;
        leave the other lanes untouched (use ``torch.where``, no host synchronisation)."""

    @abstractmethod
    def _transition(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Advance every lane by one step; return ``reward`` (num_envs,) float32 and the task's own
        ``terminated`` (num_envs,) bool. ``actions`` are valid int64."""

    @abstractmethod
    def _observe(self) -> Tensor:
        """The current observations, ``(num_envs, obs_dim)`` float32."""

    # -- public protocol ------------------------------------------------------------------------
    @property
    def obs_dim(self) -> int:
        """Size of one observation."""
        return int(self.single_observation_space.shape[0])

    def reset(self, seed: int | None = None) -> Tensor:
        """Sample a task for every lane and start its episode.

        Args:
            seed: seeds ``self.generator`` (the whole task and step sequence then depends on it only);
                ``None`` keeps the generator's current state.

        Returns the first observations, ``(num_envs, obs_dim)`` float32 on the device.
        """
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
                raise ValueError(f"seed={seed!r} must be None or an int >= 0")
            self.generator.manual_seed(int(seed))
        everywhere = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self.task = self._sample_tasks(self.num_envs)
        self._restart(everywhere)
        self._ready = True
        return self._observe()

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Step every lane with ``actions`` (num_envs,) int64 and autoreset the lanes whose episode ended.

        Returns ``(obs, reward, terminated, truncated)``: ``obs`` (num_envs, obs_dim) float32 is the first
        observation of the next episode where ``terminated | truncated``, whose last observation is in
        ``self.final_observation``; ``reward`` float32, ``terminated`` and ``truncated`` bool, all (num_envs,).
        ``truncated`` follows Gymnasium's ``TimeLimit`` (it can be True together with ``terminated``).
        """
        if not self._ready:
            raise RuntimeError(f"{type(self).__name__}.step() needs a reset() first")
        actions = self.validate_actions(actions)
        reward, terminated = self._transition(actions)
        self.elapsed_steps += 1
        if self.max_episode_steps is None:
            truncated = torch.zeros_like(terminated)
        else:
            truncated = self.elapsed_steps >= self.max_episode_steps
        done = terminated | truncated
        obs = self.final_observation = self._observe()
        # a GPU resets unconditionally (masked, no host sync); a CPU skips the work when no lane ended
        if self.device.type != "cpu" or bool(done.any()):
            fresh = self._sample_tasks(self.num_envs)
            self.task = {k: torch.where(lane_mask(done, v), fresh[k], v) for k, v in self.task.items()}
            self._restart(done)
            obs = self._observe()
        return obs, reward, terminated, truncated

    def set_tasks(self, tasks: Mapping[str, Any], lanes: Tensor | list[int] | None = None) -> Tensor:
        """Write ``tasks`` into ``lanes`` and restart their episodes (like ``reset(options={"task": t})``
        of the Gymnasium version, for those lanes only; later episodes sample their tasks again).

        Args:
            tasks: a dict with the keys of ``get_tasks()``, each value with first dimension ``len(lanes)``.
            lanes: lane indices (default: every lane).

        Returns the current observations of every lane.
        """
        if not self._ready:
            raise RuntimeError(f"{type(self).__name__}.set_tasks() needs a reset() first")
        idx = (
            torch.arange(self.num_envs, device=self.device)
            if lanes is None
            else torch.as_tensor(lanes, dtype=torch.int64, device=self.device).reshape(-1)
        )
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.num_envs):
            raise ValueError(f"lanes {idx.tolist()} out of range; valid lanes are 0 to {self.num_envs - 1}")
        given = self._validate_tasks(tasks, int(idx.numel()))
        for key, value in given.items():
            self.task[key][idx] = value.to(self.task[key].dtype)
        mask = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        mask[idx] = True
        self._restart(mask)
        return self._observe()

    def get_tasks(self) -> Tasks:
        """A copy of the tasks in force, a dict of tensors with first dimension ``num_envs``."""
        return {k: v.clone() for k, v in self.task.items()}

    def validate_actions(self, actions: Any) -> Tensor:
        """``actions`` as a (num_envs,) int64 tensor on the device, or ``ValueError`` naming the fix."""
        name = type(self).__name__
        n = self.single_action_space.n
        if not isinstance(actions, Tensor):
            raise ValueError(
                f"{name}.step: actions must be a torch.Tensor of shape ({self.num_envs},) and dtype int64, "
                f"got {type(actions).__name__}; wrap them with torch.as_tensor(actions, device={str(self.device)!r})"
            )
        if actions.shape != (self.num_envs,):
            raise ValueError(
                f"{name}.step: actions have shape {tuple(actions.shape)}; pass one action per lane, shape "
                f"({self.num_envs},) (e.g. actions.reshape({self.num_envs}))"
            )
        if actions.dtype.is_floating_point or actions.dtype.is_complex or actions.dtype == torch.bool:
            raise ValueError(
                f"{name}.step: actions have dtype {actions.dtype}; discrete actions must be integers "
                "(use actions.long())"
            )
        if actions.device != self.device:
            raise ValueError(
                f"{name}.step: actions are on {actions.device} but the env is on {self.device}; "
                f"move them with actions.to({str(self.device)!r})"
            )
        actions = actions.long()
        if self.check_actions:
            bad = (actions < 0) | (actions >= n)
            if bool(bad.any()):
                lane = int(bad.nonzero()[0, 0])
                raise ValueError(
                    f"{name}.step: action {int(actions[lane])} in lane {lane} is outside the action space "
                    f"{self.single_action_space} (valid actions: 0 to {n - 1})"
                )
        return actions

    # -- helpers for subclasses -----------------------------------------------------------------
    def _restart(self, mask: Tensor) -> None:
        self.elapsed_steps = torch.where(mask, torch.zeros_like(self.elapsed_steps), self.elapsed_steps)
        self._start_episodes(mask)

    def _rand(self, *shape: int) -> Tensor:
        """Uniform [0, 1) float32 draws from the env's generator."""
        return torch.rand(shape, generator=self.generator, device=self.device)

    def _randint(self, high: int, *shape: int) -> Tensor:
        """Uniform integers in ``[0, high)`` from the env's generator."""
        return torch.randint(0, high, shape, generator=self.generator, device=self.device)

    def _permutations(self, n: int, k: int) -> Tensor:
        """``n`` independent uniform random permutations of ``range(k)``, shape (n, k)."""
        return torch.argsort(self._rand(n, k), dim=1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_envs={self.num_envs}, device={self.device}, env_id={self.env_id!r})"
