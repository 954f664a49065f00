"""The oracle and Markov bounds of ``compare`` and ``report``: the share of the oracle-Markov gap a run closes.

An adaptation result is read against two reference agents trained with the same algorithm and budget
(docs/envs.md, "Oracle, Markov and reactive bounds"): the **oracle** sees the task in its observation
(the ``TaskInObservation`` wrapper), the **Markov** agent the raw observation. A run's share of the gap is

    share = (R - median R_markov) / (median R_oracle - median R_markov)

with ``R`` the mean return on test tasks (``eval/test.json``) and the medians over the bound runs: 0 is
the Markov bound, 1 the oracle. Bound runs are evaluated on their test tasks first when they have not
been, like the runs they bound.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuromod_rl.envs.wrappers import Trial
from neuromod_rl.experiment.config import ExperimentConfig
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.evaluate import METRICS_REMEDY, eval_summary, evaluate, load_run, load_traces, read_mapping
from neuromod_rl.experiment.markdown import markdown_table
from neuromod_rl.experiment.runs import Run

#: the column and summary name of a run's share
SHARE = "share of the oracle-Markov gap closed"


def median_iqr(values: Sequence[float], percent: bool = False) -> str:
    """``median [25%, 75%]`` of ``values`` as text (``-`` when there are none).

    Args:
        values: the numbers, one per run.
        percent: write them as percentages (a share of 0.5 as ``50%``).
    """
    if len(values) == 0:
        return "-"
    q = [np.median(values), np.percentile(values, 25), np.percentile(values, 75)]
    f = (lambda v: f"{v:.0%}") if percent else (lambda v: f"{v:.4g}")  # noqa: E731
    return f"{f(q[0])} [{f(q[1])}, {f(q[2])}]"


def gap_share(value: float, oracle_values: Sequence[float], markov_values: Sequence[float]) -> float:
    """The share of the oracle-Markov gap that ``value`` closes: ``(value - median markov) / (median oracle -
    median markov)``; a :class:`UserError` when the oracle's median is not above the Markov bound's.

    Args:
        value: the run's mean return.
        oracle_values: the mean return of each oracle run (the task in the observation).
        markov_values: the mean return of each Markov run (the raw observation).
    """
    if len(oracle_values) == 0 or len(markov_values) == 0:
        raise ValueError("gap_share needs at least one oracle value and one Markov value")
    oracle, markov = float(np.median(oracle_values)), float(np.median(markov_values))
    if not oracle > markov:  # also refuses NaN
        raise UserError(
            f"the bounds are not separated; train them longer or check the runs: the oracle's median mean_return "
            f"{oracle:.4g} is not above the Markov bound's {markov:.4g}, so there is no gap to close (--oracle takes "
            "the runs that see the task, TaskInObservation; --markov those on the raw observation)."
        )
    return (float(value) - markov) / (oracle - markov)


def _trial_episodes(cfg: ExperimentConfig) -> int:
    """Episodes per scored episode: a return over a ``Trial`` of K episodes is K episodes' worth."""
    for spec in cfg.wrappers:  # read as data: the names the project's Trial answers to
        name, kwargs = next(iter(spec.items())) if isinstance(spec, dict) else (spec, None)
        if name in ("Trial", "neuromod_rl.envs.wrappers.Trial"):
            return int((kwargs or {}).get("episodes", inspect.signature(Trial).parameters["episodes"].default))
    return 1


def _task(cfg: ExperimentConfig) -> str:
    """What makes returns comparable, as text: the env id, its kwargs and the episodes of a trial."""
    return f"{cfg.env} with env_kwargs {cfg.env_kwargs} ({_trial_episodes(cfg)}-episode trials)"


@dataclass
class BoundRuns:
    """The oracle and Markov runs given to a command, opened and checked (nothing evaluated yet)."""

    oracle: list[Run]
    markov: list[Run]
    task: str  # every bound run's task, as :func:`_task` writes it

    @classmethod
    def open(cls, oracle: Sequence[str | Path] | None, markov: Sequence[str | Path] | None) -> BoundRuns | None:
        """The bound runs (``None`` when neither option is given); every file read of them checked.

        Args:
            oracle: run directories of the oracle bound (``--oracle``).
            markov: run directories of the Markov bound (``--markov``).
        """
        if not oracle and not markov:
            return None
        if not oracle or not markov:
            given, missing = ("--oracle", "--markov") if oracle else ("--markov", "--oracle")
            raise UserError(
                f"{given} was given without {missing}: the share of the gap needs both bounds. Pass {missing} "
                "RUN_DIR... too (runs of the same algorithm and budget: --oracle with the task in the observation, "
                "TaskInObservation; --markov on the raw observation), or neither."
            )
        dirs = [*oracle, *markov]
        if len({Path(d).resolve() for d in dirs}) != len(dirs):
            raise UserError("a bound run was given twice (in --oracle or --markov); pass each run once")
        runs: dict[str, list[Run]] = {"oracle": [], "markov": []}
        task = None
        for name, given_dirs in (("oracle", oracle), ("markov", markov)):
            for d in given_dirs:
                run, cfg = load_run(d)
                read_mapping(run.metrics, METRICS_REMEDY)  # evaluating it updates its metrics
                load_traces(run, "test")
                eval_summary(run, "test")
                if task is not None and _task(cfg) != task:
                    raise UserError(
                        f"the bound runs are on different tasks: {run.path} ({name}) is on {_task(cfg)}, "
                        f"{runs['oracle'][0].path} on {task}. Pass bounds trained on one task."
                    )
                task = _task(cfg)
                runs[name].append(run)
        return cls(runs["oracle"], runs["markov"], str(task))

    def check_task(self, run: Run, cfg: ExperimentConfig) -> None:
        """Refuse ``run`` (a :class:`UserError`) unless it is on the bounds' task.

        Args:
            run: a run compared with the bounds.
            cfg: its config.
        """
        if any(run.path.resolve() == b.path.resolve() for b in self.oracle + self.markov) or _task(cfg) == self.task:
            return
        raise UserError(
            f"run {run.path} is on {_task(cfg)}, the bounds (--oracle, --markov) on {self.task}: the share of the "
            "gap compares returns of one task. Pass bounds trained on the same env, env_kwargs and Trial episodes "
            "as the runs."
        )

    def measure(self, episodes: int | None = None, progress: bool = True) -> Bounds:
        """Evaluate the bound runs on test tasks where not done yet and read their mean returns.

        Args:
            episodes: evaluate with this many episodes when a run's saved evaluation has another count
                (``None``: keep any saved evaluation).
            progress: show progress bars while evaluating.
        """
        returns = {name: [_mean_return(r, episodes, progress) for r in runs]
                   for name, runs in (("oracle", self.oracle), ("markov", self.markov))}  # fmt: skip
        bounds = Bounds(self.oracle, self.markov, returns["oracle"], returns["markov"])
        gap_share(0.0, bounds.oracle_returns, bounds.markov_returns)  # refuses bounds that are not separated
        return bounds


def _mean_return(run: Run, episodes: int | None, progress: bool) -> float:
    traces = load_traces(run, "test")
    if traces is None or (episodes is not None and len(traces["returns"]) != episodes):
        evaluate(run.path, "test", episodes, progress=progress)
    value = (eval_summary(run, "test") or {}).get("mean_return")
    if not isinstance(value, int | float):
        raise UserError(f"{run.eval_dir / 'test.json'} has no mean_return: re-create it with `neuromod-rl eval "
                        f"{run.path} --tasks test`.")
    return float(value)


@dataclass
class Bounds:
    """The oracle and Markov runs and their mean returns on test tasks (one per run)."""

    oracle: list[Run]
    markov: list[Run]
    oracle_returns: list[float]
    markov_returns: list[float]

    @property
    def gap(self) -> float:
        """Median oracle return minus median Markov return."""
        return float(np.median(self.oracle_returns) - np.median(self.markov_returns))

    def share(self, value: float) -> float:
        """The share of the gap that a mean return of ``value`` closes (:func:`gap_share`).

        Args:
            value: a run's mean return on test tasks.
        """
        return gap_share(value, self.oracle_returns, self.markov_returns)

    def lines(self) -> list[str]:
        """The Markdown section on the bounds: their returns (median [IQR] over runs), the gap, the formula."""
        rows = [["oracle (task in the observation)", len(self.oracle), median_iqr(self.oracle_returns)],
                ["Markov (raw observation)", len(self.markov), median_iqr(self.markov_returns)]]  # fmt: skip
        return [
            "## Bounds", "",
            "mean_return on test tasks, median [25%, 75%] over the runs of each bound:", "",
            *markdown_table(["bound", "runs", "mean_return"], rows).split("\n"), "",
            f"Gap (oracle minus Markov, medians): {self.gap:.4g}. A run's {SHARE} is (mean_return - Markov median) "
            "/ gap: 0 is the Markov bound, 1 the oracle.", "",
            "Bound runs: oracle " + ", ".join(f"`{r.path}`" for r in self.oracle)
            + "; Markov " + ", ".join(f"`{r.path}`" for r in self.markov) + ".", "",
        ]  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """The bounds as JSON data (for ``metrics.json``)."""
        return {"oracle": float(np.median(self.oracle_returns)), "markov": float(np.median(self.markov_returns)),
                "gap": self.gap, "oracle_runs": [str(r.path) for r in self.oracle],
                "markov_runs": [str(r.path) for r in self.markov]}  # fmt: skip
