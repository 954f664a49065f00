"""Recovery after a mid-episode change (a joint fails, the goal moves), from evaluation traces.

For every episode with a switch at step ``s`` (length ``L``) and a window of ``W`` steps:

* ``pre``: mean reward per step over the ``W`` steps before the switch;
* ``after``: over the ``W`` steps right after it;
* ``end``: over the last ``W`` steps of the episode;
* ``recovery = end / pre``: the fraction of the pre-switch reward per step the agent earns by the
  end of the episode (ratio of the means over episodes), defined when ``pre > 0``;
* ``regained = (end - after) / (pre - after)``: the share of the drop won back within the episode
  (an agent that cannot adapt stays near 0), defined when ``pre > 0`` and the switch costs reward.

The report and the reproductions share these definitions. Intervals are bootstrap 95% intervals
over episodes (a fixed generator, so a report is reproducible).
"""

from __future__ import annotations

from typing import Any

import numpy as np

BOOTSTRAP = 1000


def default_window(traces: dict[str, np.ndarray]) -> int:
    """A quarter of the shorter side of the switch (25 steps for a switch at 100 of 200)."""
    sides = [min(int(s), int(n) - int(s)) for s, n in zip(traces["switch_at"], traces["lengths"]) if s > 0]
    return max(1, min(sides) // 4) if sides else 0


def windows(traces: dict[str, np.ndarray], window: int | None = None) -> dict[str, np.ndarray]:
    """Per-episode ``pre``, ``after``, ``end`` (reward per step) of the episodes with a switch."""
    w = default_window(traces) if window is None else int(window)
    rows: dict[str, list[float]] = {"pre": [], "after": [], "end": []}
    for i, (s, n) in enumerate(zip(traces["switch_at"], traces["lengths"])):
        s, n = int(s), int(n)
        if s <= 0 or w < 1 or s + w > n:
            continue
        r = traces["rewards"][i]
        rows["pre"].append(float(np.mean(r[max(0, s - w) : s])))
        rows["after"].append(float(np.mean(r[s : s + w])))
        rows["end"].append(float(np.mean(r[n - w : n])))
    return {k: np.asarray(v) for k, v in rows.items()}


def _ratios(pre: np.ndarray, after: np.ndarray, end: np.ndarray) -> tuple[float, float]:
    p, a, e = pre.mean(), after.mean(), end.mean()
    recovery = e / p if p > 0 else float("nan")
    regained = (e - a) / (p - a) if p > 0 and p - a > 0 else float("nan")
    return float(recovery), float(regained)


def recovery(traces: dict[str, np.ndarray], window: int | None = None, seed: int = 0) -> dict[str, Any] | None:
    """Means of ``pre``/``after``/``end``, ``recovery`` and ``regained`` with bootstrap intervals
    (``*_ci95`` = ``[low, high]``); ``None`` when no episode has a switch."""
    w = windows(traces, window)
    n = len(w["pre"])
    if n == 0:
        return None
    rec, reg = _ratios(w["pre"], w["after"], w["end"])
    idx = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP, n))
    boot = np.array([_ratios(w["pre"][i], w["after"][i], w["end"][i]) for i in idx])
    out: dict[str, Any] = {"episodes": n, "window": default_window(traces) if window is None else int(window)}
    for key in ("pre", "after", "end"):
        out[key] = float(w[key].mean())
    out["recovery"], out["regained"] = rec, reg
    for j, key in enumerate(("recovery", "regained")):
        col = boot[:, j][np.isfinite(boot[:, j])]
        out[f"{key}_ci95"] = [float(np.percentile(col, 2.5)), float(np.percentile(col, 97.5))] if len(col) else None
    return out


def compare(agent: dict[str, np.ndarray], baseline: dict[str, np.ndarray], window: int | None = None,
            seed: int = 0) -> dict[str, Any] | None:
    """``recovery`` of the agent minus the baseline's, with a bootstrap 95% interval (episodes of the two
    runs resampled independently); ``None`` when either has no switch."""
    w = default_window(agent) if window is None else window
    a, b = windows(agent, w), windows(baseline, w)
    if len(a["pre"]) == 0 or len(b["pre"]) == 0:
        return None
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(BOOTSTRAP):
        ia, ib = rng.integers(0, len(a["pre"]), len(a["pre"])), rng.integers(0, len(b["pre"]), len(b["pre"]))
        diffs.append(_ratios(a["pre"][ia], a["after"][ia], a["end"][ia])[0]
                     - _ratios(b["pre"][ib], b["after"][ib], b["end"][ib])[0])  # fmt: skip
    diffs = np.asarray(diffs)
    diffs = diffs[np.isfinite(diffs)]
    ra, rb = _ratios(a["pre"], a["after"], a["end"])[0], _ratios(b["pre"], b["after"], b["end"])[0]
    ci = [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))] if len(diffs) else None
    return {"window": int(w), "agent_recovery": ra, "baseline_recovery": rb, "difference": ra - rb,
            "difference_ci95": ci, "agent_pre": float(a["pre"].mean()), "baseline_pre": float(b["pre"].mean())}
