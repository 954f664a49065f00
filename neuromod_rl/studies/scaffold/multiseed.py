"""Multi-seed machinery every study shares: one run per (agent, seed), checkpointed progress,
median and interquartile range (IQR) over seeds, tables and curve plots.

Progress lives in ``<out>/<study>.<scale>.runs.json``: for every (agent, seed) its result (a JSON
dict of numbers and short curves), the wall time it took and a *fingerprint* of everything the
result depends on (the agent's resolved settings). A study that is stopped and started again skips
the finished pairs whose fingerprint still matches, so changing one agent's settings (say, the
default plastic core) re-runs that agent only. (A study's runs also resume from their own
training checkpoints: see :mod:`.rl`.)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import multiprocessing as mp
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

import neuromod_rl
from neuromod_rl.experiment.markdown import markdown_table
from neuromod_rl.experiment.runs import read_json, write_json
from neuromod_rl.studies.scaffold.report import WALL_TIMES, Report, settings_dict

FORMAT = 1


@functools.cache
def code_version() -> str:
    """The package version; from a git clone also its commit, marked ``.dirty`` when tracked files differ
    from it. Each stored result records it, so a report can say which code produced which run."""
    version = neuromod_rl.__version__
    root = Path(neuromod_rl.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return version
    try:
        git = ["git", "-C", str(root)]
        commit = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                                timeout=30, check=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}" + (".dirty" if dirty else "")


@dataclass(frozen=True)
class StudyOptions:
    """Command-line choices of a study that are not part of its scale.

    ``seeds``: how many seeds (``None``: the scale's own number, at least 3); ``workers``: runs
    trained at once, each a process with one torch thread; ``runs_dir``: where the studies' run
    directories (models, checkpoints, monitor logs) go; ``budget``: env steps per RL run instead of
    the scale's (every agent gets the same); ``tasks``: a study with several tasks runs only these
    (``None``: all of the scale's); ``core``: the Backpropamine studies' plastic core (``None``: the
    library's default core)."""

    seeds: int | None = None
    workers: int = 1
    runs_dir: Path = Path("runs/reproduce")
    budget: int | None = None
    tasks: tuple[str, ...] | None = None
    core: str | None = None

    def scale(self, scale):
        """``scale`` (a dataclass with ``n_timesteps``) with the ``budget`` applied."""
        return scale if self.budget is None else dataclasses.replace(scale, n_timesteps=self.budget)


def fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-able description (sorted keys; non-JSON values by ``repr``)."""
    text = json.dumps(obj, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def seed_list(master: int, n: int) -> list[int]:
    """The seeds of a study: ``master, master + 1, ...`` (never chosen by looking at results)."""
    if n < 1:
        raise ValueError(f"a study needs at least one seed, got {n}")
    return [master + k for k in range(n)]


class Progress:
    """The per-(agent, seed) results of one study at one scale, saved after every result."""

    def __init__(self, out: Path, study: str, scale: str):
        self.path = Path(out) / f"{study}.{scale}.runs.json"
        data = read_json(self.path, None)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            data = {"format": FORMAT, "study": study, "scale": scale, "runs": {}}
        self.data = data

    @staticmethod
    def key(agent: str, seed: int) -> str:
        return f"{agent}/seed{seed}"

    def result(self, agent: str, seed: int, fp: str) -> dict[str, Any] | None:
        """The result of (agent, seed) if it was computed with fingerprint ``fp``, else ``None``."""
        e = self.data["runs"].get(self.key(agent, seed), {})
        return e.get("result") if e.get("fingerprint") == fp else None

    def put(self, agent: str, seed: int, fp: str, result: dict[str, Any], seconds: float) -> None:
        """Store a result. One recomputed from the same run directory as the stored one (a new evaluation
        of a reused trained run) adds its time to the stored time, which holds the training."""
        old = self.data["runs"].get(self.key(agent, seed), {})
        entry = {"fingerprint": fp, "result": result, "seconds": round(seconds, 1), "code": code_version()}
        if result.get("run") is not None and old.get("result", {}).get("run") == result["run"]:
            entry["seconds"] = round(seconds + float(old.get("seconds", 0.0)), 1)
            entry["code"] = old.get("code")  # the code that trained the run (None: before versions were kept)
        self.data["runs"][self.key(agent, seed)] = entry
        write_json(self.path, self.data)

    def provenance(self) -> str:
        """A report's sentence on where its runs came from: which were resumed from a training checkpoint
        (their numbers cannot be told apart from a run trained in one go only if training is
        bit-reproducible across a resume) and which code version computed each."""
        runs = self.data["runs"]
        resumed = sorted(k for k, e in runs.items() if e.get("result", {}).get("resumed"))
        versions: dict[str, int] = {}
        for e in runs.values():
            key = e.get("code") or "not recorded (computed before code versions were kept)"
            versions[key] = versions.get(key, 0) + 1
        said = "; ".join(f"{v} ({n} run{'s' * (n != 1)})" for v, n in sorted(versions.items()))
        return (f"Runs resumed from a training checkpoint: {', '.join(resumed) if resumed else 'none recorded'}. "
                f"Code versions: {said}.")

    def seconds(self, agent: str, seed: int) -> float:
        return float(self.data["runs"].get(self.key(agent, seed), {}).get("seconds", 0.0))

    def total_seconds(self) -> float:
        """Compute time of every stored result (the study's cost, across interruptions)."""
        return float(sum(e.get("seconds", 0.0) for e in self.data["runs"].values()))


@dataclass(frozen=True)
class Job:
    """One (agent, seed) of a study: ``fn(agent, seed, *args)`` returns its result (a JSON-able dict).

    ``fp`` fingerprints everything the result depends on. With several workers ``fn`` must be a
    module-level function and ``args`` picklable."""

    agent: str
    seed: int
    fp: str
    fn: Callable[..., dict[str, Any]]
    args: tuple = ()


def _run_job(job: Job) -> tuple[dict[str, Any], float]:
    torch.set_num_threads(1)  # one core per worker: the workers share the machine
    t0 = time.perf_counter()
    return job.fn(job.agent, job.seed, *job.args), time.perf_counter() - t0


def run_jobs(progress: Progress, jobs: Sequence[Job], workers: int = 1,
             log: Callable[[str], None] | None = None) -> dict[tuple[str, int], dict]:
    """Run every job whose result is not in ``progress`` yet (``workers`` processes at once), saving
    each result as it arrives; return ``{(agent, seed): result}`` for all jobs. After each run, ``log``
    (default: stderr) gets ``[k/n] agent seed S: took 12s; ETA ~1m40s`` (:func:`eta`)."""
    log = log or log_stderr
    results: dict[tuple[str, int], dict] = {}
    todo = []
    for job in jobs:
        done = progress.result(job.agent, job.seed, job.fp)
        if done is not None:
            results[(job.agent, job.seed)] = done
        else:
            todo.append(job)
    if len(todo) < len(jobs):
        log(f"{progress.path}: {len(jobs) - len(todo)} of {len(jobs)} runs already done (skipped)")
    t_start = time.perf_counter()
    took: list[float] = []
    parallel = 1 if len(todo) <= 1 else max(workers, 1)

    def finish(k: int, job: Job, result: dict, seconds: float) -> None:
        progress.put(job.agent, job.seed, job.fp, result, seconds)
        results[(job.agent, job.seed)] = result
        took.append(seconds)
        log(f"[{k}/{len(todo)}] {job.agent} seed {job.seed}: took {duration(seconds)}; "
            f"ETA ~{duration(eta(took, len(todo) - k, parallel))}")
        if k == len(todo):
            log(f"{len(todo)} run{'s' * (len(todo) != 1)} done in {duration(time.perf_counter() - t_start)}")

    if parallel == 1:
        for k, job in enumerate(todo, 1):
            log(f"[{k}/{len(todo)}] {job.agent} seed {job.seed} ...")
            t0 = time.perf_counter()
            result = job.fn(job.agent, job.seed, *job.args)
            finish(k, job, result, time.perf_counter() - t0)
        return results

    log(f"{len(todo)} runs on {workers} worker processes")
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_run_job, job): job for job in todo}
        for k, fut in enumerate(as_completed(futures), 1):
            result, seconds = fut.result()
            finish(k, futures[fut], result, seconds)
    return results


def eta(took: Sequence[float], remaining: int, workers: int) -> float:
    """Seconds until ``remaining`` more runs finish: the mean duration of the finished runs (``took``, in
    seconds) times the remaining runs, shared by ``workers`` processes (at most one run each). Runs in
    flight have already started, so the estimate leans long."""
    if remaining <= 0 or not took:
        return 0.0
    return float(np.mean(took)) * remaining / max(min(workers, remaining), 1)


def duration(seconds: float) -> str:
    """A duration to read at a glance: ``42s``, ``3m05s``, ``2h07m``."""
    s = max(int(round(seconds)), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class SeedRuns(NamedTuple):
    """A study whose whole computation for one seed is one job: its report, progress, seeds and results."""

    report: Any  # common.Report
    progress: Progress
    seeds: list[int]
    runs: list[dict[str, Any]]  # one result per seed, in seed order

    def compute_note(self) -> str:
        """The report's compute paragraph: the seeds' summed time, and where measured wall times are."""
        return (f"Compute: {self.progress.total_seconds():.0f} s over all seeds; per-seed numbers in "
                f"`{self.progress.path.name}`. {self.progress.provenance()} {WALL_TIMES}")


def run_seeds(study: str, title: str, scale: str, seed: int, out: Path, command: str, settings: Any, version: str,
              compute: Callable[[str, int, str], dict[str, Any]], options: StudyOptions) -> SeedRuns:
    """Run ``compute("all", seed, scale)`` for every seed (3, 2 at the smoke scale, or ``--seeds``) as one
    job each, fingerprinted by ``settings`` (a dataclass) and ``version``, and start the report."""
    seeds = seed_list(seed, options.seeds or (2 if scale == "smoke" else 3))
    report = Report(study, title, command, seed, scale, settings_dict(settings), seeds=seeds)
    progress = Progress(out, study, scale)
    fp = fingerprint([settings_dict(settings), version])
    per_seed = run_jobs(progress, [Job("all", sd, fp, compute, (scale,)) for sd in seeds], options.workers)
    return SeedRuns(report, progress, seeds, [per_seed[("all", sd)] for sd in seeds])


# ------------------------------------------------------------------------------ statistics
def median_iqr(values: Sequence[float]) -> tuple[float, float, float]:
    """``(median, 25th percentile, 75th percentile)`` ignoring NaNs (NaN if nothing is left)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    return float(np.median(v)), float(np.percentile(v, 25)), float(np.percentile(v, 75))


def fmt_miqr(values: Sequence[float], digits: int = 3) -> str:
    """``"median [q25, q75]"``, e.g. ``"2.91 [2.70, 3.05]"``."""
    m, lo, hi = median_iqr(values)
    if not np.isfinite(m):
        return "n/a"
    return f"{m:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]"


def metric(results: dict[tuple[str, int], dict], agent: str, key: str) -> list[float]:
    """``key`` of every seed of ``agent``, in seed order (``None`` where a seed lacks it)."""
    rows = sorted((seed, r) for (a, seed), r in results.items() if a == agent)
    return [r.get(key) for _, r in rows]


def median_of(results: dict[tuple[str, int], dict], agent: str, key: str) -> float:
    return median_iqr(metric(results, agent, key))[0]


def summary_table(results: dict[tuple[str, int], dict], agents: Sequence[str],
                  columns: Sequence[tuple[str, str]], digits: int = 3) -> str:
    """Markdown table: one row per agent, one column per ``(key, label)``, cells median [IQR] over seeds."""
    rows = [[a, len(metric(results, a, columns[0][0])), *[fmt_miqr(metric(results, a, k), digits) for k, _ in columns]]
            for a in agents]  # fmt: skip
    return markdown_table(["agent", "seeds", *[label for _, label in columns]], rows)


def per_seed_table(results: dict[tuple[str, int], dict], agents: Sequence[str],
                   columns: Sequence[tuple[str, str]], progress: Progress | None = None) -> str:
    """Markdown table of every (agent, seed) with its numbers (and wall time when ``progress`` is given)."""
    rows = []
    for a in agents:
        for (agent, seed), r in sorted(results.items(), key=lambda kv: kv[0][1]):
            if agent == a:
                wall = [f"{progress.seconds(a, seed):.0f}"] if progress is not None else []
                rows.append([a, seed, *[r.get(k, float("nan")) for k, _ in columns], *wall])
    extra = ["wall time (s)"] if progress is not None else []
    return markdown_table(["agent", "seed", *[label for _, label in columns], *extra], rows)


def plot_bands(ax, x: np.ndarray, curves: dict[str, list[Sequence[float]]], ylabel: str, xlabel: str) -> None:
    """One line per agent: the median over its seeds' curves, shaded between the 25th and 75th
    percentiles."""
    for label, seeds in curves.items():
        if not seeds:
            continue
        n = min(len(c) for c in seeds)
        arr = np.asarray([np.asarray(c[:n], dtype=np.float64) for c in seeds])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps stay NaN
            med, lo, hi = np.nanmedian(arr, 0), np.nanpercentile(arr, 25, 0), np.nanpercentile(arr, 75, 0)
        line = ax.plot(x[:n], med, label=f"{label} ({len(seeds)} seeds)")[0]
        ax.fill_between(x[:n], lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
