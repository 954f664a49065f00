"""Batched torch versions of the classic task distributions: many envs stepped in a few tensor ops.

``make_batched(env_id, num_envs, device)`` builds one from the Gymnasium id it reproduces (same task
sampling, dynamics, rewards and observation layout as the Gymnasium version, which stays the reference).
Two interfaces: the torch ``BatchedTaskEnv`` (tensors in and out, on ``device``) and ``BatchedVecEnv``,
an SB3 ``VecEnv`` over it (numpy in and out) for any SB3 algorithm.

This subpackage imports torch; ``neuromod_rl.envs`` does not import it.
"""

from __future__ import annotations

from typing import Any

import torch

from neuromod_rl.envs.batched.bandit import BatchedTwoArmedBandit
from neuromod_rl.envs.batched.base import BatchedTaskEnv
from neuromod_rl.envs.batched.cue_reward import BatchedCueReward
from neuromod_rl.envs.batched.delayed_cue import BatchedDelayedCue
from neuromod_rl.envs.batched.harlow import BatchedHarlow
from neuromod_rl.envs.batched.maze import BatchedMaze
from neuromod_rl.envs.batched.tmaze import BatchedTMaze
from neuromod_rl.envs.batched.vec_env import BatchedVecEnv
from neuromod_rl.envs.registration import ENV_SPECS

_CLASSES: dict[str, type[BatchedTaskEnv]] = {
    "neuromod_rl/TwoArmedBandit-v0": BatchedTwoArmedBandit,
    "neuromod_rl/TwoArmedBanditDependent-v0": BatchedTwoArmedBandit,
    "neuromod_rl/TwoArmedBanditFixed-v0": BatchedTwoArmedBandit,
    "neuromod_rl/CueReward-v0": BatchedCueReward,
    "neuromod_rl/Maze-v0": BatchedMaze,
    "neuromod_rl/Maze9-v0": BatchedMaze,
    "neuromod_rl/Maze11-v0": BatchedMaze,
    "neuromod_rl/TMaze-v0": BatchedTMaze,
    "neuromod_rl/Harlow-v0": BatchedHarlow,
    "neuromod_rl/DelayedCue-v0": BatchedDelayedCue,
}
_SPECS = {spec.id: spec for spec in ENV_SPECS}
#: the Gymnasium ids that have a batched version
BATCHED_ENV_IDS: tuple[str, ...] = tuple(_CLASSES)


def make_batched(env_id: str, num_envs: int, device: str | torch.device = "cpu", **env_kwargs: Any) -> BatchedTaskEnv:
    """The batched version of a registered task: its registered kwargs and time limit, then ``env_kwargs``.

    Args:
        env_id: a Gymnasium id from ``BATCHED_ENV_IDS`` (the ``"neuromod_rl:"`` module prefix is accepted).
        num_envs: number of lanes.
        device: torch device of the state, observations and actions.
        **env_kwargs: the task's keyword arguments (as for ``gymnasium.make``), plus ``check_actions``.

    Call ``reset(seed)`` before stepping. Raises ``ValueError`` for an id without a batched version.
    """
    key = env_id.split(":", 1)[1] if env_id.startswith("neuromod_rl:") else env_id
    if key not in _CLASSES:
        raise ValueError(
            f"no batched version of {env_id!r}; supported ids are {list(BATCHED_ENV_IDS)} "
            "(wrap any other env in an SB3 VecEnv instead)"
        )
    spec = _SPECS[key]
    kwargs = {**spec.kwargs, **env_kwargs}
    kwargs.setdefault("max_episode_steps", spec.max_episode_steps)
    env = _CLASSES[key](num_envs, device=device, **kwargs)
    env.env_id = key
    return env


__all__ = [
    "BATCHED_ENV_IDS",
    "BatchedCueReward",
    "BatchedDelayedCue",
    "BatchedHarlow",
    "BatchedMaze",
    "BatchedTMaze",
    "BatchedTaskEnv",
    "BatchedTwoArmedBandit",
    "BatchedVecEnv",
    "make_batched",
]
