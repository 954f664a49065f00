"""What a training checkpoint holds, how it is taken at a rollout start, and how it is put back.

A checkpoint holds everything the next rollout depends on: the SB3 model zip (weights, optimizer,
counters, ``_last_obs``, recurrent state), the replay buffer of off-policy algorithms (the zip leaves
it out), the torch / numpy / Python RNG states, and the in-process VecEnv itself (pickled with its
envs' generators and mid-episode state). Putting all of it back makes a resumed run compute the same
updates as an uninterrupted one with the same seed. Where an env cannot be pickled (MuJoCo bodies),
the state holds no VecEnv and the resume rebuilds and reseeds the envs instead.

Each state also holds the fingerprint of the config it was trained with (:func:`config_fingerprint`),
so that a resume can refuse a ``config.yaml`` edited since (:func:`check_config`): SB3 would load the
checkpoint into whatever algorithm the file names and carry on, and the run would then describe a
model it does not hold.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import io
import json
import pickle
import pickletools
import random
import time
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import torch
import yaml
from gymnasium.utils import EzPickle
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor

from neuromod_rl.experiment import normalize
from neuromod_rl.experiment.algos import ALGOS, algo_class
from neuromod_rl.experiment.config import ExperimentConfig, algo_arguments, dump_config
from neuromod_rl.experiment.curves import monitor_file_problem
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.runs import InterruptGuard, Run, atomic_write_bytes, write_checkpoint

STATE_FORMAT = 1  # a state without "config" (older checkpoints) is read too: see check_config
#: config keys a resume may see changed: the budget (``--set n_timesteps=N``), and by hand the keys
#: that shape neither the model nor its training (the run's label, how often it saves, its evaluation)
RESUMABLE_KEYS = ("n_timesteps", "name", "checkpoint_freq", "eval")


def _rows(path: Path) -> int:
    with open(path, "rb") as f:
        return max(sum(1 for _ in f) - 2, 0)  # two header lines: JSON metadata, CSV column names


def picklable_state(env) -> bool:
    """True when pickling ``env`` keeps its state. Gymnasium's MuJoCo envs are ``EzPickle``: they
    pickle as their constructor arguments and come back freshly built, which would silently lose
    the episode in progress, so they count as not picklable."""
    while True:
        if isinstance(env, EzPickle):
            return False
        if not hasattr(env, "env"):
            return True
        env = env.env


def _picklable(values: dict[str, Any]) -> dict[str, bytes]:
    """Each value pickled on its own, keeping those that come back from a round trip (a type that
    cannot be unpickled must not make the whole checkpoint unreadable). A mapping type that does not
    pickle itself (``PlasticState``: the plastic state PlasticPPO carries across rollouts, which SB3's
    zip leaves out) is stored as its class and a plain dict, and rebuilt as ``cls(**dict)``."""
    out = {}
    for key, value in values.items():
        for candidate in (value, _as_mapping(value)):
            if candidate is None:
                continue
            try:
                data = pickle.dumps(candidate)
                pickle.loads(data)
            except Exception:  # noqa: BLE001  (RecursionError, PicklingError, TypeError, ...)
                continue
            out[key] = data
            break
    return out


def _as_mapping(value: Any) -> tuple[str, str, dict] | None:
    if not isinstance(value, Mapping):
        return None
    return ("__mapping__", f"{type(value).__module__}:{type(value).__qualname__}", dict(value))


def _unpickle(data: bytes) -> Any:
    value = pickle.loads(data)
    if isinstance(value, tuple) and len(value) == 3 and value[0] == "__mapping__":
        module, _, name = value[1].partition(":")
        return getattr(importlib.import_module(module), name)(**value[2])
    return value


def _find_monitor(env):
    """The ``VecMonitor`` in ``env``'s stack (a ``VecNormalize`` may sit above it)."""
    while not isinstance(env, VecMonitor):
        env = env.venv
    return env


def snapshot(model, env, cfg: ExperimentConfig) -> tuple[bytes, bytes]:
    """Serialise everything the next rollout depends on: ``(model zip bytes, state pickle bytes)``;
    ``cfg``, the config being trained, is recorded as its fingerprint."""
    monitor = _find_monitor(env)
    vn = model.get_vec_normalize_env()
    buf = io.BytesIO()
    model.save(buf)
    venv_bytes = None
    if all(picklable_state(e) for e in monitor.venv.envs):
        try:
            venv_bytes = cloudpickle.dumps(monitor.venv)
        except Exception:  # noqa: BLE001  (open handles and the like: resume reseeds instead)
            venv_bytes = None
    state = {
        "format": STATE_FORMAT,
        "config": config_fingerprint(cfg),
        "num_timesteps": int(model.num_timesteps),
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),  # noqa: NPY002  (SB3's rollout buffer draws from it)
            "python": random.getstate(),
        },
        "venv": venv_bytes,
        "normalize": None if vn is None else normalize.to_bytes(vn),
        # off-policy algorithms: SB3's zip leaves the replay buffer out, and a resumed run must not
        # start from an empty one (its plastic states at sequence starts included)
        "replay_buffer": pickle.dumps(model.replay_buffer) if getattr(model, "replay_buffer", None) else None,
        # where the next rollout starts (observation, episode starts, recurrent state): SB3 saves these
        # in the zip, but some algorithms rebuild them on load (RecurrentPPO zeroes its LSTM state)
        "last": _picklable({k: v for k, v in vars(model).items() if k.startswith("_last_")}),
        "monitor": {
            "episode_returns": monitor.episode_returns.copy(),
            "episode_lengths": monitor.episode_lengths.copy(),
            "episode_count": monitor.episode_count,
            "rows": {p.name: _rows(p) for p in Path(monitor.results_writer.file_handler.name).parent.glob("*.csv")},
        },
    }
    return buf.getvalue(), pickle.dumps(state)


def non_finite_weight(model) -> str | None:
    """The name of the first policy parameter holding NaN/inf, or ``None``."""
    return next((name for name, p in model.policy.named_parameters() if not bool(torch.isfinite(p).all())), None)


def save_checkpoint(run: Run, model, monitor, cfg: ExperimentConfig) -> None:
    """``write_checkpoint`` of the current state, unless the weights went non-finite: then nothing is
    written (the last good checkpoint stays the latest) and training stops with a message saying so."""
    bad = non_finite_weight(model)
    if bad is not None:
        raise FloatingPointError(
            f"the policy's weight {bad!r} holds NaN/inf after an update (training diverged: a huge reward or too "
            "large a learning rate); this state is not checkpointed"
        )
    write_checkpoint(run, model.num_timesteps, *snapshot(model, monitor, cfg))


def make_checkpoint_callback(run: Run, cfg: ExperimentConfig, guard: InterruptGuard):
    class CheckpointCallback(BaseCallback):
        """Saves at rollout starts (every ``checkpoint_freq`` steps, and when Ctrl-C was pressed),
        then stops training on the next step if Ctrl-C was pressed."""

        def __init__(self) -> None:
            super().__init__()
            self.last_saved = -1
            self.stopped = False

        def _on_training_start(self) -> None:
            self.last_saved = self.model.num_timesteps

        def _on_rollout_start(self) -> None:
            step = self.model.num_timesteps
            due = cfg.checkpoint_freq and step - self.last_saved >= cfg.checkpoint_freq
            if (due or guard.requested) and step != self.last_saved:
                save_checkpoint(run, self.model, self.model.env, cfg)
                self.last_saved = step
            # stop only once the state at a rollout start is on disk (an exact resume point)
            self.stopped = guard.requested and self.last_saved == step

        def _on_step(self) -> bool:
            return not self.stopped

    return CheckpointCallback()


def restore_monitor_files(run: Run, rows: dict[str, int]) -> None:
    """Drop episodes logged after the checkpoint (they will be run again), keeping them aside in a
    ``.discarded`` file rather than deleting anything. Bytes, not text: what is set aside is never
    parsed, so whatever a crash or a hand left there cannot stop the resume."""
    for path in sorted(run.monitor.glob("*.monitor.csv")):
        lines = path.read_bytes().splitlines(keepends=True)
        if path.name not in rows:  # a segment begun after the checkpoint: all of its episodes run again
            damaged = monitor_file_problem(path) is not None
            if damaged or len(lines) > 2:
                _set_aside(path, lines if damaged else lines[2:])
                path.unlink()
            continue
        keep = rows[path.name]
        if len(lines) - 2 > keep:
            _set_aside(path, lines[2 + keep:])
            atomic_write_bytes(path, b"".join(lines[: 2 + keep]))


def _set_aside(path: Path, lines: list[bytes]) -> None:
    atomic_write_bytes(path.with_name(path.name + f".{int(time.time())}.discarded"), b"".join(lines))


def read_state(state_path: Path, model_path: Path) -> dict[str, Any]:
    """The state pickle written by :func:`snapshot`, or a :class:`UserError` saying how to fall back to
    the previous checkpoint when it is damaged."""
    try:
        state = pickle.loads(state_path.read_bytes())
        assert state["format"] == STATE_FORMAT
    except Exception as err:  # noqa: BLE001  (any damage must become a clear message)
        raise _corrupt(state_path, model_path, f"{type(err).__name__}") from None
    return state


def _corrupt(state_path: Path, model_path: Path, why: str) -> UserError:
    return UserError(
        f"checkpoint {state_path} is corrupt or not from this version of neuromod-rl ({why}). "
        f"Delete {state_path.name} and {model_path.name} (and checkpoints/latest.json) to resume from the "
        "previous checkpoint."
    )


def restore_episode_counters(monitor, state: dict[str, Any]) -> None:
    """The ``VecMonitor``'s episodes in progress, as they were at the checkpoint (pickled envs only)."""
    monitor.episode_returns = state["monitor"]["episode_returns"]
    monitor.episode_lengths = state["monitor"]["episode_lengths"]
    monitor.episode_count = state["monitor"]["episode_count"]


def restore_next_rollout(model, state: dict[str, Any]) -> None:
    """Where the next rollout starts (observation, episode starts, recurrent or plastic state)."""
    for key, value in state["last"].items():
        setattr(model, key, _unpickle(value))


def restore_rngs(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])  # noqa: NPY002  (SB3's rollout buffer draws from it)
    random.setstate(state["rng"]["python"])


# ------------------------------------------------------------------------------ config vs checkpoint
_MISSING = object()


class _Shown(str):
    """A value shown as written (an object's summary in a message needs no quotes)."""

    def __repr__(self) -> str:
        return str(self)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{"a.b": leaf}``, so that a difference is named down to its key."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_fingerprint(cfg: ExperimentConfig) -> dict[str, Any]:
    """What a checkpoint records of the config it was trained with: every resolved key a resume may not
    change (all but :data:`RESUMABLE_KEYS`), flattened, and their SHA-256. Taken from the YAML form that
    ``config.yaml`` holds, so that a config and the same config read back from its run agree."""
    data = {k: v for k, v in yaml.safe_load(dump_config(cfg)).items() if k not in RESUMABLE_KEYS}
    values = _flatten(data)
    text = json.dumps(values, sort_keys=True, default=repr)
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "values": values, "fields": sorted(data)}


def _differences(then: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(then) | set(now)):
        old, new = then.get(key, _MISSING), now.get(key, _MISSING)
        if old != new:
            was = "without it" if old is _MISSING else f"with {old!r}"
            out.append(f"`{key}` is {'not set' if new is _MISSING else repr(new)} in config.yaml, but the checkpoint "
                       f"was trained {was}")
    return out


def _mismatch(model_path: Path, differences: list[str]) -> UserError:
    config = model_path.parent.parent / "config.yaml"
    return UserError(
        f"{config} no longer matches the checkpoint the run would resume from ({model_path.name}): "
        + "; ".join(differences) + ". A resumed run keeps the config it was trained with: put these values "
        "back, or train a new run with them (`neuromod-rl train CONFIG`). A resume may change only n_timesteps "
        f"(--set n_timesteps=N) and, in config.yaml, {', '.join(RESUMABLE_KEYS[1:])}. Nothing was written."
    )


def check_config(cfg: ExperimentConfig, state: dict[str, Any], model_path: Path, state_path: Path) -> bool:
    """Refuse (a :class:`UserError` naming each key, its value and the checkpoint's) a ``cfg`` that differs
    from the fingerprint ``state`` recorded in a key a resume may not change. ``False`` when the state
    has no fingerprint (written before they existed): then :func:`check_recorded` compares what it can."""
    stored = state.get("config")
    if stored is None:
        return False
    if not (isinstance(stored, dict) and isinstance(stored.get("values"), dict)):
        raise _corrupt(state_path, model_path, "its config fingerprint is not readable")
    now = config_fingerprint(cfg)
    if stored.get("sha256") != now["sha256"]:
        fields = stored.get("fields")

        def added_since(key: str) -> bool:  # a config key newer than the checkpoint, left at its default
            top = key.partition(".")[0]
            info = ExperimentConfig.model_fields.get(top)
            return (isinstance(fields, list) and top not in fields and info is not None
                    and getattr(cfg, top) == info.get_default(call_default_factory=True))

        differences = _differences(stored["values"], {k: v for k, v in now["values"].items() if not added_since(k)})
        if differences:
            raise _mismatch(model_path, differences)
    return True


def _class_name(pickled: str) -> str:
    """``module.Name`` of a class pickled by reference, read from the pickle's opcodes (nothing runs)."""
    try:
        strings = [arg for _, arg, _ in pickletools.genops(base64.b64decode(pickled)) if isinstance(arg, str)]
    except Exception:  # noqa: BLE001  (not a pickle: compared as it is)
        return pickled
    return ".".join(strings[-2:])


def _readable(value: Any) -> Any:
    """A value of SB3's ``data`` JSON: an object (stored pickled) as its type and plain attributes, a class
    as its name (its attributes, as SB3 lists them, hold addresses that differ from process to process)."""
    if not (isinstance(value, dict) and ":serialized:" in value):
        return value
    attributes = {k: v for k, v in value.items() if not k.startswith(":")}
    if "__module__" in attributes:
        return _Shown(_class_name(value[":serialized:"]))
    kind = str(value.get(":type:", "")).removeprefix("<class '").removesuffix("'>")
    if kind == "dict":
        return attributes
    return _Shown(f"{kind.rpartition('.')[2]}(" + ", ".join(f"{k}={v!r}" for k, v in attributes.items()) + ")")


def recorded_settings(model_zip: Path | bytes) -> dict[str, Any]:
    """The settings an SB3 zip records (its ``data`` JSON), read without unpickling anything."""
    source = io.BytesIO(model_zip) if isinstance(model_zip, bytes) else model_zip
    with zipfile.ZipFile(source) as z:
        data = json.loads(z.read("data"))
    return {key: _readable(value) for key, value in data.items()}


def _as_config(recorded: Mapping[str, Any], arguments: set[str]) -> dict[str, Any]:
    """Recorded settings under the config keys that set them."""
    out: dict[str, Any] = {}
    for key, value in recorded.items():
        if key == "policy_kwargs" and isinstance(value, dict):
            out.update({f"policy_kwargs.{k}": v for k, v in value.items()})
        elif key in ("n_envs", "seed"):
            out[key] = value
        elif key in arguments:
            out[f"hyperparameters.{key}"] = value
    return out


def check_recorded(cfg: ExperimentConfig, model_path: Path, build: Callable[[], bytes]) -> None:
    """For a checkpoint written before fingerprints: compare ``cfg`` with what the checkpoint's model zip
    records (its algorithm's settings, ``policy_kwargs``, ``n_envs``, ``seed``) against the zip of a model
    that ``build()`` makes from ``cfg``. The env, its wrappers and ``normalize`` are not recorded there,
    so they are not compared (a warning says so). A :class:`UserError` names what differs."""
    warnings.warn(
        f"checkpoint {model_path.name} has no record of its config (it predates config fingerprints): config.yaml "
        "is compared with the settings its model records (algorithm, policy_kwargs, hyperparameters, n_envs, seed), "
        "not env, env_kwargs, wrappers or normalize",
        RuntimeWarning,
        stacklevel=3,
    )
    try:
        then = recorded_settings(model_path)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError):
        return  # a damaged zip: loading it says so, and how to fall back to the previous checkpoint
    cls = algo_class(cfg.algo)
    own, others = set(algo_arguments(cls)), set()
    for name in ALGOS:
        try:
            others |= set(algo_arguments(algo_class(name)))
        except UserError:  # not installed here, so none of its checkpoints is loaded here either
            continue
    try:  # what the algorithm stores of its own accord: SB3's load starts from just such a bare instance
        stored = set(vars(cls(policy=cfg.policy, env=None, _init_setup_model=False))) & others
    except Exception:  # noqa: BLE001  (a policy it does not know...: building the model below says what)
        stored = set(then) & others
    foreign, lacking = sorted(others & set(then) - stored), sorted(stored - set(then))
    if foreign or lacking:
        parts = [f"holds settings that {cfg.algo} does not have ({', '.join(foreign)})"] if foreign else []
        parts += [f"lacks settings that {cfg.algo} records ({', '.join(lacking)})"] if lacking else []
        raise _mismatch(model_path, [f"`algo` is {cfg.algo!r} in config.yaml, but the checkpoint " + " and ".join(parts)
                                     + ": it was trained by another algorithm"])
    differences = _differences(_as_config(then, own), _as_config(recorded_settings(build()), own))
    if differences:
        raise _mismatch(model_path, differences)
