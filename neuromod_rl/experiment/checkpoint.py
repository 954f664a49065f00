"""What a training checkpoint holds, how it is taken at a rollout start, and how it is put back.

A checkpoint holds everything the next rollout depends on: the SB3 model zip (weights, optimizer,
counters, ``_last_obs``, recurrent state), the replay buffer of off-policy algorithms (the zip leaves
it out), the torch / numpy / Python RNG states, and the in-process VecEnv itself (pickled with its
envs' generators and mid-episode state). Putting all of it back makes a resumed run compute the same
updates as an uninterrupted one with the same seed. Where an env cannot be pickled (MuJoCo bodies),
the state holds no VecEnv and the resume rebuilds and reseeds the envs instead.
"""

from __future__ import annotations

import importlib
import io
import pickle
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import torch
from gymnasium.utils import EzPickle
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor

from neuromod_rl.experiment import normalize
from neuromod_rl.experiment.config import ExperimentConfig
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.runs import InterruptGuard, Run, atomic_write_text, write_checkpoint

STATE_FORMAT = 1


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


def snapshot(model, env) -> tuple[bytes, bytes]:
    """Serialise everything the next rollout depends on: ``(model zip bytes, state pickle bytes)``."""
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


def save_checkpoint(run: Run, model, monitor) -> None:
    """``write_checkpoint`` of the current state, unless the weights went non-finite: then nothing is
    written (the last good checkpoint stays the latest) and training stops with a message saying so."""
    bad = non_finite_weight(model)
    if bad is not None:
        raise FloatingPointError(
            f"the policy's weight {bad!r} holds NaN/inf after an update (training diverged: a huge reward or too "
            "large a learning rate); this state is not checkpointed"
        )
    write_checkpoint(run, model.num_timesteps, *snapshot(model, monitor))


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
                save_checkpoint(run, self.model, self.model.env)
                self.last_saved = step
            # stop only once the state at a rollout start is on disk (an exact resume point)
            self.stopped = guard.requested and self.last_saved == step

        def _on_step(self) -> bool:
            return not self.stopped

    return CheckpointCallback()


def restore_monitor_files(run: Run, rows: dict[str, int]) -> None:
    """Drop episodes logged after the checkpoint (they will be run again), keeping them aside in a
    ``.discarded`` file rather than deleting anything."""
    for path in sorted(run.monitor.glob("*.monitor.csv")):
        keep = rows.get(path.name)
        lines = path.read_text().splitlines(keepends=True)
        keep = 0 if keep is None else keep
        if len(lines) - 2 > keep:
            dropped = lines[2 + keep:]
            atomic_write_text(path.with_name(path.name + f".{int(time.time())}.discarded"), "".join(dropped))
            if keep == 0 and path.name not in rows:
                path.unlink()
            else:
                atomic_write_text(path, "".join(lines[: 2 + keep]))


def read_state(state_path: Path, model_path: Path) -> dict[str, Any]:
    """The state pickle written by :func:`snapshot`, or a :class:`UserError` saying how to fall back to
    the previous checkpoint when it is damaged."""
    try:
        state = pickle.loads(state_path.read_bytes())
        assert state["format"] == STATE_FORMAT
    except Exception as err:  # noqa: BLE001  (any damage must become a clear message)
        raise UserError(
            f"checkpoint {state_path} is corrupt or not from this version of neuromod-rl ({type(err).__name__}). "
            f"Delete {state_path.name} and {model_path.name} (and checkpoints/latest.json) to resume from the "
            "previous checkpoint."
        ) from None
    return state


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
