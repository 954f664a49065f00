"""Build the environments a config describes: the same factory serves training, evaluation and videos,
so the agent is always evaluated on exactly the observation layout it was trained on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
from stable_baselines3.common.vec_env import DummyVecEnv

import neuromod_rl  # noqa: F401  (registers the task ids)
from neuromod_rl.experiment.config import ExperimentConfig, check_env_module, resolve_wrapper
from neuromod_rl.experiment.errors import UserError


def make_env(cfg: ExperimentConfig, render_mode: str | None = None) -> gym.Env:
    """``gymnasium.make(cfg.env, **cfg.env_kwargs)`` wrapped by ``cfg.wrappers`` in order. Imports only
    the project's modules and those the config lists under ``trusted_modules``."""
    check_env_module(cfg.env, cfg.trusted_modules)

    kwargs: dict[str, Any] = dict(cfg.env_kwargs)
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    try:
        env = gym.make(cfg.env, **kwargs)
    except (TypeError, ValueError) as err:
        raise UserError(
            f"cannot make env {cfg.env!r} with env_kwargs {cfg.env_kwargs!r}: {err}. Fix `env_kwargs` in the "
            "config (or --set env_kwargs.NAME=VALUE); `neuromod-rl envs` lists the tasks."
        ) from None
    except gym.error.Error as err:
        raise UserError(f"cannot make env {cfg.env!r}: {err}. `neuromod-rl envs` lists the tasks.") from None
    for spec in cfg.wrappers:
        cls, wkwargs = resolve_wrapper(spec, trusted=cfg.trusted_modules)
        try:
            env = cls(env, **wkwargs)
        except (TypeError, ValueError) as err:
            raise UserError(
                f"cannot apply wrapper {cls.__name__} with arguments {wkwargs!r}: {err}. Fix its entry in `wrappers`."
            ) from None
    return env


def env_factory(cfg: ExperimentConfig) -> Callable[[], gym.Env]:
    """A zero-argument factory, as SB3's ``DummyVecEnv`` wants (picklable with cloudpickle)."""
    return lambda: make_env(cfg)


def build_vec_env(cfg: ExperimentConfig):
    """``cfg.n_envs`` copies in one process. ``DummyVecEnv`` on purpose: the envs are tiny or few, the
    machine has few cores, and an in-process VecEnv can be pickled into a checkpoint for exact resume."""
    make_env(cfg).close()  # fail early, with a clear message, before SB3 wraps the error
    return DummyVecEnv([env_factory(cfg) for _ in range(cfg.n_envs)])
