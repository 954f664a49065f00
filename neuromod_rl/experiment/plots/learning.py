"""Learning curves (episode return against training step) and training diagnostics, as PNGs.

Over seeds (``compare``): each run's returns are averaged per step bin, then the median and the
inter-quartile range (IQR) over runs are drawn. A single run (``report``) has no seeds to spread
over, so its band is the IQR of the episodes inside each bin.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from neuromod_rl.experiment.curves import binned, load_monitor, quantile_band
from neuromod_rl.experiment.plots.figures import pyplot, save
from neuromod_rl.experiment.runs import Run


def _single_run_band(run: Run, n_bins: int) -> tuple[np.ndarray, ...] | None:
    df = load_monitor(run)
    if df is None or len(df) == 0:
        return None
    steps, returns = df["step"].to_numpy(float), df["r"].to_numpy(float)
    edges = np.linspace(0.0, steps[-1], n_bins + 1)
    idx = np.clip(np.searchsorted(edges, steps, side="right") - 1, 0, n_bins - 1)
    med, lo, hi = (np.full(n_bins, np.nan) for _ in range(3))
    for b in range(n_bins):
        vals = returns[idx == b]
        if len(vals):
            med[b], lo[b], hi[b] = np.median(vals), np.percentile(vals, 25), np.percentile(vals, 75)
    return 0.5 * (edges[1:] + edges[:-1]), med, lo, hi


def plot_learning_curves(groups: dict[str, list[Run]], path: Path, n_bins: int = 40,
                         title: str = "Learning curves") -> Path | None:
    """Median and IQR of episode return against training step, one line per group of seeds."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = 0
    for label, runs in groups.items():
        if len(runs) == 1:
            band = _single_run_band(runs[0], n_bins)
            if band is None:
                continue
            x, med, lo, hi = band
            label = f"{label} (1 run; band: IQR of episodes)"
        else:
            frames = [df for r in runs if (df := load_monitor(r)) is not None and len(df)]
            if not frames:
                continue
            edges = np.linspace(0.0, max(df["step"].iloc[-1] for df in frames), n_bins + 1)
            curves = [binned(df["step"].to_numpy(float), df["r"].to_numpy(float), edges) for df in frames]
            x = 0.5 * (edges[1:] + edges[:-1])
            med, lo, hi = quantile_band(np.array(curves))
            label = f"{label} ({len(curves)} seeds; median, IQR)"
        line = ax.plot(x, med, label=label)[0]
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.25, linewidth=0)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("training step")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def plot_diagnostics(run: Run, path: Path) -> Path | None:
    """The plastic diagnostics SB3 logged during training (``plastic/*`` in ``tb/progress-*.csv``)."""
    frames = [pd.read_csv(p) for p in sorted(run.tb.glob("progress-*.csv")) if p.stat().st_size > 0]
    if not frames:
        return None
    df = pd.concat(frames, ignore_index=True)
    cols = [c for c in df.columns if c.startswith("plastic/")]
    if not cols or "time/total_timesteps" not in df.columns:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 2.8), squeeze=False)
    for ax, col in zip(axes[0], cols):
        d = df[["time/total_timesteps", col]].dropna()
        ax.plot(d["time/total_timesteps"], d[col])
        ax.set_title(col, fontsize=9)
        ax.set_xlabel("training step", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("Plastic diagnostics during training", y=1.04)
    return save(fig, path)
