"""Meta-RL task distributions and wrappers (pure Gymnasium; imports nothing else of neuromod_rl).

This folder (``envs/`` in the repository) installs as the package ``neuromod_rl.envs``; import it by
that name (nothing is installed as a top-level ``envs``).

Classic tasks are imported eagerly (numpy + gymnasium only). The MuJoCo tasks are loaded lazily
on first attribute access, so ``import neuromod_rl`` never imports MuJoCo.
"""

from __future__ import annotations

import importlib
from typing import Any

from neuromod_rl.envs.bandit import TwoArmedBandit
from neuromod_rl.envs.base import TaskEnvMixin
from neuromod_rl.envs.bounds import BOUNDS, TaskInObservation, bound_env
from neuromod_rl.envs.corridor import HiddenGoalCorridor
from neuromod_rl.envs.cue_reward import CueReward
from neuromod_rl.envs.delayed_cue import DelayedCue
from neuromod_rl.envs.harlow import Harlow
from neuromod_rl.envs.maze import Maze
from neuromod_rl.envs.recall import Copy, Majority, Recall
from neuromod_rl.envs.registration import ENV_IDS, ENV_SPECS, register_envs
from neuromod_rl.envs.tmaze import TMaze
from neuromod_rl.envs.wrappers import FixedTask, PrevActionReward, Trial, make_task_env

_LAZY = {
    "HalfCheetahVel": "locomotion",
    "HalfCheetahDir": "locomotion",
    "AntDir": "locomotion",
    "AntGoal": "locomotion",
    "CrippledHalfCheetah": "crippled",
    "CrippledAnt": "crippled",
    "HalfCheetahRandParams": "rand_params",
    "HopperRandParams": "rand_params",
    "HalfCheetahHiddenGoal": "hidden_goal",
    "HalfCheetahCueDir": "cue_run",
    "ReacherHiddenGoal": "reacher",
    "ReacherCue": "reacher",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"neuromod_rl.envs.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'neuromod_rl.envs' has no attribute {name!r}")


__all__ = [
    "BOUNDS",
    "ENV_IDS",
    "ENV_SPECS",
    "Copy",
    "CueReward",
    "DelayedCue",
    "Harlow",
    "HiddenGoalCorridor",
    "Majority",
    "Maze",
    "FixedTask",
    "PrevActionReward",
    "Recall",
    "TMaze",
    "TaskEnvMixin",
    "TaskInObservation",
    "Trial",
    "TwoArmedBandit",
    "bound_env",
    "make_task_env",
    "register_envs",
    *_LAZY,
]
