"""Plots that show adaptation *within* an episode (from ``eval`` traces and the plastic probe).

* adaptation curve: reward per step against time in the episode, aligned to the task switch
  (t = 0 at the switch; for tasks that change only at reset, the episode start is the switch),
  mean and 95% interval of the mean over episodes, for train and test tasks; for bandits also the
  fraction of pulls on the better arm;
* bandit regret: the agent's cumulative regret against Thompson sampling and UCB1;
* fast-weight heatmaps at several times of one episode, and the modulator M(t) with reward events.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from neuromod_rl.envs.baselines import bandit_regret
from neuromod_rl.experiment.plots.figures import pyplot, save


def aligned(traces: dict[str, np.ndarray], key: str = "rewards") -> tuple[np.ndarray, np.ndarray]:
    """Per-step values re-indexed so that index ``offset`` is the switch: ``(t axis, values[E, T'])``."""
    values, switch = traces[key], traces["switch_at"]
    if not (switch >= 0).any():
        return np.arange(values.shape[1]), values
    before = int(switch.max())
    T = values.shape[1]
    out = np.full((values.shape[0], before + T), np.nan)
    for i, s in enumerate(switch):
        s = int(s) if s >= 0 else 0  # an episode without a switch counts from its start
        out[i, before - s: before - s + T] = values[i]
    x = np.arange(-before, T)
    keep = np.isfinite(out).any(axis=0)  # steps no episode reaches (after every episode ended)
    return x[keep], out[:, keep]


def _mean_band(values: np.ndarray, smooth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over episodes with a 95% normal interval, each smoothed over ``smooth`` steps."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        n = np.sum(np.isfinite(values), axis=0)
        mean = np.nanmean(values, axis=0)
        sem = np.nanstd(values, axis=0) / np.sqrt(np.maximum(n, 1))
    if smooth > 1:
        kernel = np.ones(smooth) / smooth
        pad = lambda a: np.convolve(np.pad(a, (smooth // 2, smooth - 1 - smooth // 2), mode="edge"), kernel, "valid")  # noqa: E731
        missing = ~np.isfinite(mean)
        mean, sem = pad(np.nan_to_num(mean)), pad(np.nan_to_num(sem))
        mean[missing] = sem[missing] = np.nan
    return mean, mean - 1.96 * sem, mean + 1.96 * sem


def plot_adaptation(traces_by_split: dict[str, dict[str, np.ndarray]], path: Path,
                    title: str = "Adaptation within an episode") -> Path | None:
    """Reward per step against time in the episode (and, for bandits, P(better arm))."""
    if not traces_by_split:
        return None
    plt = pyplot()
    bandit = all(np.isfinite(t["regret"]).any() for t in traces_by_split.values())
    fig, axes = plt.subplots(1, 2 if bandit else 1, figsize=(11 if bandit else 7, 4), squeeze=False)
    switched = any((t["switch_at"] >= 0).any() for t in traces_by_split.values())
    for split, traces in traces_by_split.items():
        x, values = aligned(traces)
        smooth = max(1, values.shape[1] // 25)
        mean, lo, hi = _mean_band(values, smooth)
        label = f"{split} tasks ({values.shape[0]} episodes)"
        line = axes[0, 0].plot(x, mean, label=label)[0]
        axes[0, 0].fill_between(x, lo, hi, color=line.get_color(), alpha=0.25, linewidth=0)
        if bandit:
            _, regret = aligned(traces, "regret")
            best = np.where(np.isfinite(regret), (regret <= 1e-12).astype(float), np.nan)
            mean, lo, hi = _mean_band(best, smooth)
            line = axes[0, 1].plot(x, mean, label=label)[0]
            axes[0, 1].fill_between(x, lo, hi, color=line.get_color(), alpha=0.25, linewidth=0)
    xlabel = "step relative to the task switch" if switched else "step in the episode (new task at step 0)"
    axes[0, 0].set_ylabel("reward per step (mean, 95% CI)")
    if switched:
        axes[0, 0].axvline(0, color="k", linestyle="--", linewidth=1, label="task switch")
    if bandit:
        axes[0, 1].axhline(0.5, color="gray", linestyle=":", label="chance")
        axes[0, 1].set_ylabel("P(pull the better arm)")
        axes[0, 1].set_ylim(0.3, 1.0)
    for ax in axes[0]:
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return save(fig, path)


def baseline_regret_curves(variant: str, n_pulls: int, n_episodes: int = 2000, seed: int = 0,
                           points: int = 25) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Cumulative regret against pulls for Thompson sampling and UCB1 (the issue's references) from
    :func:`neuromod_rl.envs.baselines.bandit_regret`.

    ``bandit_regret(n_pulls=t)`` with one seed draws the same arms and the same random numbers for
    its first ``t`` pulls whatever the horizon, so evaluating it at growing ``t`` traces one curve."""
    policies = ["thompson", "ucb1"]
    ts = np.unique(np.linspace(1, n_pulls, points).round().astype(int))
    return {p: (ts, np.array([bandit_regret(p, variant, n_episodes, int(t), seed) for t in ts])) for p in policies}


def plot_regret(traces: dict[str, np.ndarray], variant: str | None, n_pulls: int, path: Path,
                split: str = "test") -> tuple[Path | None, dict[str, float]]:
    """Agent's cumulative regret (mean, IQR) against the bandit baselines; returns the final values."""
    if not np.isfinite(traces["regret"]).any():
        return None, {}
    plt = pyplot()
    cum = np.nancumsum(traces["regret"], axis=1)
    t = np.arange(1, cum.shape[1] + 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    line = ax.plot(t, cum.mean(0), label=f"agent ({split} tasks, mean)", linewidth=2)[0]
    ax.fill_between(t, np.percentile(cum, 25, 0), np.percentile(cum, 75, 0), color=line.get_color(), alpha=0.2,
                    linewidth=0, label="agent IQR")
    finals = {"agent": float(cum[:, -1].mean())}
    if variant in ("independent", "dependent"):
        for name, (ts, reg) in baseline_regret_curves(variant, n_pulls).items():
            ax.plot(ts, reg, linestyle="--", label=name.replace("_", " "))
            finals[name] = float(reg[-1])
    else:
        ax.text(0.02, 0.95, f"no Thompson/UCB1 reference for variant {variant!r}", transform=ax.transAxes, fontsize=8)
    ax.set_xlabel("pull")
    ax.set_ylabel("cumulative expected regret")
    ax.set_title("Bandit regret (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path), finals


def plot_fast_weights(probe: dict[str, Any], path: Path, n_panels: int = 5) -> Path:
    """Heatmaps of the fast weights at evenly spaced times of one episode (one shared colour scale)."""
    plt = pyplot()
    F = probe["F"]
    T = F.shape[0]
    times = np.unique(np.linspace(0, T - 1, n_panels).round().astype(int))
    vmax = float(np.abs(F[times]).max()) or 1.0
    fig, axes = plt.subplots(1, len(times), figsize=(2.6 * len(times), 2.9), squeeze=False)
    for ax, ti in zip(axes[0], times):
        im = ax.imshow(F[ti], cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_title(f"t = {ti + 1}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label=str(probe["field"]))
    fig.suptitle(
        f"Fast weights during one test episode (mean |F|: {np.abs(F[0]).mean():.3f} -> {np.abs(F[-1]).mean():.3f})"
    )
    return save(fig, path)


def plot_modulation(probe: dict[str, Any], path: Path) -> Path | None:
    """M(t) over one episode, with the steps that gave a reward (positive up, negative down) marked."""
    M = probe["M"]
    if not np.isfinite(M).any():
        return None
    plt = pyplot()
    t = np.arange(1, len(M) + 1)
    r = probe["rewards"]
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.plot(t, M, color="tab:purple", label="M(t)" + (" (mean over neurons)" if "M_neurons" in probe else ""))
    lo = float(np.nanmin(M)) - 0.15 * (float(np.nanmax(M) - np.nanmin(M)) or 1.0)
    pos, neg = t[r > 0], t[r < 0]
    ax.scatter(pos, np.full(len(pos), lo), marker="|", s=80, color="tab:green", label=f"reward > 0 ({len(pos)})")
    if len(neg):
        ax.scatter(neg, np.full(len(neg), lo), marker="|", s=80, color="tab:red", label=f"reward < 0 ({len(neg)})")
    ax.set_xlabel("step in the episode")
    ax.set_ylabel("modulation M(t)")
    ax.set_title("Neuromodulatory signal during one test episode")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    return save(fig, path)
