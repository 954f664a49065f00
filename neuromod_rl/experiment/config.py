"""Experiment configs: rl-zoo-like YAML, validated by pydantic, overridable with ``--set key=value``.

One YAML file describes one task x method::

    name: bandit_neuromod
    env: neuromod_rl/TwoArmedBanditDependent-v0
    env_kwargs: {}
    wrappers: []                      # [Name, {Name: {kwarg: value}}, "package.module.Class", ...]
    algo: plastic_ppo                 # see neuromod_rl.experiment.algos.ALGOS
    policy: MlpPlasticPolicy
    policy_kwargs: {rule: neuromod, hidden_size: 32}
    n_envs: 8
    n_timesteps: 200000
    seed: 0
    hyperparameters: {learning_rate: lin_1e-3, n_steps: 100, gamma: 0.9}
    checkpoint_freq: 50000
    eval: {episodes: 100}

Validation has two stages, so that every mistake is reported with the key, the value and the
allowed values: :func:`validate` (pydantic: types, ranges, unknown keys; cheap) and
:func:`check_semantics` (the algorithm's policies and constructor arguments, the Gymnasium
registry, wrapper names; imports SB3). Both raise :class:`UserError`.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from neuromod_rl.experiment.algos import ALGOS, algo_class
from neuromod_rl.experiment.errors import UserError

DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")

# the wrappers a config may name without a module path (all from neuromod_rl.envs.wrappers)
SHORT_WRAPPERS = ("PrevActionReward", "Trial")

# constructor arguments the workflow sets itself; a config must not set them as hyperparameters
_RESERVED = {"policy", "env", "policy_kwargs", "seed", "verbose", "tensorboard_log", "device", "_init_setup_model"}


class EvalSettings(BaseModel):
    """How ``neuromod-rl eval`` and the report evaluate a run (override with --episodes)."""

    model_config = ConfigDict(extra="forbid")
    episodes: int = Field(100, ge=1, le=100_000)
    n_train_tasks: int = Field(50, ge=1)
    n_test_tasks: int = Field(20, ge=1)
    deterministic: bool = False


class ExperimentConfig(BaseModel):
    """One experiment: a task, a method and its budget (the keys of rl-zoo's hyperparameter files)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=80)
    env: str = Field(min_length=1)
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    wrappers: list[str | dict[str, dict[str, Any] | None]] = Field(default_factory=list)
    algo: str
    policy: str = Field(min_length=1)
    policy_kwargs: dict[str, Any] = Field(default_factory=dict)
    n_envs: int = Field(1, ge=1, le=1024)
    n_timesteps: int = Field(ge=1)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    checkpoint_freq: int = Field(0, ge=0)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    device: str = "cpu"
    # torch CPU threads; 1 is fastest for small recurrent policies (per-step batches are tiny and
    # extra threads only contend), raise it for large CNN or MuJoCo policies
    torch_threads: int = Field(1, ge=1, le=256)

    @field_validator("algo")
    @classmethod
    def _known_algo(cls, value: str) -> str:
        if value not in ALGOS:
            raise ValueError(f"unknown algorithm; allowed values: {sorted(ALGOS)}")
        return value

    @field_validator("hyperparameters")
    @classmethod
    def _schedules_parse(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, v in value.items():
            if isinstance(v, str) and v.startswith("lin_"):
                parse_schedule(v, key)
        return value


# ------------------------------------------------------------------------------ schedules
def parse_schedule(value: Any, key: str = "value") -> Any:
    """``"lin_3e-4"`` -> SB3 ``LinearSchedule`` from 3e-4 (start of training) to 0 (end), as in
    rl-zoo; any other value is returned unchanged. SB3's own schedule class is used (not a closure)
    so that checkpoints pickle and reload it."""
    if not (isinstance(value, str) and value.startswith("lin_")):
        return value
    try:
        start = float(value[4:])
    except ValueError:
        raise ValueError(f"{key}={value!r}: a linear schedule is written lin_<number>, e.g. lin_3e-4") from None
    from stable_baselines3.common.utils import LinearSchedule

    return LinearSchedule(start=start, end=0.0, end_fraction=1.0)


# ------------------------------------------------------------------------------ loading
def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<top level>"
        if e["type"] == "extra_forbidden":
            parent = e["loc"][:-1]
            model = EvalSettings if parent == ("eval",) else ExperimentConfig
            lines.append(
                f"unknown key `{key}` (value {e['input']!r}); allowed keys: {sorted(model.model_fields)}"
            )
        elif e["type"] == "missing":
            lines.append(f"missing required key `{key}`")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"key `{key}` has value {e['input']!r}: {msg}")
    return (
        f"invalid config {source}: " + "; ".join(lines) + ". Fix the YAML file, or override a key with "
        "--set key=value (e.g. --set n_envs=4). `neuromod-rl check CONFIG` validates a file without training."
    )


def validate(data: Any, source: str = "<config>") -> ExperimentConfig:
    """Validate a raw mapping with pydantic; raise :class:`UserError` naming key, value and allowed values."""
    if not isinstance(data, dict):
        raise UserError(
            f"invalid config {source}: the top level must be a mapping of keys (name, env, algo, ...), "
            f"got {type(data).__name__}. See configs/default.yaml for the layout."
        )
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise UserError(_format_validation_error(err, source)) from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read one YAML mapping; file and syntax problems become :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"config file {str(path)!r} does not exist. Pass a YAML file from configs/ "
            "(e.g. configs/bandit_neuromod.yaml), or no CONFIG at all to train the embedded default."
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"config file {str(path)!r} is not valid YAML: {err}. Fix the syntax at that line.") from None
    except UnicodeDecodeError:
        raise UserError(f"config file {str(path)!r} is not a text (UTF-8) YAML file.") from None
    if data is None:
        raise UserError(f"config file {str(path)!r} is empty; see configs/default.yaml for the layout.")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set a.b=value`` overrides (value parsed as YAML: ``4``, ``lin_1e-3``, ``[64, 64]``)."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or not re.fullmatch(r"[A-Za-z0-9_.]+", key):
            raise UserError(
                f"--set {item!r} is not of the form key=value; e.g. --set n_envs=4 or "
                "--set hyperparameters.learning_rate=lin_1e-3"
            )
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(
                    f"--set {item!r}: `{'.'.join(parts[: i + 1])}` is {child!r}, not a mapping, so it has no "
                    f"key `{parts[i + 1]}`. Set `{'.'.join(parts[: i + 1])}` itself instead."
                )
            node = child
        node[parts[-1]] = value
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load ``path`` (the embedded default when ``None``), apply overrides, validate both stages."""
    source = str(path) if path is not None else f"{DEFAULT_CONFIG} (embedded default)"
    data = load_yaml(path if path is not None else DEFAULT_CONFIG)
    if isinstance(data, dict):
        data = apply_overrides(data, overrides or [])
    cfg = validate(data, source)
    check_semantics(cfg, source)
    return cfg


def dump_config(cfg: ExperimentConfig) -> str:
    """The resolved config as YAML (what a run saves and what ``check`` prints)."""
    return yaml.safe_dump(cfg.model_dump(), sort_keys=False)


# ------------------------------------------------------------------------------ semantics
def _suggest(value: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(value, choices, n=3)
    return f" Did you mean {close}?" if close else ""


def resolve_wrapper(spec: str | dict[str, Any], source: str = "<config>") -> tuple[type, dict[str, Any]]:
    """A ``wrappers`` entry -> (wrapper class, kwargs). Short names come from ``neuromod_rl.envs``."""
    if isinstance(spec, dict):
        if len(spec) != 1:
            raise UserError(
                f"invalid config {source}: each `wrappers` entry is a name or a one-key mapping "
                f"{{Name: {{kwargs}}}}, got {spec!r}"
            )
        name, kwargs = next(iter(spec.items()))
        kwargs = dict(kwargs or {})
    else:
        name, kwargs = spec, {}
    if name in SHORT_WRAPPERS:
        module, attr = "neuromod_rl.envs.wrappers", name
    elif "." in name:
        module, _, attr = name.rpartition(".")
    else:
        raise UserError(
            f"invalid config {source}: key `wrappers` has unknown wrapper {name!r}; allowed values: "
            f"{list(SHORT_WRAPPERS)} or a full import path such as gymnasium.wrappers.TimeLimit"
        )
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        raise UserError(
            f"invalid config {source}: key `wrappers` names {name!r}, which cannot be imported; "
            f"use one of {list(SHORT_WRAPPERS)} or an importable path such as gymnasium.wrappers.TimeLimit"
        ) from None
    return cls, kwargs


def algo_arguments(cls: type) -> list[str]:
    """Constructor arguments of an algorithm that a config may set under ``hyperparameters``."""
    names: set[str] = set()
    for klass in cls.__mro__:  # follow **kwargs up the hierarchy (PlasticPPO(**kwargs) -> PPO)
        if "__init__" in vars(klass):
            params = inspect.signature(klass.__init__).parameters
            names |= set(params)
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
                break
    return sorted(n for n in names - _RESERVED - {"self", "args", "kwargs"})


def check_semantics(cfg: ExperimentConfig, source: str = "<config>") -> None:
    """Checks that need the libraries: env id registered, policy and hyperparameters known to the algo."""
    import gymnasium

    import neuromod_rl  # noqa: F401  (registers the task ids)

    if cfg.env not in gymnasium.registry:
        raise UserError(
            f"invalid config {source}: key `env` has value {cfg.env!r}, which is not a registered Gymnasium id."
            f"{_suggest(cfg.env, list(gymnasium.registry))} `neuromod-rl envs` lists the tasks of neuromod-rl."
        )
    cls = algo_class(cfg.algo)
    aliases = sorted(getattr(cls, "policy_aliases", {}))
    if cfg.policy not in aliases:
        raise UserError(
            f"invalid config {source}: key `policy` has value {cfg.policy!r}, which algo {cfg.algo!r} does not "
            f"know; allowed values: {aliases}"
        )
    allowed = algo_arguments(cls)
    for key in cfg.hyperparameters:
        if key not in allowed:
            raise UserError(
                f"invalid config {source}: key `hyperparameters.{key}` is not an argument of {cls.__name__}."
                f"{_suggest(key, allowed)} Allowed keys: {allowed}"
            )
    for spec in cfg.wrappers:
        resolve_wrapper(spec, source)
