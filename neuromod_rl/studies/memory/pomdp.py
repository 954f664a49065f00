"""The memory suite: plastic policies against sb3-contrib's RecurrentPPO on rl-zoo3's velocity-masked tasks.

People pick a recurrent SB3 policy for memory, and their yardstick is RecurrentPPO with rl-zoo3's
tuned hyperparameters (``hyperparams/ppo_lstm.yml``). Here every agent gets exactly those settings
for the task (rollout size, epochs, learning rate, gamma, gSDE, observation and reward normalisation,
the heads ``net_arch``) and the zoo's budget; only the policy differs. Tasks: ``PendulumNoVel-v1``
(1e5 steps), ``MountainCarContinuousNoVel-v0`` (3e5), ``MountainCarNoVel-v0`` (1e6), and
``CartPoleNoVel-v1`` (1e5), where the zoo's RecurrentPPO is tuned and a plastic RNN was seen to
under-learn. Agents:

* ``recurrent_ppo`` -- the anchor, unchanged: ``RecurrentPPO("MlpLstmPolicy")`` with the zoo's LSTM;
* ``plastic_rnn``, ``plastic_lstm`` -- ``PlasticPPO("MlpPlasticPolicy")`` with ``core="rnn"`` and
  ``core="lstm"``; the library's default core runs with no plastic ``policy_kwargs`` at all (what a
  user gets) and is marked "(default)";
* ``ppo`` -- SB3 ``PPO("MlpPolicy")``, the memoryless floor;
* ``ppo_full`` -- the same PPO on the task's unmasked env (velocities seen), a control: it tells
  whether the settings and budget suffice for the task at all, where nothing on the masked task learns.

Each (task, agent, seed) trains in its own process with one torch thread; it is evaluated
``evals`` times during training (deterministic actions, the training normalisation statistics) and
at the end. Results are kept in ``pomdp.<scale>.runs.json`` next to the report as they finish, so an
interrupted suite resumes where it stopped (:mod:`.multiseed`). Wall time is compared at the
throughput of each agent, timed back to back in one invocation after training (fresh processes, one
thread each), so that the ratio does not depend on what else the machine was doing during the long
runs (:mod:`.throughput`); the runs' own training times are reported beside it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from neuromod_rl.experiment.markdown import markdown_table
from neuromod_rl.experiment.plots.figures import new_figure
from neuromod_rl.studies.memory.pomdp_suite import (
    FULL_OBSERVATIONS,
    NAME,
    SCALES,
    TASKS,
    VERSION,
    Settings,
    budget_of,
    label,
    run_fingerprint,
    run_job,
    with_tasks,
)
from neuromod_rl.studies.memory.summary import fmt_steps, plot_curves, summarise, verdicts
from neuromod_rl.studies.memory.throughput import time_all
from neuromod_rl.studies.registry import Study
from neuromod_rl.studies.scaffold import multiseed
from neuromod_rl.studies.scaffold.multiseed import StudyOptions
from neuromod_rl.studies.scaffold.report import Report, save_figure


def train_all(s: Settings, seeds: list[int], out: Path, scale: str, options: StudyOptions) -> dict:
    """Every (task, agent, seed) not in the study's progress file yet; ``{("task/agent", seed): result}``."""
    progress = multiseed.Progress(out, NAME, scale)
    jobs = []
    for task in s.tasks:
        budget = budget_of(task, s, options)
        for agent in s.agents:
            fp = run_fingerprint(task, agent, budget, s, VERSION)
            jobs += [multiseed.Job(f"{task}/{agent}", seed, fp, run_job, (budget, s)) for seed in seeds]
    return multiseed.run_jobs(progress, jobs, options.workers)


def run(scale: str, seed: int, out: Path, command: str, options: StudyOptions | None = None) -> Path:
    options = options or StudyOptions()
    s = with_tasks(SCALES[scale], options.tasks)
    seeds = multiseed.seed_list(seed, options.seeds or s.seeds)
    settings = {**s.__dict__, "tasks (rl-zoo3 settings)": {k: TASKS[k] for k in s.tasks}}
    report = Report(NAME, "Memory suite: plastic policies against RecurrentPPO on velocity-masked tasks",
                    command, seed, scale, settings, seeds=seeds)  # fmt: skip
    results = train_all(s, seeds, out, scale, options)
    speed = time_all(s)
    summary = summarise(results, s, seeds, speed)
    for agent in s.agents:
        if agent.startswith("plastic"):
            for claim in verdicts(summary, agent):
                report.claim(*claim)
    rows = []
    for task, data in summary.items():
        for agent, r in data["rows"].items():
            med, q1, q3 = r["final"]
            to_anchor = fmt_steps(r["to_anchor"]) if data["learned"] else "no level (RecurrentPPO did not learn)"
            rows.append([task, label(agent), f"{med:.1f} [{q1:.1f}, {q3:.1f}]", fmt_steps(r["to_threshold"]),
                         to_anchor, f"{r['steps_per_second']:.0f}", f"{r['seconds']:.0f}"])
    header = ["task", "agent", "final return, median [IQR]", "steps to threshold", "steps to RecurrentPPO's final",
              "env-steps/s (timed)", "train s (median, as run)"]  # fmt: skip
    report.add("## Results\n\n" + markdown_table(header, rows))
    skipped = [t for t in SCALES[scale].tasks if t not in s.tasks]
    if skipped:
        report.add(f"**Not in this report** (left out with `--tasks`): {', '.join(skipped)}. The suite's claims "
                   "above cover only the tasks that ran.")
    thresholds = "\n".join(f"- {t}: {TASKS[t].threshold:g} ({TASKS[t].threshold_source})" for t in s.tasks)
    plot = plot_curves(results, s.tasks, s.agents, seeds, out, "pomdp_curves.png")
    control = ("The control row trains memoryless PPO with the task's settings on the unmasked env "
               f"({', '.join(FULL_OBSERVATIONS[t] for t in s.tasks)}): where it reaches the threshold and no "
               "agent on the masked task does, the settings and budget suffice for the task itself, and what fails "
               "is learning it from what the mask leaves.")
    report.add(f"## Thresholds\n\n{thresholds}\n\n{control}\n\n{plot}")
    report.add(_trace_section(results, s, seeds, out))
    progress = multiseed.Progress(out, NAME, scale)
    report.add(f"Every run's numbers: `{progress.path.name}`. {progress.provenance()}")
    return report.write(out)


def _trace_section(results: dict, s: Settings, seeds: list[int], out: Path) -> str:
    """How saturated each plastic core's fast weights are, and how much M(t) varies, over training."""
    plastic = [a for a in s.agents if a.startswith("plastic")]
    rows, curves, steps = [], {}, None
    for task in s.tasks:
        for agent in plastic:
            stats = [results[(f"{task}/{agent}", k)].get("trace_statistics") or [] for k in seeds
                     if (f"{task}/{agent}", k) in results]  # fmt: skip
            stats = [st for st in stats if st]
            if not stats:
                continue
            late = [st[-max(1, len(st) // 5):] for st in stats]  # the last fifth of training
            clip = multiseed.fmt_miqr([float(np.mean([r[1] for r in st])) for st in late])
            spread = multiseed.fmt_miqr([float(np.nanmean([np.nan if r[2] is None else r[2] for r in st]))
                                         for st in late])  # fmt: skip
            rows.append([task, label(agent), len(stats), clip, spread])
            if task == s.tasks[-1]:
                n = min(len(st) for st in stats)
                curves[label(agent)] = [[r[1] for r in st[:n]] for st in stats]
                steps = np.asarray([r[0] for r in stats[0][:n]], dtype=float)
    if not rows:
        return "## The plastic cores' fast weights\n\nNo trace statistics were recorded."
    table = markdown_table(["task", "agent", "seeds", "share of fast weights at the clip bound (last fifth)",
                            "std of M(t) (last fifth)"], rows)  # fmt: skip
    plot = ""
    if curves:
        fig, axes = new_figure(width=5.5)
        multiseed.plot_bands(axes[0], steps, curves, "share of |F| at the clip bound", "env steps")
        axes[0].set_title(f"{s.tasks[-1]}: trace saturation during training", fontsize=9)
        plot = save_figure(fig, out, "pomdp_traces.png")
    return ("## The plastic cores' fast weights\n\nPlasticPPO logs, every rollout, the share of fast-weight "
            "entries sitting at the rule's clip bound (|F| = 1) and the spread of the neuromodulatory signal "
            "M(t); below, their medians over seeds (and IQRs) in the last fifth of training.\n\n"
            f"{table}\n\n{plot}")


STUDY = Study(
    "pomdp",
    "the default plastic core matches rl-zoo3's tuned RecurrentPPO on velocity-masked tasks",
    run,
    tasks=tuple(TASKS),
)
