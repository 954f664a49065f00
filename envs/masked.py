"""Velocity-masked classic-control tasks: memory benchmarks where the velocity must be inferred.

The classic tasks observe positions *and* velocities; with the velocities set to zero the policy
must integrate positions over time, so a memoryless policy fails where a recurrent one succeeds.
These are the partially observable tasks rl-zoo3 registers as ``<Name>NoVel-v<k>`` (its recurrent
PPO benchmarks use them): the same observation layout, the velocity entries zeroed. They are
registered here as ``neuromod_rl/<Name>NoVel-v<k>`` so that no extra package is needed.
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np

from neuromod_rl.envs.base import check_action, check_reset_options

#: base id -> indices of the velocity entries in its observation
VELOCITY_INDICES: dict[str, tuple[int, ...]] = {
    "CartPole-v1": (1, 3),
    "Pendulum-v1": (2,),
    "MountainCar-v0": (1,),
    "MountainCarContinuous-v0": (1,),
}
#: base id -> the keys its ``reset(options=...)`` reads (its start-state bounds); the base tasks
#: ignore any other key, so a misspelt one would silently start from the default state
RESET_OPTION_KEYS: dict[str, tuple[str, ...]] = {
    "CartPole-v1": ("low", "high"),
    "Pendulum-v1": ("x_init", "y_init"),
    "MountainCar-v0": ("low", "high"),
    "MountainCarContinuous-v0": ("low", "high"),
}


class MaskVelocity(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Zero the observation entries at ``indices`` (default: the known velocity entries of the
    wrapped env's id, :data:`VELOCITY_INDICES`)."""

    def __init__(self, env: gym.Env, indices: tuple[int, ...] | None = None):
        gym.utils.RecordConstructorArgs.__init__(self, indices=indices)
        gym.ObservationWrapper.__init__(self, env)
        if indices is None:
            env_id = env.unwrapped.spec.id if env.unwrapped.spec is not None else None
            if env_id not in VELOCITY_INDICES:
                raise ValueError(
                    f"MaskVelocity does not know the velocity entries of {env_id!r}; pass indices=... "
                    f"(known ids: {sorted(VELOCITY_INDICES)})"
                )
            indices = VELOCITY_INDICES[env_id]
        shape = env.observation_space.shape
        if shape is None or len(shape) != 1 or any(not 0 <= int(i) < shape[0] for i in indices):
            raise ValueError(f"MaskVelocity: indices {indices} do not fit the observation space "
                             f"{env.observation_space}")
        self._mask = np.ones(shape, dtype=env.observation_space.dtype)
        self._mask[list(indices)] = 0
        env_id = env.unwrapped.spec.id if env.unwrapped.spec is not None else None
        self._option_keys = RESET_OPTION_KEYS.get(env_id)  # None: a task whose options this wrapper does not know

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if self._option_keys is not None:
            owner = f"{self.unwrapped.spec.id} (masked)"
            check_reset_options(options, self._option_keys, owner)
        return super().reset(seed=seed, options=options)

    def step(self, action):
        # the base tasks differ (CartPole asserts, Pendulum clips silently): one clear check for all
        owner = f"{self.unwrapped.spec.id if self.unwrapped.spec else type(self.unwrapped).__name__} (masked).step"
        return super().step(check_action(self.action_space, action, owner))

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation * self._mask


def make_no_vel(base_id: str, render_mode: str | None = None, **kwargs) -> gym.Env:
    """``gymnasium.make(base_id)`` with its velocities masked (the entry point of the NoVel ids).

    ``render_mode="rgb_array"`` draws with pygame (``gymnasium[classic-control]``). Its frames are drawn
    off-screen, so on a machine without a display SDL is given its dummy video driver, which it would
    otherwise look for (and complain about) first.

    Args:
        base_id: the Gymnasium id whose velocities are masked (a key of :data:`VELOCITY_INDICES`).
        render_mode: passed to the base task (``None``, ``"rgb_array"`` or ``"human"``).
        kwargs: the base task's own arguments.
    """
    if render_mode == "rgb_array" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    return MaskVelocity(gym.make(base_id, render_mode=render_mode, **kwargs))
