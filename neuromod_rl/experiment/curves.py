"""Learning-curve data: episodes from a run's monitor CSVs, binned by training step.

Shared by the report (one run), ``compare`` (runs grouped by config, median and IQR over seeds)
and the train summary, so every place computes curves the same way.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
from stable_baselines3.common.monitor import LoadMonitorResultsError, load_results

if TYPE_CHECKING:  # annotations only
    import pandas as pd

    from neuromod_rl.experiment.runs import Run


def load_monitor(run: Run) -> pd.DataFrame | None:
    """Every episode of every training segment, in order, with its cumulative step ``step``
    (``None`` when nothing was logged yet). SB3's ``load_results`` reads and merges the CSVs."""
    if not run.monitor.is_dir():
        return None
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
