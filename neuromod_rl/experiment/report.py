"""``neuromod-rl report``: evaluate (if not done yet), draw every plot, write ``RUN_DIR/report.md``.

The report's verdict lines are computed from the evaluation traces (never written by hand): the
in-episode gain (late minus early reward per step on held-out tasks, with its 95% interval over
episodes) and, for bandits, the regret next to Thompson sampling and UCB1.

With the oracle and Markov bounds (``--oracle``, ``--markov``: runs on the same task) the report gives
the run's share of the oracle-Markov gap closed (:mod:`neuromod_rl.experiment.gap_share`).

Every file the report reads (of the run, of a ``--baseline`` run and of the bound runs) and the model are
checked before anything is evaluated or written: a damaged one is refused by name and the run stays as it was.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neuromod_rl.experiment import adaptation, normalize
from neuromod_rl.experiment.curves import check_monitor
from neuromod_rl.experiment.environment import make_env
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.evaluate import (
    EVAL_SEED_OFFSET,
    METRICS_REMEDY,
    check_room,
    eval_summary,
    evaluate,
    load_model,
    load_run,
    load_traces,
    read_mapping,
    task_list,
)
from neuromod_rl.experiment.gap_share import SHARE, BoundRuns
from neuromod_rl.experiment.markdown import fmt_value, markdown_table
from neuromod_rl.experiment.plots.adaptation import plot_adaptation, plot_fast_weights, plot_modulation, plot_regret
from neuromod_rl.experiment.plots.learning import plot_diagnostics, plot_learning_curves
from neuromod_rl.experiment.probe import plastic_trace
from neuromod_rl.experiment.runs import Run, atomic_write_text, update_json
from neuromod_rl.experiment.video import record_video


def _bandit_info(cfg) -> tuple[str | None, int] | None:
    """``(variant, n_pulls)`` when the run's env is the two-armed bandit, else ``None``."""
    env = make_env(cfg)
    try:
        base = env.unwrapped
        if type(base).__name__ != "TwoArmedBandit":
            return None
        return getattr(base, "variant", None), int(base.n_pulls)
    finally:
        env.close()


def adaptation_gain(traces: dict[str, np.ndarray]) -> tuple[float, float] | None:
    """Per-episode (late - early) reward per step, aggregated as (mean, 95% half-width)."""
    gains = []
    for i, length in enumerate(traces["lengths"]):
        s = max(int(traces["switch_at"][i]), 0)
        seg = traces["rewards"][i, s:length]
        if len(seg) >= 5:
            gains.append(np.mean(seg[-max(1, len(seg) // 5):]) - np.mean(seg[: max(1, len(seg) // 10)]))
    if not gains:
        return None
    g = np.array(gains)
    return float(g.mean()), float(1.96 * g.std() / np.sqrt(len(g)))


def _table(rows: dict[str, dict[str, Any]]) -> list[str]:
    keys = sorted({k for r in rows.values() for k in r})
    return markdown_table(["metric", *rows], [[k, *(r.get(k, "") for r in rows.values())] for k in keys]).split("\n")


def _check_progress_log(path: Path) -> None:
    """A ``tb/progress-*.csv`` that the diagnostics plot can read (its steps and ``plastic/*`` columns numbers)."""
    try:
        df = pd.read_csv(path)
        used = [c for c in df.columns if c.startswith("plastic/") or c == "time/total_timesteps"]
        bad = next((c for c in used if not pd.api.types.is_numeric_dtype(df[c])), None)
        problem = None if bad is None else f"column {bad!r} holds values that are not numbers"
    except Exception as err:  # noqa: BLE001  (pandas raises many kinds on damage; each becomes this message)
        problem = type(err).__name__
    if problem is not None:
        raise UserError(
            f"{path} is not a training log ({problem}). It holds the diagnostics SB3 logged during one training "
            "segment, read only for the report's diagnostics plot: restore it from a copy, or delete it, then run "
            "the command again."
        )


def check_inputs(run: Run) -> None:
    """Every file of ``run`` that the report reads, each refused by name when damaged (a :class:`UserError`)."""
    read_mapping(run.metrics, METRICS_REMEDY)
    for split in ("train", "test"):
        load_traces(run, split)
        eval_summary(run, split)
    check_monitor(run)
    for path in sorted(run.tb.glob("progress-*.csv")):
        if path.stat().st_size > 0:  # as the plot: an empty log is a segment stopped before its first update
            _check_progress_log(path)
    normalize.load(run)


def _baseline_run(run_dir: str | Path, cfg) -> tuple[Run, Any]:
    """The baseline run and its config, the files the report reads of it checked; it must be on the same
    task as the reported run."""
    brun, bcfg = load_run(run_dir)
    if (bcfg.env, bcfg.env_kwargs) != (cfg.env, cfg.env_kwargs):
        raise UserError(
            f"baseline run {brun.path} is on {bcfg.env} {bcfg.env_kwargs}, the reported run on {cfg.env} "
            f"{cfg.env_kwargs}: pass a baseline trained on the same task (same env and env_kwargs)."
        )
    read_mapping(brun.metrics, METRICS_REMEDY)  # evaluating it updates its metrics
    load_traces(brun, "test")
    return brun, bcfg


def _baseline_traces(brun: Run, episodes: int | None, progress: bool):
    """The baseline run's test traces, evaluated first if needed."""
    t = load_traces(brun, "test")
    if t is None or (episodes is not None and len(t["returns"]) != episodes):
        evaluate(brun.path, "test", episodes, progress=progress)
        t = load_traces(brun, "test")
    return t


def baseline_lines(traces, bname: str, btraces) -> tuple[list[str], dict[str, Any]]:
    """The verdict against a baseline run: recovery after the switch when the task has one, else the
    in-episode gain; "adapts" only when the agent's number beats the baseline's beyond the 95% interval."""
    cmp = adaptation.compare(traces, btraces)
    if cmp is not None:
        if cmp["agent_pre"] <= 0:
            verdict = "undefined: no positive reward per step before the change (the agent has not learned the task)"
        elif cmp["difference_ci95"] is not None and cmp["difference_ci95"][0] > 0:
            verdict = "yes: it recovers more than the baseline"
        elif cmp["difference_ci95"] is not None and cmp["difference_ci95"][1] < 0:
            verdict = "no: it recovers less than the baseline"
        else:
            verdict = "not distinguishable from the baseline"
        ci = cmp["difference_ci95"] or [float("nan")] * 2
        text = (
            f"Against the baseline `{bname}` (test tasks, window {cmp['window']} steps): recovery (reward per step "
            f"in the last window as a fraction of the window before the change) {cmp['agent_recovery']:.3f} vs "
            f"{cmp['baseline_recovery']:.3f}, difference {cmp['difference']:+.3f} (95% CI [{ci[0]:+.3f}, "
            f"{ci[1]:+.3f}]); reward per step before the change {cmp['agent_pre']:.3f} vs {cmp['baseline_pre']:.3f} "
            f"-> **adapts compared with the baseline: {verdict}**."
        )
        return [text, ""], {"baseline": bname, **cmp, "verdict": verdict}
    mine, theirs = adaptation_gain(traces), adaptation_gain(btraces)
    if mine is None or theirs is None:
        return [f"(No comparison with `{bname}`: its episodes or these are too short for a gain.)", ""], {}
    diff, hw = mine[0] - theirs[0], float(np.hypot(mine[1], theirs[1]))
    verdict = ("yes: its reward per step rises more than the baseline's" if diff - hw > 0
               else "no: its reward per step rises less than the baseline's" if diff + hw < 0
               else "not distinguishable from the baseline")  # fmt: skip
    text = (f"Against the baseline `{bname}` (test tasks): in-episode gain {mine[0]:+.3f} vs {theirs[0]:+.3f}, "
            f"difference {diff:+.3f} (95% CI ±{hw:.3f}) -> **adapts compared with the baseline: {verdict}**.")
    return [text, ""], {"baseline": bname, "gain": mine[0], "baseline_gain": theirs[0], "difference": diff,
                        "difference_ci95": [diff - hw, diff + hw], "verdict": verdict}


def make_report(run_dir: str | Path, episodes: int | None = None, progress: bool = True, wandb=None,
                video: bool = True, baseline: str | Path | None = None, oracle: list[str | Path] | None = None,
                markov: list[str | Path] | None = None) -> Path:
    """Write the report of ``run_dir`` and return the path of ``report.md``. With ``baseline`` (another
    run on the same task, e.g. feed-forward PPO), the adaptation verdict compares against it: "adapts"
    then means "recovers more than an agent that cannot adapt". With ``oracle`` and ``markov`` (runs of
    the bounds on the same task, same algorithm and budget) it gives the run's share of the
    oracle-Markov gap closed, also saved as ``gap_share`` in the ``report`` section of ``metrics.json``.

    Args:
        run_dir: the run to report.
        episodes: evaluate with this many episodes (default: the config's ``eval.episodes``, or the
            saved evaluation).
        progress: show progress bars while evaluating.
        wandb: a W&B run to log the plots and summary to, or ``None``.
        video: record one episode of the agent.
        baseline: a run of a non-adaptive agent on the same task, or ``None``.
        oracle: runs of the oracle bound (the task in the observation), or ``None``; give with ``markov``.
        markov: runs of the Markov bound (the raw observation), or ``None``; give with ``oracle``.
    """
    run, cfg = load_run(run_dir)
    check_inputs(run)
    brun = None if baseline is None else _baseline_run(baseline, cfg)[0]
    bound_runs = BoundRuns.open(oracle, markov)
    if bound_runs is not None:
        if any(b.path.resolve() == run.path.resolve() for b in bound_runs.oracle + bound_runs.markov):
            raise UserError(f"{run.path} is the reported run and one of its bounds; pass the bounds' own runs to "
                            "--oracle and --markov")
        bound_runs.check_task(run, cfg)
    load_model(run, cfg)  # refused now if damaged; the probe loads its own below, as loading reseeds the RNGs
    check_room(run.path, 2**20, "report")
    bounds = None if bound_runs is None else bound_runs.measure(episodes, progress)
    traces = {}
    for split in ("train", "test"):
        t = load_traces(run, split)
        if t is None or (episodes is not None and len(t["returns"]) != episodes):  # (re-)evaluate
            evaluate(run.path, split, episodes, progress=progress)
            t = load_traces(run, split)
        traces[split] = t
    plots: list[Path] = []
    lines = [f"# Report: {run.path.name}", "", f"`{cfg.algo}` / `{cfg.policy}` on `{cfg.env}`, "
             f"{cfg.n_timesteps} steps, seed {cfg.seed}. Config: [config.yaml](config.yaml).", ""]

    gain = adaptation_gain(traces["test"])
    lines.append("## Does the agent adapt within an episode?")
    lines.append("")
    if gain is not None:
        mean, hw = gain
        s = eval_summary(run, "test") or {}
        verdict = (
            "yes: reward per step rises within the episode" if mean - hw > 0
            else "not visibly: reward per step does not rise significantly within the episode"
        )
        lines.append(
            f"On held-out test tasks, reward per step goes from {s.get('early_reward_per_step', float('nan')):.3f} "
            f"(first 10% of the episode{' after the switch' if (traces['test']['switch_at'] >= 0).any() else ''}) "
            f"to {s.get('late_reward_per_step', float('nan')):.3f} (last 20%): gain {mean:+.3f} "
            f"(95% CI ±{hw:.3f}) -> **{verdict}**."
        )
    vs_baseline: dict[str, Any] = {}
    if brun is not None:
        btraces = _baseline_traces(brun, episodes, progress)
        more, vs_baseline = baseline_lines(traces["test"], str(brun.path), btraces)
        lines += ["", *more]
    elif (traces["test"]["switch_at"] >= 0).any():
        lines += ["", "(Pass `--baseline RUN_DIR` with a run of a non-adaptive agent on the same task, e.g. "
                  "feed-forward PPO, to judge recovery against it.)", ""]
    bandit = _bandit_info(cfg)
    regret_finals: dict[str, float] = {}
    if bandit is not None:
        path, regret_finals = plot_regret(traces["test"], bandit[0], bandit[1], run.plots / "regret.png")
        if path:
            plots.append(path)
            ref = ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in regret_finals.items() if k != "agent")
            lines.append("")
            lines.append(f"Cumulative regret after {bandit[1]} pulls: agent {regret_finals['agent']:.2f}"
                         + (f"; references (2000 sampled episodes each): {ref}" if ref else "") + " (lower is better).")
    lines.append("")

    figures = []
    p = plot_adaptation(traces, run.plots / "adaptation.png")
    if p:
        figures.append(("Adaptation curve: reward against time within the episode", p))
    if bandit is not None and regret_finals:
        figures.append(("Regret against Thompson sampling and UCB1", run.plots / "regret.png"))
    p = plot_learning_curves({cfg.name: [run]}, run.plots / "learning_curve.png")
    if p:
        figures.append(("Learning curve (training episodes)", p))

    model = load_model(run, cfg)
    tasks = task_list(cfg, "test")
    probe = plastic_trace(model, cfg, tasks[0] if tasks else None, EVAL_SEED_OFFSET + cfg.seed,
                          cfg.eval.deterministic, normalize.load(run))
    if probe is not None:
        figures.append(("Fast weights at several times of one test episode",
                        plot_fast_weights(probe, run.plots / "fast_weights.png")))
        p = plot_modulation(probe, run.plots / "modulation.png")
        if p:
            figures.append(("Modulator M(t), with reward events marked", p))
    else:
        lines.append(f"(No fast-weight or M(t) plots: `{cfg.policy}` has no plastic core.)")
        lines.append("")
    p = plot_diagnostics(run, run.plots / "diagnostics.png")
    if p:
        figures.append(("Plastic diagnostics logged during training", p))
    if video:
        v = record_video(run, cfg, model)
        if v is not None:
            figures.append(("One episode of the agent", v))
            if wandb is not None:
                wandb.log_video(v)

    for caption, path in figures:
        lines += [f"### {caption}", "", f"![{caption}]({path.relative_to(run.path)})", ""]
        if path.suffix == ".png" and path not in plots:
            plots.append(path)

    share = None
    if bounds is not None:
        mean_return = float((eval_summary(run, "test") or {})["mean_return"])
        share = bounds.share(mean_return)
        lines += [*bounds.lines(), f"This run (test tasks): mean_return {mean_return:.4g} -> **{SHARE}: "
                  f"{share:.0%}** (0: the Markov bound, 1: the oracle).", ""]  # fmt: skip
    metrics = read_mapping(run.metrics, METRICS_REMEDY) or {}
    lines += ["## Metrics", ""]
    rows = {name: metrics[key] for name, key in (("train tasks", "eval_train"), ("test tasks", "eval_test"))
            if key in metrics}
    if rows:
        lines += _table(rows) + [""]
    if "train" in metrics:
        lines += ["Training: " + ", ".join(f"{k} {fmt_value(v)}" for k, v in sorted(metrics["train"].items())), ""]
    lines += ["Reproduce: `neuromod-rl eval " + str(run.path) + " --tasks test` re-creates the evaluation; "
              "`neuromod-rl report " + str(run.path) + "` this report.", ""]
    atomic_write_text(run.report, "\n".join(lines))
    summary = {"plots": [str(p.relative_to(run.path)) for p in plots], "regret": regret_finals}
    if gain is not None:
        summary.update(adaptation_gain=gain[0], adaptation_gain_ci95=gain[1])
    if vs_baseline:
        summary["vs_baseline"] = vs_baseline
    if bounds is not None:
        summary.update(gap_share=share, bounds=bounds.summary())
    update_json(run.metrics, "report", summary)
    if wandb is not None:
        wandb.log_images(plots)
        wandb.summary({f"report/{k}": v for k, v in summary.items() if isinstance(v, float)})
    print(f"Wrote {run.report} with {len(plots)} plots", file=sys.stderr)
    return run.report
