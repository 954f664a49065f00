"""Learning-curve data: episodes from a run's monitor CSVs, binned by training step.

Shared by the report (one run), ``compare`` (runs grouped by config, median and IQR over seeds)
and the train summary, so every place computes curves the same way. A monitor file that SB3 could
not read is refused with its name and line (:func:`check_monitor`) before anything reads it.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from stable_baselines3.common.monitor import LoadMonitorResultsError, load_results

from neuromod_rl.experiment.errors import UserError

if TYPE_CHECKING:  # annotations only
    import pandas as pd

    from neuromod_rl.experiment.runs import Run


COLUMNS = ("r", "l", "t")  # return, length, time: what load_results and the curves read


def _fields(line: bytes) -> list[str] | None:
    try:
        return next(csv.reader([line.decode("utf-8")]), [])
    except (UnicodeDecodeError, csv.Error):
        return None


def monitor_file_problem(path: Path, rows: int | None = None) -> str | None:
    """What makes ``path`` unreadable as a monitor CSV (``None`` when nothing does): a JSON header line
    with ``t_start``, a line naming the columns r, l and t, then rows of numbers. ``rows``: check only
    that many (a resume sets the rest aside unread)."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as err:
        return f"it cannot be read: {err.strerror}"
    try:
        header = json.loads(lines[0][1:].decode("utf-8")) if lines and lines[0].startswith(b"#") else None
    except (UnicodeDecodeError, ValueError):
        header = None
    if not (isinstance(header, dict) and isinstance(header.get("t_start"), int | float)):
        return 'line 1 is not the JSON header #{"t_start": ...}'
    columns = _fields(lines[1]) if len(lines) > 1 else None
    if columns is None or not set(COLUMNS) <= set(columns):
        return f"line 2 does not name the columns {', '.join(COLUMNS)}"
    wanted = [columns.index(c) for c in COLUMNS]
    body = lines[2:] if rows is None else lines[2:2 + rows]
    for number, line in enumerate(body, start=3):
        if not line.strip():
            continue  # pandas skips blank lines
        fields = _fields(line)
        if fields is None or len(fields) != len(columns):
            return f"line {number} is not a row of {len(columns)} values"
        try:
            [float(fields[i]) for i in wanted]
        except ValueError:
            return f"line {number} holds a value of {', '.join(COLUMNS)} that is not a number"
    return None


def check_monitor(run: Run, rows: Mapping[str, int] | None = None) -> None:
    """Raise a :class:`UserError` naming the first monitor file of ``run`` that SB3 could not read, and why.
    ``rows`` (a checkpoint's row counts, for a resume): only the files and rows that the resume keeps."""
    if not run.monitor.is_dir():
        return
    for path in sorted(run.monitor.glob("*monitor.csv")):  # the files load_results reads
        if rows is not None and path.name.endswith(".monitor.csv") and path.name not in rows:
            continue  # begun after the checkpoint: the resume sets it aside unread
        problem = monitor_file_problem(path, None if rows is None else rows.get(path.name))
        if problem is not None:
            raise UserError(
                f"{path} is not a training monitor file ({problem}). It holds the training episodes of one "
                "segment, read for the learning curves and the train summary: restore it from a copy, or delete "
                "it (its episodes are then left out of both), and run the command again."
            )


def load_monitor(run: Run) -> pd.DataFrame | None:
    """Every episode of every training segment, in order, with its cumulative step ``step``
    (``None`` when nothing was logged yet). SB3's ``load_results`` reads and merges the CSVs; a file
    it could not read is a :class:`UserError` naming it (:func:`check_monitor`)."""
    if not run.monitor.is_dir():
        return None
    check_monitor(run)
    try:
        df = load_results(str(run.monitor))
    except LoadMonitorResultsError:
        return None
    if len(df) == 0:
        return df
    df = df.sort_values("t", kind="stable").reset_index(drop=True)
    df["step"] = df["l"].cumsum()
    return df


def binned(steps: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of ``values`` in each bin of ``steps`` (NaN for an empty bin)."""
    idx = np.clip(np.searchsorted(edges, steps, side="right") - 1, 0, len(edges) - 2)
    sums = np.bincount(idx, weights=values, minlength=len(edges) - 1)
    counts = np.bincount(idx, minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def learning_curve(run: Run, n_timesteps: int, bins: int = 20) -> list[float]:
    """Mean training-episode return in ``bins`` equal slices of the budget (NaN for an empty slice)."""
    df = load_monitor(run)
    if df is None or len(df) == 0:
        return [float("nan")] * bins
    edges = np.linspace(0, n_timesteps, bins + 1)
    return [float(v) for v in binned(df["step"].to_numpy(), df["r"].to_numpy(), edges)]


def quantile_band(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median, 25th and 75th percentile over axis 0, ignoring NaNs (empty bins)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        return (np.nanmedian(curves, 0), np.nanpercentile(curves, 25, 0), np.nanpercentile(curves, 75, 0))
