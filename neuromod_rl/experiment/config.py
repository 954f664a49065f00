"""Experiment configs: rl-zoo-like YAML, validated by pydantic, overridable with ``--set key=value``.

One YAML file describes one task x method::

    name: bandit_neuromod
    env: neuromod_rl/TwoArmedBanditDependent-v0
    env_kwargs: {}
    wrappers: []                      # [Name, {Name: {kwarg: value}}, "package.module.Class", ...]
    trusted_modules: []               # modules whose wrappers this config may import (opt-in)
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

A config is data: nothing it names is imported or called unless the user says so. ``wrappers``
resolve from the project's own wrappers (:data:`PROJECT_WRAPPERS`); a wrapper from any other module
(``my_package.wrappers.MyWrapper``, ``gymnasium.wrappers.TimeLimit``) needs that module listed under
``trusted_modules`` in the same config, the explicit opt-in (importing a module runs its code), and
must be a ``gymnasium.Wrapper`` subclass. The same holds for an env id in Gymnasium's module form
(``my_package:MyEnv-v0``, which imports ``my_package``).
"""

from __future__ import annotations

import copy
import difflib
import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import gymnasium
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator
from stable_baselines3.common.utils import LinearSchedule

import neuromod_rl  # noqa: F401  (registers the task ids)
from neuromod_rl import configs as _shipped
from neuromod_rl.experiment.algos import ALGOS, algo_class
from neuromod_rl.experiment.config_limits import check_counts, check_memory, check_net_arch
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.safe_yaml import InvalidYAML, load_file, short_repr, truncate
from neuromod_rl.experiment.safe_yaml import load as load_yaml_text

#: the configs shipped with the package (``configs/`` in a clone, package data in a wheel)
CONFIG_DIR = Path(_shipped.__file__).parent
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"

#: the project's own wrappers: a config names them without a module path (their full path works too);
#: nothing else is imported unless its module is listed under ``trusted_modules``
PROJECT_WRAPPERS: dict[str, str] = {
    "PrevActionReward": "neuromod_rl.envs.wrappers",
    "Trial": "neuromod_rl.envs.wrappers",
    "FixedTask": "neuromod_rl.envs.wrappers",
    "MaskVelocity": "neuromod_rl.envs.masked",
    # the oracle bound (the task in the observation), so that a config can train it
    "TaskInObservation": "neuromod_rl.envs.bounds",
}
SHORT_WRAPPERS = tuple(PROJECT_WRAPPERS)
_MODULE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"

# constructor arguments the workflow sets itself; a config must not set them as hyperparameters
_RESERVED = {"policy", "env", "policy_kwargs", "seed", "verbose", "tensorboard_log", "device", "_init_setup_model"}


#: the most episodes one evaluation during training may run (it pauses training while it runs)
MAX_PERIODIC_EPISODES = 10_000


class EvalSettings(BaseModel):
    """How ``neuromod-rl eval`` and the report evaluate a run (override with --episodes), and how often
    training evaluates on the held-out tasks: every ``every_steps`` env steps (0: never),
    ``periodic_episodes`` episodes each time, logged as ``eval/*``."""

    model_config = ConfigDict(extra="forbid")
    episodes: StrictInt = Field(100, ge=1, le=100_000)
    n_train_tasks: StrictInt = Field(50, ge=1, le=100_000)
    n_test_tasks: StrictInt = Field(20, ge=1, le=100_000)
    deterministic: StrictBool = False
    every_steps: StrictInt = 0
    periodic_episodes: StrictInt = 10

    @field_validator("every_steps", mode="before")
    @classmethod
    def _every_steps(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("the env steps between evaluations during training: 0 (never) or a positive integer "
                             "written without a decimal point or exponent, e.g. eval.every_steps: 10000")
        return value

    @field_validator("periodic_episodes", mode="before")
    @classmethod
    def _periodic_episodes(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PERIODIC_EPISODES:
            raise ValueError(f"the episodes of each evaluation during training: an integer from 1 to "
                             f"{MAX_PERIODIC_EPISODES}, e.g. eval.periodic_episodes: 10")
        return value


class NormalizeSettings(BaseModel):
    """rl-zoo's ``normalize``: SB3's ``VecNormalize`` around the training envs. The observation
    statistics are saved with the run (``vecnormalize.npz``) and applied, frozen, at evaluation;
    rewards are normalised for training only (evaluation reports raw rewards). ``gamma`` defaults to
    ``hyperparameters.gamma`` (the discount of the return whose scale normalises the reward)."""

    model_config = ConfigDict(extra="forbid")
    norm_obs: StrictBool = True
    norm_reward: StrictBool = True
    clip_obs: float = Field(10.0, gt=0)
    clip_reward: float = Field(10.0, gt=0)
    gamma: float | None = Field(None, ge=0, le=1)
    epsilon: float = Field(1e-8, gt=0)


class ExperimentConfig(BaseModel):
    """One experiment: a task, a method and its budget (the keys of rl-zoo's hyperparameter files)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=80)
    env: str = Field(min_length=1)
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    wrappers: list[str | dict[str, dict[str, Any] | None]] = Field(default_factory=list)
    # modules (dotted names) whose wrappers or env ids this config may import: the explicit opt-in
    trusted_modules: list[str] = Field(default_factory=list)
    algo: str
    policy: str = Field(min_length=1)
    policy_kwargs: dict[str, Any] = Field(default_factory=dict)
    n_envs: StrictInt = Field(1, ge=1, le=1024)
    n_timesteps: StrictInt = Field(ge=1)
    seed: StrictInt = Field(0, ge=0, le=2**31 - 1)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    checkpoint_freq: StrictInt = Field(0, ge=0)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    # true (rl-zoo's spelling) or a mapping of NormalizeSettings; false: raw observations and rewards
    normalize: StrictBool | NormalizeSettings = False
    device: str = "cpu"
    # torch CPU threads; 1 is fastest for small recurrent policies (per-step batches are tiny and
    # extra threads only contend), raise it for large CNN or MuJoCo policies
    torch_threads: StrictInt = Field(1, ge=1, le=256)

    @field_validator("trusted_modules")
    @classmethod
    def _module_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(_MODULE_NAME, name):
                raise ValueError(
                    f"{short_repr(name)} is not a module name; write dotted module names, e.g. my_package.wrappers"
                )
        return value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        return check_device(value)

    @field_validator("algo")
    @classmethod
    def _known_algo(cls, value: str) -> str:
        if value not in ALGOS:
            raise ValueError(f"unknown algorithm; allowed values: {sorted(ALGOS)}")
        return value

    def normalize_settings(self) -> NormalizeSettings | None:
        """The resolved ``normalize`` settings (``gamma`` filled in), or ``None`` when off."""
        if self.normalize is False:
            return None
        settings = NormalizeSettings() if self.normalize is True else self.normalize
        if settings.gamma is None:
            gamma = self.hyperparameters.get("gamma", 0.99)
            settings = settings.model_copy(update={"gamma": float(gamma) if isinstance(gamma, int | float) else 0.99})
        return settings

    @field_validator("hyperparameters")
    @classmethod
    def _schedules_parse(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, v in value.items():
            if isinstance(v, str) and v.startswith("lin_"):
                parse_schedule(v, key)
        return value


def check_device(value: str) -> str:
    """``value`` if torch can place a model there on this machine (``auto``, ``cpu``, ``cuda[:i]``, ...)."""
    if value == "auto":
        return value
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError("not a torch device; allowed values: auto, cpu, cuda, cuda:<index>") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ValueError(f"this machine has {count} CUDA device(s); use device=cpu (or auto)")
    elif device.type != "cpu":
        raise ValueError("allowed values: auto, cpu, cuda, cuda:<index>")
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
        raise ValueError(
            f"{key}={short_repr(value)}: a linear schedule is written lin_<number>, e.g. lin_3e-4"
        ) from None
    return LinearSchedule(start=start, end=0.0, end_fraction=1.0)


# ------------------------------------------------------------------------------ loading
def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    errors = err.errors()
    for e in errors:
        loc = tuple(e["loc"])
        if loc[:1] == ("normalize",) and len(loc) > 1:  # `normalize` is `bool | NormalizeSettings`
            if len(loc) == 2:  # neither a bool nor a mapping: one message for both branches
                if loc[1] == "bool" and not isinstance(e["input"], dict):
                    lines.append(f"key `normalize` has value {short_repr(e['input'])}: use true, false or a mapping "
                                 f"with keys {sorted(NormalizeSettings.model_fields)}")
                continue
            if loc[1] == "bool":
                continue  # a mapping was given: the settings' own error says what is wrong
            loc = loc[:1] + loc[2:]
        key = ".".join(str(p) for p in loc) or "<top level>"
        if e["type"] == "extra_forbidden":
            parent = loc[:-1]
            model = {("eval",): EvalSettings, ("normalize",): NormalizeSettings}.get(parent, ExperimentConfig)
            lines.append(
                f"unknown key `{key}` (value {short_repr(e['input'])}); allowed keys: {sorted(model.model_fields)}"
            )
        elif e["type"] == "missing":
            lines.append(f"missing required key `{key}`")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"key `{key}` has value {short_repr(e['input'])}: {msg}")
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


def shipped_configs() -> list[str]:
    """The names of the shipped configs (``neuromod-rl train NAME`` finds them from any folder)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config(path: str | Path) -> Path:
    """``path`` if it is a file; else the shipped config it names: ``NAME``, ``NAME.yaml`` or
    ``configs/NAME.yaml`` (so the repository's commands also work from a wheel, in any folder)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.parent in (Path("."), Path("configs")) and path.suffix in ("", ".yaml"):
        shipped = CONFIG_DIR / f"{path.stem}.yaml"
        if shipped.is_file():
            return shipped
    raise UserError(
        f"config file {str(path)!r} does not exist. Pass a YAML file, the name of a shipped config "
        f"({', '.join(shipped_configs())}), or no CONFIG at all to train the embedded default."
    )


def load_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read one YAML document within :mod:`~neuromod_rl.experiment.safe_yaml`'s limits; file and syntax
    problems become :class:`UserError` naming ``what`` and the file."""
    path = resolve_config(path)
    data = load_file(path, f"{what} {str(path)!r}")
    if data is None:
        raise UserError(f"{what} {str(path)!r} is empty; see configs/default.yaml for the layout.")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set a.b=value`` overrides (value parsed as YAML: ``4``, ``lin_1e-3``, ``[64, 64]``)."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or not re.fullmatch(r"[A-Za-z0-9_.]+", key):
            raise UserError(
                f"--set {short_repr(item)} is not of the form key=value; e.g. --set n_envs=4 or "
                "--set hyperparameters.learning_rate=lin_1e-3"
            )
        try:
            value = load_yaml_text(raw, f"--set {key}") if raw else ""
        except InvalidYAML:
            value = raw
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(
                    f"--set {short_repr(item)}: `{'.'.join(parts[: i + 1])}` is {short_repr(child)}, not a mapping, "
                    f"so it has no key `{parts[i + 1]}`. Set `{'.'.join(parts[: i + 1])}` itself instead."
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


def _trusted(module: str, trusted: list[str]) -> bool:
    return any(module == t or module.startswith(t + ".") for t in trusted)


def resolve_wrapper(
    spec: str | dict[str, Any], source: str = "<config>", trusted: list[str] | None = None
) -> tuple[type, dict[str, Any]]:
    """A ``wrappers`` entry -> (wrapper class, kwargs). Short names are the project's wrappers; any other
    module is imported only when it is in ``trusted`` (the config's ``trusted_modules``), and what it
    names must be a ``gymnasium.Wrapper`` subclass (nothing else is ever called)."""
    if isinstance(spec, dict):
        if len(spec) != 1:
            raise UserError(
                f"invalid config {source}: each `wrappers` entry is a name or a one-key mapping "
                f"{{Name: {{kwargs}}}}, got {short_repr(spec)}"
            )
        name, kwargs = next(iter(spec.items()))
        kwargs = dict(kwargs or {})
    else:
        name, kwargs = spec, {}
    if name in PROJECT_WRAPPERS:
        module, attr = PROJECT_WRAPPERS[name], name
    elif "." in name:
        module, _, attr = name.rpartition(".")
    else:
        raise UserError(
            f"invalid config {source}: key `wrappers` has unknown wrapper {short_repr(name)}; allowed values: "
            f"{list(PROJECT_WRAPPERS)}, or a class from a module you list under `trusted_modules`."
            f"{_suggest(name, list(PROJECT_WRAPPERS))}"
        )
    own = PROJECT_WRAPPERS.get(attr) == module
    if not own and not _trusted(module, list(trusted or [])):
        raise UserError(
            f"invalid config {source}: key `wrappers` names {short_repr(name)} from module {short_repr(module)}, "
            f"which this config does not trust. Importing a module runs its code, so a config imports nothing but the "
            f"project's wrappers ({list(PROJECT_WRAPPERS)}) unless it opts in: add `trusted_modules: "
            f"[{truncate(module, 200)}]` to the config if you trust that module."
        )
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        raise UserError(
            f"invalid config {source}: key `wrappers` names {short_repr(name)}, which cannot be imported; "
            f"use one of {list(PROJECT_WRAPPERS)} or an importable class such as gymnasium.wrappers.TimeLimit"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, gymnasium.Wrapper)):
        raise UserError(
            f"invalid config {source}: key `wrappers` names {short_repr(name)}, which is not a gymnasium.Wrapper "
            "class; only wrapper classes can be named there"
        )
    return cls, kwargs


def check_env_module(env_id: str, trusted: list[str], source: str = "<config>") -> None:
    """Refuse Gymnasium's module form ``module:Env-v0`` (which imports ``module``) unless ``module`` is
    the project's own or listed under ``trusted_modules``."""
    module, sep, _ = env_id.partition(":")
    if sep and module != "neuromod_rl" and not _trusted(module, trusted):
        raise UserError(
            f"invalid config {source}: key `env` has value {short_repr(env_id)}, which imports module "
            f"{short_repr(module)} when made. Add `trusted_modules: [{truncate(module, 200)}]` to the config if you "
            "trust that module, or import it yourself and use the registered id without the module prefix."
        )


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
    check_env_module(cfg.env, cfg.trusted_modules, source)
    module, sep, env_id = cfg.env.rpartition(":")
    if sep:
        try:
            importlib.import_module(module)  # trusted (checked above): registers its ids
        except ImportError as err:
            raise UserError(f"invalid config {source}: key `env` names module {short_repr(module)}, which cannot be "
                            f"imported ({truncate(str(err))})") from None
    if env_id not in gymnasium.registry:
        raise UserError(
            f"invalid config {source}: key `env` has value {short_repr(cfg.env)}, which is not a registered Gymnasium "
            f"id.{_suggest(cfg.env, list(gymnasium.registry))} `neuromod-rl envs` lists the tasks of neuromod-rl."
        )
    cls = algo_class(cfg.algo)
    aliases = sorted(getattr(cls, "policy_aliases", {}))
    if cfg.policy not in aliases:
        raise UserError(
            f"invalid config {source}: key `policy` has value {short_repr(cfg.policy)}, which algo {cfg.algo!r} does "
            f"not know; allowed values: {aliases}"
        )
    allowed = algo_arguments(cls)
    for key in cfg.hyperparameters:
        if key not in allowed:
            raise UserError(
                f"invalid config {source}: key `hyperparameters.{key}` is not an argument of {cls.__name__}."
                f"{_suggest(key, allowed)} Allowed keys: {allowed}"
            )
    check_counts(cfg.hyperparameters, source)
    for spec in cfg.wrappers:
        resolve_wrapper(spec, source, cfg.trusted_modules)
    check_net_arch(cfg.policy_kwargs.get("net_arch"), source)
    check_memory(cfg, source)
