"""``neuromod-rl eval``: run a trained agent on held-out (or training) tasks and keep every step.

Adaptation is a property *within* an episode, so evaluation stores per-step traces, not only
returns: reward, bandit regret and the task-switch step of each episode (``eval/<split>.npz``),
and a summary (``eval/<split>.json``, also in ``metrics.json``) with the early/late reward
contrast that the report uses to say whether the agent adapts.

Tasks come from the env's own train/test split (``task_split(seed)``, fixed by the run's seed),
one task per episode in turn; episodes are seeded ``EVAL_SEED_OFFSET + seed + i``, so evaluation
is deterministic and never reuses a training seed. Envs run in lockstep batches so that the
policy is queried once per time step for the whole batch.

What a command will read (``metrics.json``, saved traces) and the room it will write into are
checked before its rollout starts, so a damaged file or a full disk costs no evaluation.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from neuromod_rl.experiment import normalize
from neuromod_rl.experiment.algos import algo_class
from neuromod_rl.experiment.config import ExperimentConfig, load_yaml, validate
from neuromod_rl.experiment.environment import make_env
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.runs import Run, RunLock, atomic_write_bytes, read_json, update_json, write_json

EVAL_SEED_OFFSET = 1_000_000
MAX_EPISODES = 100_000  # as the config's eval.episodes: traces are [episodes, T] arrays in memory
MAX_EPISODE_STEPS = 100_000  # a guard against envs that never end
BATCH = 32
TRACE_KEYS = ("rewards", "regret", "lengths", "returns", "switch_at")  # what summaries and plots read
PROBE_BYTES = 4 * 2**20  # the largest probe write of check_room
METRICS_REMEDY = ("It holds the run's train and eval summaries: delete it (eval and report write it again, a resumed "
                  "run its train section), then run the command again.")


def load_run(run_dir: str | Path) -> tuple[Run, ExperimentConfig]:
    run = Run.open(run_dir)
    cfg = validate(load_yaml(run.config), str(run.config))
    torch.set_num_threads(cfg.torch_threads)
    return run, cfg


def read_mapping(path: Path, remedy: str) -> dict[str, Any] | None:
    """The JSON object in ``path`` (``None`` when there is no file); a :class:`UserError` naming the file
    when it is damaged or holds anything else (``remedy`` says what to do)."""
    data = read_json(path)
    if data is not None and not isinstance(data, dict):
        raise UserError(f"{path} holds a {type(data).__name__}, not a JSON object of named sections: the file is "
                        f"damaged. {remedy}")
    return data


def check_room(folder: Path, need: int, what: str) -> None:
    """Refuse to start ``what`` when ``folder`` cannot take ``need`` more bytes: the disk has less free, or
    a probe write of that size (:data:`PROBE_BYTES` at most; removed again) fails, as a quota, a file
    size limit or a read-only mount makes it fail. Work that would fail at its first save never starts."""
    free = shutil.disk_usage(folder).free
    if free < need:
        raise UserError(
            f"{what} needs about {need:,} bytes in {folder}, but the disk has only {free:,} bytes free. Free disk "
            "space, then run the command again (nothing was written)."
        )
    probe = None
    try:
        fd, probe = tempfile.mkstemp(prefix=".neuromod-rl.", suffix=".probe", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(bytes(min(need, PROBE_BYTES)))
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise UserError(
            f"cannot write in {folder} ({err.strerror}), so {what} could not save its results. Free disk space or "
            "fix the folder's permissions or quota, then run the command again (nothing was written)."
        ) from None
    finally:
        if probe is not None and os.path.exists(probe):
            os.unlink(probe)


def load_model(run: Run, cfg: ExperimentConfig):
    """The run's final model (else its newest checkpoint); damage becomes a clear :class:`UserError`."""
    path = run.model_path()
    try:
        return algo_class(cfg.algo).load(path, device="cpu")
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001
        raise UserError(
            f"cannot load the model {path} ({type(err).__name__}: {err}). The file is damaged or was written by "
            f"another version; retrain, or resume from a checkpoint with `neuromod-rl train --resume {run.path}`."
        ) from None


def task_list(cfg: ExperimentConfig, split: str) -> list[Any] | None:
    """The env's fixed tasks for ``split`` (``None`` when the env has no task protocol)."""
    env = make_env(cfg)
    try:
        base = env.unwrapped
        if not hasattr(base, "task_split"):
            return None
        train, test = base.task_split(cfg.seed, n_train=cfg.eval.n_train_tasks, n_test=cfg.eval.n_test_tasks)
        return train if split == "train" else test
    finally:
        env.close()


def rollout(cfg: ExperimentConfig, model, episodes: int, tasks: list[Any] | None, seed: int,
            deterministic: bool, progress: bool = True, desc: str = "eval", normalizer=None,
            batch: int = BATCH, info_keys: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Run ``episodes`` episodes; per-step arrays are ``[episodes, T_max]``, NaN-padded after an episode ends.

    ``normalizer``: the run's frozen observation normalisation (:func:`neuromod_rl.experiment.normalize.load`),
    applied to what the policy sees; ``batch``: envs run in lockstep (one policy call per step for all);
    ``info_keys``: numeric ``info`` entries to keep per step as ``info_<key>`` (e.g. ``x_velocity``).
    """
    rewards: list[list[float]] = []
    regrets: list[list[float]] = []
    extras: dict[str, list[list[float]]] = {k: [] for k in info_keys}
    switch_at = np.full(episodes, -1, dtype=np.int64)
    see = (lambda o: o) if normalizer is None else normalizer
    bar = tqdm(total=episodes, desc=desc, unit="ep", disable=not progress, file=sys.stderr)
    for first in range(0, episodes, batch):
        n = min(batch, episodes - first)
        envs = [make_env(cfg) for _ in range(n)]
        obs = []
        for j, env in enumerate(envs):
            options = None if tasks is None else {"task": tasks[(first + j) % len(tasks)]}
            o, _ = env.reset(seed=seed + first + j, options=options)
            obs.append(o)
        obs_arr = np.stack(obs)
        state, starts = None, np.ones(n, dtype=bool)
        active = np.ones(n, dtype=bool)
        ep_r = [[] for _ in range(n)]
        ep_g = [[] for _ in range(n)]
        ep_x = {k: [[] for _ in range(n)] for k in info_keys}
        t = 0
        while active.any() and t < MAX_EPISODE_STEPS:
            actions, state = model.predict(see(obs_arr), state=state, episode_start=starts,
                                           deterministic=deterministic)
            starts = np.zeros(n, dtype=bool)
            for j in np.flatnonzero(active):
                o, r, term, trunc, info = envs[j].step(actions[j])
                obs_arr[j] = o
                ep_r[j].append(float(r))
                ep_g[j].append(float(info.get("regret", np.nan)))
                for k in info_keys:
                    ep_x[k][j].append(float(info.get(k, np.nan)))
                if info.get("task_switched") and switch_at[first + j] < 0:
                    switch_at[first + j] = t
                if term or trunc:
                    active[j] = False
                    bar.update(1)
            t += 1
        for env in envs:
            env.close()
        rewards += ep_r
        regrets += ep_g
        for k in info_keys:
            extras[k] += ep_x[k]
    bar.close()
    T = max(len(r) for r in rewards)
    pad = lambda rows: np.array([r + [np.nan] * (T - len(r)) for r in rows], dtype=np.float64)  # noqa: E731
    rew = pad(rewards)
    return {
        "rewards": rew,
        "regret": pad(regrets),
        "lengths": np.array([len(r) for r in rewards], dtype=np.int64),
        "returns": np.nansum(rew, axis=1),
        "switch_at": switch_at,
        **{f"info_{k}": pad(v) for k, v in extras.items()},
    }


def summarize(traces: dict[str, np.ndarray]) -> dict[str, Any]:
    """Numbers the report and ``compare`` print. ``early``/``late``: mean reward per step in the first
    10% and last 20% of each episode's steps (after the switch when there is one); their difference
    is the in-episode adaptation gain."""
    rew, returns = traces["rewards"], traces["returns"]
    early, late = [], []
    for i, length in enumerate(traces["lengths"]):
        s = max(int(traces["switch_at"][i]), 0)
        seg = rew[i, s:length]
        if len(seg) >= 5:
            early.append(np.mean(seg[: max(1, len(seg) // 10)]))
            late.append(np.mean(seg[-max(1, len(seg) // 5):]))
    out: dict[str, Any] = {
        "episodes": int(len(returns)),
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "median_return": float(np.median(returns)),
        "mean_length": float(np.mean(traces["lengths"])),
    }
    if early:
        out.update(early_reward_per_step=float(np.mean(early)), late_reward_per_step=float(np.mean(late)),
                   adaptation_gain=float(np.mean(late) - np.mean(early)))
    if np.isfinite(traces["regret"]).any():
        out["mean_cumulative_regret"] = float(np.mean(np.nansum(traces["regret"], axis=1)))
    if (traces["switch_at"] >= 0).any():
        out["episodes_with_switch"] = int((traces["switch_at"] >= 0).sum())
    return out


def evaluate(run_dir: str | Path, split: str = "test", episodes: int | None = None,
             deterministic: bool | None = None, progress: bool = True) -> dict[str, Any]:
    """Evaluate a run on ``split`` tasks; write ``eval/<split>.npz`` and ``.json``; return the summary."""
    if split not in ("train", "test"):
        raise UserError(f"--tasks {split!r} is not valid; allowed values: ['train', 'test']")
    n = episodes
    if n is not None and not 1 <= n <= MAX_EPISODES:
        raise UserError(f"--episodes {n} is not valid; pass a number of episodes from 1 to {MAX_EPISODES}, e.g. 50")
    run, cfg = load_run(run_dir)
    with RunLock(run, f"eval --tasks {split}"):
        read_mapping(run.metrics, METRICS_REMEDY)  # updated at the end: a damaged one would waste the rollout
        check_room(run.path, 2**20, "eval")
        return _evaluate(run, cfg, split, cfg.eval.episodes if n is None else n, deterministic, progress)


def _evaluate(run: Run, cfg: ExperimentConfig, split: str, n: int, deterministic: bool | None,
              progress: bool) -> dict[str, Any]:
    model = load_model(run, cfg)
    det = cfg.eval.deterministic if deterministic is None else deterministic
    tasks = task_list(cfg, split)
    traces = rollout(cfg, model, n, tasks, EVAL_SEED_OFFSET + cfg.seed, det, progress, desc=f"eval {split}",
                     normalizer=normalize.load(run))
    summary = summarize(traces)
    summary.update(split=split, deterministic=det, tasks="env task_split" if tasks is not None else "env sampling")
    run.eval_dir.mkdir(exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, **traces)
    atomic_write_bytes(run.eval_dir / f"{split}.npz", buf.getvalue())
    write_json(run.eval_dir / f"{split}.json", summary)
    update_json(run.metrics, f"eval_{split}", summary)
    return summary


def load_traces(run: Run, split: str) -> dict[str, np.ndarray] | None:
    """The traces ``evaluate`` saved, or ``None`` if that split was not evaluated."""
    path = run.eval_dir / f"{split}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            traces = {k: data[k] for k in data.files}
    except Exception:  # noqa: BLE001
        traces = {}
    if not set(TRACE_KEYS) <= set(traces):
        raise UserError(f"{path} is damaged; re-create it with `neuromod-rl eval {run.path} --tasks {split}`.")
    return traces


def eval_summary(run: Run, split: str) -> dict[str, Any] | None:
    """The summary ``evaluate`` saved for ``split`` (``None`` if not evaluated); damage is a :class:`UserError`."""
    return read_mapping(run.eval_dir / f"{split}.json",
                        f"Re-create it with `neuromod-rl eval {run.path} --tasks {split}`.")
