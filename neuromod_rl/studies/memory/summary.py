"""The memory suite's numbers from its saved runs: steps to a level, the per-task summary (final
return, steps to the threshold and to RecurrentPPO's final return, wall time), the suite's target per
plastic agent as a claim, and the learning-curve panels (shared with ``core-sweep``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from neuromod_rl.experiment.plots.figures import new_figure
from neuromod_rl.studies.memory.pomdp_suite import ALL_TASKS, TASKS, Settings, label
from neuromod_rl.studies.scaffold import multiseed
from neuromod_rl.studies.scaffold.report import save_figure


def steps_to(curve: list[tuple[int, float]], level: float) -> float:
    """First training step at which the evaluation return reached ``level`` (inf if never)."""
    return next((float(step) for step, value in curve if value >= level), math.inf)


def fmt_steps(values: list[float]) -> str:
    """Median steps over the seeds that count (``"74k (3/3)"``), or how few reached the level."""
    reached = [v for v in values if math.isfinite(v)]
    if len(reached) <= len(values) / 2:
        return f"not reached ({len(reached)}/{len(values)})"
    return f"{float(np.median(values)) / 1000:.0f}k ({len(reached)}/{len(values)})"


def summarise(results: dict, s: Settings, seeds: list[int], speed: dict) -> dict[str, Any]:
    """Per task and agent: final return (median, IQR), steps to the threshold and to RecurrentPPO's
    final return (its lower quartile), wall time (measured, and at the timed throughput). ``learned``:
    whether RecurrentPPO beats memoryless PPO (its lower quartile above PPO's upper one); where it does
    not, its final return is no level to reach (the floor is "reached" at the first evaluation)."""
    out: dict[str, Any] = {}
    for task in s.tasks:
        runs = {a: [results[(f"{task}/{a}", k)] for k in seeds if (f"{task}/{a}", k) in results] for a in s.agents}
        anchor = multiseed.median_iqr([r["final_return"] for r in runs.get("recurrent_ppo", [])])
        rows = {}
        for agent, rs in runs.items():
            if not rs:
                continue
            to_anchor = [steps_to(r["curve"], anchor[1]) for r in rs]
            rows[agent] = {
                "final": multiseed.median_iqr([r["final_return"] for r in rs]),
                "to_threshold": [steps_to(r["curve"], TASKS[task].threshold) for r in rs],
                "to_anchor": to_anchor,
                "seconds": float(np.median([r["train_seconds"] for r in rs])),
                "steps_per_second": speed[task][agent],
                "seconds_to_anchor": float(np.median(to_anchor)) / speed[task][agent],
            }
        floor = rows["ppo"]["final"][2] if "ppo" in rows else -math.inf
        out[task] = {"anchor": anchor, "rows": rows, "floor": floor, "learned": anchor[1] > floor}
    return out


def verdicts(summary: dict[str, Any], agent: str) -> list[tuple[str, bool, str]]:
    """Per task, ``agent`` against RecurrentPPO's final return; where RecurrentPPO does not beat memoryless
    PPO that is no target (the floor is "reached" at step 0), so the task's own threshold is the claim."""
    claims = []
    for task, data in summary.items():
        rows = data["rows"]
        if agent not in rows or "recurrent_ppo" not in rows:
            continue
        mine, anchor = rows[agent], rows["recurrent_ppo"]
        q1, floor = data["anchor"][1], data["floor"]
        if not data["learned"]:
            threshold = TASKS[task].threshold
            claims.append((f"{task}: RecurrentPPO does not beat memoryless PPO (lower quartile {q1:.1f} vs PPO's upper "
                           f"{floor:.1f}), so {label(agent)} is judged on the task's threshold: reaches {threshold:g}",
                           mine["final"][0] >= threshold, f"final median {mine['final'][0]:.1f}; steps to "
                           f"{threshold:g}: {fmt_steps(mine['to_threshold'])}"))  # fmt: skip
            continue
        reached = mine["final"][0] >= q1
        fewer_steps = np.median(mine["to_anchor"]) <= np.median(anchor["to_anchor"])
        ratio = mine["seconds_to_anchor"] / anchor["seconds_to_anchor"] if math.isfinite(
            anchor["seconds_to_anchor"]) else math.nan  # fmt: skip
        claims.append((
            f"{task}: {label(agent)} reaches RecurrentPPO's final return (its lower quartile, {q1:.1f}) in no more "
            "env steps and in <= 0.5x its wall time",
            bool(reached and fewer_steps and ratio <= 0.5),
            f"final median {mine['final'][0]:.1f} vs RecurrentPPO {data['anchor'][0]:.1f}; steps to {q1:.1f}: "
            f"{fmt_steps(mine['to_anchor'])} vs {fmt_steps(anchor['to_anchor'])}; wall time to it "
            f"{ratio:.2f}x (env-steps/s {mine['steps_per_second']:.0f} vs {anchor['steps_per_second']:.0f})",
        ))  # fmt: skip
    return claims


def plot_curves(results: dict, tasks: tuple[str, ...], agents: tuple[str, ...], seeds: list[int], out: Path,
                filename: str, name=label, width: float = 4.6) -> str:
    """One panel per task: each agent's evaluation return over training (median and IQR over seeds),
    the task's threshold dotted; ``results`` keyed ``("task/agent", seed)``."""
    fig, axes = new_figure(ncols=len(tasks), width=width)
    for ax, task in zip(axes, tasks):
        curves, steps = {}, None
        for agent in agents:
            rs = [results[(f"{task}/{agent}", k)] for k in seeds if (f"{task}/{agent}", k) in results]
            if rs:
                curves[name(agent)] = [[v for _, v in r["curve"]] for r in rs]
                steps = np.asarray([x for x, _ in rs[0]["curve"]], dtype=float)
        multiseed.plot_bands(ax, steps, curves, "evaluation return", "env steps")
        ax.axhline(ALL_TASKS[task].threshold, color="grey", ls=":", lw=1)
        ax.set_title(task, fontsize=9)
    return save_figure(fig, out, filename)
