"""``neuromod-rl compare RUN_DIR...``: runs grouped by config name (seeds of one method), side by side.

Writes ``<out>/compare.md`` with a learning-curve plot (median and IQR over the seeds of each
group), an adaptation plot (test-task reward within the episode, one line per group) and a table
of test-task metrics as median [25%, 75%] over seeds. Runs not yet evaluated on test tasks are
evaluated first (which adds ``eval/test.*`` to them, nothing else). With the oracle and Markov bounds
(``--oracle``, ``--markov``: runs on the same task) it adds a "Bounds" section and each group's share of
the oracle-Markov gap closed (:mod:`neuromod_rl.experiment.gap_share`).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.evaluate import evaluate, load_run, load_traces
from neuromod_rl.experiment.gap_share import SHARE, BoundRuns, median_iqr
from neuromod_rl.experiment.markdown import markdown_table
from neuromod_rl.experiment.plots.adaptation import _mean_band, aligned
from neuromod_rl.experiment.plots.figures import pyplot, save
from neuromod_rl.experiment.plots.learning import plot_learning_curves
from neuromod_rl.experiment.runs import Run, atomic_write_text, check_output_folder, read_json

METRICS = ("mean_return", "adaptation_gain", "mean_cumulative_regret", "late_reward_per_step")


def _merge(traces: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Episodes of several runs as one trace set (per-step arrays NaN-padded to the longest)."""
    T = max(t["rewards"].shape[1] for t in traces)
    pad = lambda a: np.pad(a, ((0, 0), (0, T - a.shape[1])), constant_values=np.nan)  # noqa: E731
    return {
        "rewards": np.concatenate([pad(t["rewards"]) for t in traces]),
        "regret": np.concatenate([pad(t["regret"]) for t in traces]),
        "switch_at": np.concatenate([t["switch_at"] for t in traces]),
    }


def _adaptation_by_group(groups: dict[str, list[Run]], path: Path) -> Path | None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, runs in groups.items():
        found = [t for r in runs if (t := load_traces(r, "test")) is not None]
        if not found:
            continue
        x, values = aligned(_merge(found))
        mean, lo, hi = _mean_band(values, max(1, values.shape[1] // 25))
        line = ax.plot(x, mean, label=f"{label} ({len(found)} runs, {values.shape[0]} episodes)")[0]
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("step in the episode (relative to the task switch when there is one)")
    ax.set_ylabel("reward per step, test tasks (mean, 95% CI)")
    ax.set_title("Adaptation within an episode")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def compare(run_dirs: list[str], out: str | Path | None = None, progress: bool = True,
            oracle: list[str] | None = None, markov: list[str] | None = None) -> Path:
    """Compare runs; return the path of ``compare.md``.

    Args:
        run_dirs: the runs, grouped by their config's name.
        out: the output folder (default: ``compare-<timestamp>`` beside the first run).
        progress: show progress bars while evaluating.
        oracle: runs of the oracle bound (the task in the observation), or ``None``; give with ``markov``.
        markov: runs of the Markov bound (the raw observation), or ``None``; give with ``oracle``.
    """
    if len(set(run_dirs)) != len(run_dirs):
        raise UserError("the same run directory was given twice; pass each run once")
    bound_runs = BoundRuns.open(oracle, markov)
    loaded = [load_run(d) for d in run_dirs]
    if bound_runs is not None:
        for run, cfg in loaded:
            bound_runs.check_task(run, cfg)
    bounds = None if bound_runs is None else bound_runs.measure(progress=progress)
    groups: dict[str, list[Run]] = {}
    for run, cfg in loaded:
        if load_traces(run, "test") is None:
            evaluate(run.path, "test", progress=progress)
        groups.setdefault(cfg.name, []).append(run)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(out) if out is not None else Path(run_dirs[0]).resolve().parent / f"compare-{stamp}"
    check_output_folder(out, "--out")
    lines = ["# Comparison", "", "Runs grouped by config name; numbers are median [25%, 75%] over the runs of a "
             "group (test tasks).", ""]
    rows = []
    for label, runs in groups.items():
        cells = []
        for m in METRICS:
            vals = [v for r in runs if (v := (read_json(r.eval_dir / "test.json", {}) or {}).get(m)) is not None]
            cells.append(median_iqr(vals))
        if bounds is not None:
            returns = [v for r in runs if (v := (read_json(r.eval_dir / "test.json", {}) or {}).get("mean_return"))
                       is not None]  # fmt: skip
            cells.append(median_iqr([bounds.share(v) for v in returns], percent=True))
        rows.append([label, len(runs), *cells])
    lines += markdown_table(["config", "runs", *METRICS, *([SHARE] if bounds else [])], rows).split("\n")
    lines.append("")
    if bounds is not None:
        lines += bounds.lines()
    for caption, path in (
        ("Learning curves (median and IQR over seeds)", plot_learning_curves(groups, out / "learning_curves.png")),
        ("Adaptation within an episode (test tasks)", _adaptation_by_group(groups, out / "adaptation.png")),
    ):
        if path is not None:
            lines += [f"### {caption}", "", f"![{caption}]({path.name})", ""]
    lines += ["Runs:", ""]
    lines += [f"- `{label}`: " + ", ".join(f"`{r.path}`" for r in runs) for label, runs in groups.items()]
    report = out / "compare.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    return report
