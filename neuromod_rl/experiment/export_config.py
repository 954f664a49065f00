"""The experiment config of a model object, so that exporting a model built in Python writes the same
file as exporting a run: an export embeds the config its loader rebuilds the policy from.

A run has its ``config.yaml``; a model made with ``PlasticPPO("MlpPlasticPolicy", env, ...)`` has none,
so :func:`config_of_model` reads one off the model: the algorithm and policy names it is registered
under, its ``policy_kwargs``, the id of its env and the constructor arguments it holds as plain values.
What a config cannot say as data (a class in ``policy_kwargs``, a schedule, the env's wrappers) is not
invented: a ``policy_kwargs`` value that is code is refused, naming the key, because the policy could
not be rebuilt without it; the rest do not change the policy's weights and are left out.
"""

from __future__ import annotations

import re
from typing import Any

import gymnasium
from torch import nn

from neuromod_rl.experiment.algos import ALGOS, algo_class
from neuromod_rl.experiment.config import ExperimentConfig, algo_arguments, validate
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.safe_yaml import short_repr
from neuromod_rl.experiment.train import _ACTIVATIONS

#: ``policy_kwargs`` an algorithm adds to the ones it is given (SAC's ``use_sde``, A2C's RMSprop): they act
#: on training only and are set again when the model is rebuilt
_SET_BY_ALGORITHM = ("use_sde", "optimizer_class", "optimizer_kwargs")
#: env arguments that choose how an env is shown, not the task
_DISPLAY_ONLY = ("render_mode",)
_ACTIVATION_NAMES = {getattr(nn, cls): name for name, cls in _ACTIVATIONS.items()}


def config_of_model(model: Any, env_id: str | None = None) -> ExperimentConfig:
    """The config that rebuilds ``model``'s policy, read off the model (nothing is trained or made).

    Args:
        model: an SB3 model of an algorithm registered in :data:`~neuromod_rl.experiment.algos.ALGOS`
            (PlasticPPO, PlasticA2C, PlasticSAC, PlasticTD3, PPO, A2C, ...).
        env_id: the Gymnasium id of the env the model acts in. Default: the id of the model's env (the
            spec of its first env); needed when the model has no env or its env was not made by id.

    Raises:
        UserError: the model's class or policy is not one a config names, its ``policy_kwargs`` hold code
            (a class, a function), or its env id is unknown; the message says which and what to do.
    """
    cls = type(model)
    algo = next((name for name, (_, attr) in ALGOS.items() if attr == cls.__name__ and algo_class(name) is cls), None)
    if algo is None:
        raise UserError(f"cannot export a {cls.__name__}: a config names only the algorithms {sorted(ALGOS)}. "
                        "Export a model of one of them, or a run directory.")
    policy = next((alias for alias, pcls in getattr(cls, "policy_aliases", {}).items()
                   if pcls is type(model.policy)), None)
    if policy is None:
        raise UserError(f"cannot export this {cls.__name__}: its policy {type(model.policy).__name__} is none of the "
                        f"policies a config names ({sorted(getattr(cls, 'policy_aliases', {}))}). Build the model "
                        "with one of those names.")
    env, env_kwargs = _env_of(model, env_id)
    data = {
        "name": re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{algo}-{env}")[:80],
        "env": env,
        "env_kwargs": env_kwargs,
        "algo": algo,
        "policy": policy,
        "policy_kwargs": _policy_kwargs(model),
        "n_envs": int(model.n_envs),
        "n_timesteps": max(1, int(model.num_timesteps)),
        "seed": model.seed if isinstance(model.seed, int) and 0 <= model.seed < 2**31 else 0,
        "hyperparameters": _plain_arguments(model, cls),
        "device": "cpu",  # an export holds CPU tensors
    }
    return validate(data, f"the config of the {cls.__name__} model")


def _policy_kwargs(model: Any) -> dict[str, Any]:
    kwargs = {k: v for k, v in (model.policy_kwargs or {}).items() if k not in _SET_BY_ALGORITHM}
    act = kwargs.get("activation_fn")
    if isinstance(act, type) and act in _ACTIVATION_NAMES:
        kwargs["activation_fn"] = _ACTIVATION_NAMES[act]
    for key, value in kwargs.items():
        if _is_data(value):
            kwargs[key] = _lists(value)
        else:
            raise UserError(
                f"cannot export this {type(model).__name__}: policy_kwargs.{key} is {short_repr(value)}, code that the "
                "exported config (data only) cannot name, so its policy could not be rebuilt from the file. Build "
                f"the model with policy_kwargs of plain values (activation_fn: one of {sorted(_ACTIVATIONS)}), or "
                "export the policy to ONNX."
            )
    return kwargs


def _plain_arguments(model: Any, cls: type) -> dict[str, Any]:
    """The constructor arguments the model holds as plain values: schedules and objects (buffers, noise)
    are left out, and none of those changes the policy's weights."""
    out = {}
    for name in algo_arguments(cls):
        value = getattr(model, name, None)
        if value is not None and isinstance(value, bool | int | float | str):
            out[name] = value
    return out


def _env_of(model: Any, env_id: str | None) -> tuple[str, dict[str, Any]]:
    if env_id is not None:
        return env_id, {}
    venv = model.get_env()
    spec = None
    if venv is not None:
        try:
            spec = venv.get_attr("spec", indices=[0])[0]
        except (AttributeError, IndexError):
            spec = None
    if spec is None or not getattr(spec, "id", None):
        raise UserError(f"cannot tell which env this {type(model).__name__} acts in (it has no env, or one not made "
                        "from a Gymnasium id): pass it, e.g. export_safetensors(model, path, env_id='CartPole-v1').")
    # the spec holds the registration's own kwargs too: only what the maker passed belongs in the config
    registered = getattr(gymnasium.registry.get(spec.id), "kwargs", None) or {}
    kwargs = {k: v for k, v in (spec.kwargs or {}).items()
              if k not in _DISPLAY_ONLY and (k not in registered or registered[k] != v)}
    if not _is_data(kwargs):
        raise UserError(f"cannot export this {type(model).__name__}: its env {spec.id!r} was made with arguments that "
                        f"are not plain values ({short_repr(kwargs)}), which the exported config cannot hold. Pass "
                        f"the env id alone: export_safetensors(model, path, env_id={spec.id!r}).")
    return spec.id, _lists(kwargs)


def _is_data(value: Any) -> bool:
    """Whether ``value`` is plain YAML data (what a config holds)."""
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_is_data(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_data(v) for k, v in value.items())
    return False


def _lists(value: Any) -> Any:
    """``value`` with its tuples as lists (YAML's safe dumper writes no tuples)."""
    if isinstance(value, list | tuple):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value
