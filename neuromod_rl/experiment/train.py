"""``neuromod-rl train``: build the model a config describes, train it with checkpoints, resume it.

Exact resume. A checkpoint is taken at the start of a rollout (after the previous update), and
holds everything the next rollout depends on: the SB3 model zip (weights, optimizer, counters,
``_last_obs``, recurrent state), the replay buffer of off-policy algorithms (the zip leaves it out),
the torch / numpy / Python RNG states, and the in-process VecEnv itself (pickled with its envs'
generators and mid-episode state). Resuming restores all of it, so a resumed run computes the same
updates as an uninterrupted one with the same seed. Where an env cannot be pickled (MuJoCo bodies),
the envs are rebuilt and reseeded: training continues correctly but not bit-identically, and a
warning says so.

Ctrl-C or SIGTERM sets a flag (:class:`~neuromod_rl.experiment.runs.InterruptGuard`); training runs
to the next rollout start (a fraction of a second to a few seconds), saves a checkpoint there and stops.

Guarantees on disk: one process writes a run at a time (:class:`~neuromod_rl.experiment.runs.RunLock`);
a checkpoint with NaN/inf weights never becomes the latest (training stops, the last good one stays);
a run whose model cannot be built leaves no directory behind; a resume that fails changes nothing.
"""

from __future__ import annotations

import io
import pickle
import random
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuromod_rl.experiment import normalize
from neuromod_rl.experiment.algos import algo_class
from neuromod_rl.experiment.config import (
    ExperimentConfig,
    check_memory,
    dump_config,
    load_yaml,
    parse_schedule,
    validate,
)
from neuromod_rl.experiment.environment import build_vec_env
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.runs import (
    InterruptGuard,
    Run,
    RunLock,
    atomic_write_bytes,
    atomic_write_text,
    latest_checkpoint,
    update_json,
    write_checkpoint,
)
from neuromod_rl.experiment.wandb_logging import WandbLogger, WandbSettings, init_wandb, make_output_format

STATE_FORMAT = 1
_ACTIVATIONS = {"tanh": "Tanh", "relu": "ReLU", "elu": "ELU", "leaky_relu": "LeakyReLU", "gelu": "GELU"}


@dataclass
class TrainOptions:
    """Command-line choices that are not part of the experiment itself."""

    runs_dir: Path = Path("runs")
    wandb: WandbSettings = field(default_factory=WandbSettings)
    progress: bool = True
    callbacks: list[Any] = field(default_factory=list)  # extra SB3 callbacks (tests, notebooks)


@dataclass
class TrainResult:
    run: Run
    finished: bool  # False when stopped by Ctrl-C or SIGTERM (a checkpoint was saved)
    num_timesteps: int
    wandb: WandbLogger
    stopped_by: int | None = None  # the signal that stopped training (SIGINT, SIGTERM)


# ------------------------------------------------------------------------------ model construction
def policy_kwargs(cfg: ExperimentConfig) -> dict[str, Any]:
    """``policy_kwargs`` with YAML-friendly spellings resolved (``activation_fn: tanh`` -> ``nn.Tanh``)."""
    kwargs = dict(cfg.policy_kwargs)
    act = kwargs.get("activation_fn")
    if isinstance(act, str):
        from torch import nn

        if act not in _ACTIVATIONS:
            raise UserError(
                f"key `policy_kwargs.activation_fn` has value {act!r}; allowed values: {sorted(_ACTIVATIONS)}"
            )
        kwargs["activation_fn"] = getattr(nn, _ACTIVATIONS[act])
    return kwargs


def hyperparameters(cfg: ExperimentConfig) -> dict[str, Any]:
    """The algorithm's constructor arguments, with ``lin_`` schedules turned into SB3 schedules."""
    return {k: parse_schedule(v, k) for k, v in cfg.hyperparameters.items()}


def _construct_error(cfg: ExperimentConfig, err: Exception) -> UserError:
    return UserError(
        f"cannot build {cfg.algo} with policy {cfg.policy!r}, policy_kwargs {cfg.policy_kwargs!r} and "
        f"hyperparameters {cfg.hyperparameters!r}: {err}. Fix those keys in the config (or with --set)."
    )


def build_model(cfg: ExperimentConfig, venv):
    import torch

    check_memory(cfg)
    # before the weights are initialised: orthogonal init runs a QR decomposition whose last bits
    # depend on the thread count, so a run is only reproducible with the same count throughout
    torch.set_num_threads(cfg.torch_threads)
    cls = algo_class(cfg.algo)
    try:
        return cls(
            cfg.policy,
            venv,
            policy_kwargs=policy_kwargs(cfg),
            seed=cfg.seed,
            device=cfg.device,
            verbose=0,
            **hyperparameters(cfg),
        )
    except (TypeError, ValueError, AssertionError, RuntimeError, MemoryError) as err:
        # RuntimeError: torch's own refusals (a negative layer size, an allocation that failed)
        raise _construct_error(cfg, err) from None


def check_buildable(cfg: ExperimentConfig) -> None:
    """Build the envs and the model once and throw them away: catches what only the libraries can
    judge (``policy_kwargs`` of the policy, ``env_kwargs`` of the env) as a :class:`UserError`."""
    venv = build_vec_env(cfg)
    try:
        build_model(cfg, venv)
    finally:
        venv.close()


def _monitor(run: Run, venv):
    """Wrap ``venv`` in a VecMonitor writing a new CSV segment (``load_results`` reads them all)."""
    from stable_baselines3.common.vec_env import VecMonitor

    run.monitor.mkdir(parents=True, exist_ok=True)
    segment = len(list(run.monitor.glob("*.monitor.csv")))
    return VecMonitor(venv, filename=str(run.monitor / f"seg{segment:03d}")), segment


def _logger(run: Run, segment: int, wandb: WandbLogger):
    from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat

    run.tb.mkdir(parents=True, exist_ok=True)
    formats = [CSVOutputFormat(str(run.tb / f"progress-{segment:03d}.csv")), TensorBoardOutputFormat(str(run.tb))]
    if wandb.active:
        formats.append(make_output_format(wandb))
    return Logger(folder=str(run.tb), output_formats=formats)


# ------------------------------------------------------------------------------ checkpoints
def _rows(path: Path) -> int:
    with open(path, "rb") as f:
        return max(sum(1 for _ in f) - 2, 0)  # two header lines: JSON metadata, CSV column names


def picklable_state(env) -> bool:
    """True when pickling ``env`` keeps its state. Gymnasium's MuJoCo envs are ``EzPickle``: they
    pickle as their constructor arguments and come back freshly built, which would silently lose
    the episode in progress, so they count as not picklable."""
    from gymnasium.utils import EzPickle

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
    from collections.abc import Mapping

    if not isinstance(value, Mapping):
        return None
    return ("__mapping__", f"{type(value).__module__}:{type(value).__qualname__}", dict(value))


def _unpickle(data: bytes) -> Any:
    import importlib

    value = pickle.loads(data)
    if isinstance(value, tuple) and len(value) == 3 and value[0] == "__mapping__":
        module, _, name = value[1].partition(":")
        return getattr(importlib.import_module(module), name)(**value[2])
    return value


def _find_monitor(env):
    """The ``VecMonitor`` in ``env``'s stack (a ``VecNormalize`` may sit above it)."""
    from stable_baselines3.common.vec_env import VecMonitor

    while not isinstance(env, VecMonitor):
        env = env.venv
    return env


def snapshot(model, env) -> tuple[bytes, bytes]:
    """Serialise everything the next rollout depends on: ``(model zip bytes, state pickle bytes)``."""
    import cloudpickle
    import torch

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
    import torch

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
    from stable_baselines3.common.callbacks import BaseCallback

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


# ------------------------------------------------------------------------------ train / resume
def _learn(run: Run, cfg: ExperimentConfig, model, monitor, segment: int, opts: TrainOptions,
           wandb: WandbLogger, resumed: bool) -> TrainResult:
    from stable_baselines3.common.callbacks import CallbackList

    model.set_logger(_logger(run, segment, wandb))
    remaining = cfg.n_timesteps - model.num_timesteps
    start, start_steps = time.time(), model.num_timesteps
    with InterruptGuard() as guard:
        ckpt = make_checkpoint_callback(run, cfg, guard)
        callbacks = CallbackList([ckpt, *opts.callbacks])
        try:
            model.learn(remaining, callback=callbacks, reset_num_timesteps=not resumed, progress_bar=opts.progress)
            if not ckpt.stopped:
                save_checkpoint(run, model, monitor)
        except FloatingPointError as err:  # NaN/inf: name the source and what is still on disk
            monitor.close()
            reason = str(err).rstrip(".")
            raise UserError(f"training stopped at step {model.num_timesteps}: {reason}. {_last_good(run)}") from None
        if ckpt.stopped:
            print(
                f"Interrupted at step {model.num_timesteps}; checkpoint saved at step {ckpt.last_saved} in {run.path}. "
                f"Resume with: neuromod-rl train --resume {run.path}",
                file=sys.stderr,
            )
            monitor.close()
            return TrainResult(run, False, model.num_timesteps, wandb, guard.signum)
    buf = io.BytesIO()
    model.save(buf)
    atomic_write_bytes(run.model, buf.getvalue())
    normalize.save(run, model)
    monitor.close()
    elapsed = time.time() - start
    stats = train_stats(run)
    stats.update(
        num_timesteps=int(model.num_timesteps),
        wall_seconds_last_segment=round(elapsed, 2),
        steps_per_second_last_segment=round((model.num_timesteps - start_steps) / max(elapsed, 1e-9), 1),
    )
    update_json(run.metrics, "train", stats)
    wandb.summary({f"train/{k}": v for k, v in stats.items()})
    return TrainResult(run, True, model.num_timesteps, wandb)


def _last_good(run: Run) -> str:
    latest = latest_checkpoint(run)
    if latest is None:
        return f"No checkpoint of {run.path} was written."
    return f"The last good checkpoint, step {latest[2]} ({latest[0].name}), stays the latest."


def train_stats(run: Run) -> dict[str, Any]:
    """Episode statistics from the monitor CSVs of every segment."""
    from neuromod_rl.experiment.curves import load_monitor

    df = load_monitor(run)
    if df is None or len(df) == 0:
        return {"episodes": 0}
    tail = df["r"].to_numpy()[-100:]
    return {"episodes": int(len(df)), "mean_return_last_100": float(tail.mean())}


def train(cfg: ExperimentConfig, opts: TrainOptions, run_dir: Path | None = None) -> TrainResult:
    """Train ``cfg`` in a new run directory under ``opts.runs_dir``, or in ``run_dir`` (which must not
    exist yet: callers that name their runs, such as the reproductions, pass it). The directory is
    removed again if the model cannot be built: a failed start leaves nothing behind."""
    check_memory(cfg)
    venv = build_vec_env(cfg)
    if run_dir is None:
        run = Run.create(opts.runs_dir, cfg.name)
    else:
        Path(run_dir).mkdir(parents=True)
        run = Run(run_dir)
    with RunLock(run, "train"):
        wandb = None
        try:
            atomic_write_text(run.config, dump_config(cfg))
            wandb = init_wandb(opts.wandb, run, cfg.model_dump())
            monitor, segment = _monitor(run, venv)
            model = build_model(cfg, normalize.wrap(cfg, monitor))
        except BaseException:
            if wandb is not None:
                wandb.finish()
            venv.close()
            shutil.rmtree(run.path, ignore_errors=True)
            raise
        print(f"Run directory: {run.path}", file=sys.stderr)
        return _learn(run, cfg, model, monitor, segment, opts, wandb, resumed=False)


def _restore_monitor_files(run: Run, rows: dict[str, int]) -> None:
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


def resume(run_dir: str | Path, overrides: list[str], opts: TrainOptions) -> TrainResult:
    """Continue ``run_dir`` from its newest checkpoint (``--set n_timesteps=N`` extends training).
    Everything that can fail (config, checkpoint, envs, model) is loaded before anything is written."""
    run = Run.open(run_dir)
    with RunLock(run, "train --resume"):
        return _resume(run, overrides, opts)


def _resume(run: Run, overrides: list[str], opts: TrainOptions) -> TrainResult:
    import cloudpickle
    import torch

    data = load_yaml(run.config)
    for item in overrides:
        if not item.startswith("n_timesteps="):
            raise UserError(
                f"--set {item!r} cannot be used with --resume: a resumed run keeps its saved config. Only "
                "--set n_timesteps=N (to train longer) is allowed; start a new run to change anything else."
            )
        try:
            data["n_timesteps"] = int(item.partition("=")[2])
        except ValueError:
            raise UserError(f"--set {item!r}: n_timesteps must be an integer, e.g. --set n_timesteps=200000") from None
    cfg = validate(data, str(run.config))
    latest = latest_checkpoint(run)
    if latest is None:
        raise UserError(
            f"run {run.path} has no checkpoint to resume from (it was stopped before the first one). "
            f"Start it again with `neuromod-rl train {run.config}`."
        )
    model_path, state_path, step = latest
    if step >= cfg.n_timesteps:
        raise UserError(
            f"run {run.path} already finished its {cfg.n_timesteps} steps. To train longer, resume with "
            f"--set n_timesteps=N with N > {step}."
        )
    try:
        state = pickle.loads(state_path.read_bytes())
        assert state["format"] == STATE_FORMAT
    except Exception as err:  # noqa: BLE001  (any damage must become a clear message)
        raise UserError(
            f"checkpoint {state_path} is corrupt or not from this version of neuromod-rl ({type(err).__name__}). "
            f"Delete {state_path.name} and {model_path.name} (and checkpoints/latest.json) to resume from the "
            "previous checkpoint."
        ) from None
    stats = normalize.decode(state.get("normalize"))
    if state["venv"] is not None:
        venv = cloudpickle.loads(state["venv"])
    else:
        if getattr(algo_class(cfg.algo), "resume_needs_env_state", True):
            warnings.warn(
                f"the envs of {cfg.env} cannot be saved in a checkpoint, so they are rebuilt and reseeded: the resumed "
                "run continues correctly but is not bit-identical to an uninterrupted one",
                RuntimeWarning,
                stacklevel=2,
            )
        venv = build_vec_env(cfg)
    torch.set_num_threads(cfg.torch_threads)  # as in build_model
    try:
        model = algo_class(cfg.algo).load(model_path, device=cfg.device)
        replay = None if state.get("replay_buffer") is None else pickle.loads(state["replay_buffer"])
    except Exception as err:  # noqa: BLE001
        venv.close()
        raise UserError(
            f"checkpoint {model_path} cannot be loaded ({type(err).__name__}: {err}). If it is damaged, delete it, "
            f"{state_path.name} and checkpoints/latest.json to resume from the previous checkpoint."
        ) from None
    # nothing was written so far: from here on the run directory changes
    atomic_write_text(run.config, dump_config(cfg))
    _restore_monitor_files(run, state["monitor"]["rows"])
    monitor, segment = _monitor(run, venv)
    if state["venv"] is not None:
        monitor.episode_returns = state["monitor"]["episode_returns"]
        monitor.episode_lengths = state["monitor"]["episode_lengths"]
        monitor.episode_count = state["monitor"]["episode_count"]
    model.set_env(normalize.restore(cfg, monitor, stats), force_reset=False)
    if replay is not None:
        model.replay_buffer = replay
        model.replay_buffer.device = model.device
    if state["venv"] is None:
        model._last_obs = None  # the rebuilt envs must be reset by learn()
        venv.seed(cfg.seed + step)
    else:
        for key, value in state["last"].items():
            setattr(model, key, _unpickle(value))
    print(f"Resuming {run.path} from step {step} of {cfg.n_timesteps}", file=sys.stderr)
    wandb = init_wandb(opts.wandb, run, cfg.model_dump())
    # the RNGs last, after everything that might draw from them (wandb, model loading)
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])  # noqa: NPY002  (SB3's rollout buffer draws from it)
    random.setstate(state["rng"]["python"])
    return _learn(run, cfg, model, monitor, segment, opts, wandb, resumed=True)
