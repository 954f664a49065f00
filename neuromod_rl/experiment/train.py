"""``neuromod-rl train``: build the model a config describes, train it with checkpoints, resume it.

Exact resume. A checkpoint is taken at the start of a rollout (after the previous update) and holds
everything the next rollout depends on (:mod:`neuromod_rl.experiment.checkpoint` says what). Resuming
restores all of it, so a resumed run computes the same updates as an uninterrupted one with the same
seed. Where an env cannot be pickled (MuJoCo bodies), the envs are rebuilt and reseeded: training
continues correctly but not bit-identically, and a warning says so.

Ctrl-C or SIGTERM sets a flag (:class:`~neuromod_rl.experiment.runs.InterruptGuard`); training runs
to the next rollout start (a fraction of a second to a few seconds), saves a checkpoint there and stops.

With ``eval.every_steps`` set, training evaluates on the held-out tasks as it goes and logs ``eval/*``
(:mod:`neuromod_rl.experiment.eval_callback`); that does not change what it trains.

Guarantees on disk: one process writes a run at a time (:class:`~neuromod_rl.experiment.runs.RunLock`);
a checkpoint with NaN/inf weights never becomes the latest (training stops, the last good one stays);
a run whose model cannot be built leaves no directory behind; a resume that fails changes nothing.
Before a resume writes or trains anything it checks ``config.yaml`` against the config the checkpoint
was trained with, every run file it will read (monitor CSVs, ``metrics.json``, the checkpoint with an
ES search state) and the room on the disk for its next checkpoint.
"""

from __future__ import annotations

import io
import pickle
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import torch
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat
from stable_baselines3.common.vec_env import VecMonitor
from torch import nn

from neuromod_rl.experiment import checkpoint, normalize
from neuromod_rl.experiment.algos import algo_class
from neuromod_rl.experiment.config import (
    ExperimentConfig,
    dump_config,
    load_yaml,
    parse_schedule,
    validate,
)
from neuromod_rl.experiment.config_limits import check_memory
from neuromod_rl.experiment.curves import check_monitor, load_monitor
from neuromod_rl.experiment.environment import build_vec_env
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.eval_callback import PeriodicEval
from neuromod_rl.experiment.evaluate import METRICS_REMEDY, check_room, read_mapping
from neuromod_rl.experiment.runs import (
    InterruptGuard,
    Run,
    RunLock,
    atomic_write_bytes,
    atomic_write_text,
    latest_checkpoint,
    update_json,
)
from neuromod_rl.experiment.safe_yaml import short_repr, truncate
from neuromod_rl.experiment.wandb_logging import WandbLogger, WandbSettings, init_wandb, make_output_format

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
        f"cannot build {cfg.algo} with policy {cfg.policy!r}, policy_kwargs {short_repr(cfg.policy_kwargs)} and "
        f"hyperparameters {short_repr(cfg.hyperparameters)}: {truncate(str(err))}. Fix those keys in the config (or "
        "with --set)."
    )


def build_model(cfg: ExperimentConfig, venv):
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
    run.monitor.mkdir(parents=True, exist_ok=True)
    segment = len(list(run.monitor.glob("*.monitor.csv")))
    return VecMonitor(venv, filename=str(run.monitor / f"seg{segment:03d}")), segment


def _logger(run: Run, segment: int, wandb: WandbLogger):
    run.tb.mkdir(parents=True, exist_ok=True)
    formats = [CSVOutputFormat(str(run.tb / f"progress-{segment:03d}.csv")), TensorBoardOutputFormat(str(run.tb))]
    if wandb.active:
        formats.append(make_output_format(wandb))
    return Logger(folder=str(run.tb), output_formats=formats)


# ------------------------------------------------------------------------------ train / resume
def _learn(run: Run, cfg: ExperimentConfig, model, monitor, segment: int, opts: TrainOptions,
           wandb: WandbLogger, resumed: bool) -> TrainResult:
    model.set_logger(_logger(run, segment, wandb))
    remaining = cfg.n_timesteps - model.num_timesteps
    start, start_steps = time.time(), model.num_timesteps
    with InterruptGuard() as guard:
        ckpt = checkpoint.make_checkpoint_callback(run, cfg, guard)
        periodic = [PeriodicEval(cfg)] if cfg.eval.every_steps else []
        callbacks = CallbackList([ckpt, *periodic, *opts.callbacks])
        try:
            model.learn(remaining, callback=callbacks, reset_num_timesteps=not resumed, progress_bar=opts.progress)
            if not ckpt.stopped:
                checkpoint.save_checkpoint(run, model, monitor, cfg)
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


def resume(run_dir: str | Path, overrides: list[str], opts: TrainOptions) -> TrainResult:
    """Continue ``run_dir`` from its newest checkpoint (``--set n_timesteps=N`` extends training).
    Everything that can fail (config, checkpoint, envs, model) is loaded before anything is written."""
    run = Run.open(run_dir)
    with RunLock(run, "train --resume"):
        return _resume(run, overrides, opts)


def _model_zip(cfg: ExperimentConfig) -> bytes:
    """The zip of a model built from ``cfg`` on envs of its own (what a checkpoint of ``cfg`` would record)."""
    venv = build_vec_env(cfg)
    try:
        buf = io.BytesIO()
        build_model(cfg, venv).save(buf)
        return buf.getvalue()
    finally:
        venv.close()


def _resume(run: Run, overrides: list[str], opts: TrainOptions) -> TrainResult:
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
    state = checkpoint.read_state(state_path, model_path)
    if not checkpoint.check_config(cfg, state, model_path, state_path):  # a checkpoint from before fingerprints
        checkpoint.check_recorded(cfg, model_path, lambda: _model_zip(cfg))
    check_monitor(run, state["monitor"]["rows"])
    read_mapping(run.metrics, METRICS_REMEDY)
    # a checkpoint, then the final model: a disk too full for them would fail after a whole segment
    check_room(run.checkpoints, 2 * model_path.stat().st_size + state_path.stat().st_size + 2**20, "the resume")
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
        if hasattr(model, "restore_search"):  # ES: its search state is read at the first generation otherwise
            model.restore_search()
        replay = None if state.get("replay_buffer") is None else pickle.loads(state["replay_buffer"])
    except Exception as err:  # noqa: BLE001
        venv.close()
        raise UserError(
            f"checkpoint {model_path} cannot be loaded ({type(err).__name__}: {err}). If it is damaged, delete it, "
            f"{state_path.name} and checkpoints/latest.json to resume from the previous checkpoint."
        ) from None
    # nothing was written so far: from here on the run directory changes
    atomic_write_text(run.config, dump_config(cfg))
    checkpoint.restore_monitor_files(run, state["monitor"]["rows"])
    monitor, segment = _monitor(run, venv)
    if state["venv"] is not None:
        checkpoint.restore_episode_counters(monitor, state)
    model.set_env(normalize.restore(cfg, monitor, stats), force_reset=False)
    if replay is not None:
        model.replay_buffer = replay
        model.replay_buffer.device = model.device
    if state["venv"] is None:
        model._last_obs = None  # the rebuilt envs must be reset by learn()
        venv.seed(cfg.seed + step)
    else:
        checkpoint.restore_next_rollout(model, state)
    print(f"Resuming {run.path} from step {step} of {cfg.n_timesteps}", file=sys.stderr)
    wandb = init_wandb(opts.wandb, run, cfg.model_dump())
    # the RNGs last, after everything that might draw from them (wandb, model loading)
    checkpoint.restore_rngs(state)
    return _learn(run, cfg, model, monitor, segment, opts, wandb, resumed=True)
