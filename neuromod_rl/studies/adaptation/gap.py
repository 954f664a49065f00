"""How much adaptation a task needs, and how much of it each agent delivers: the meta-RL yardstick.

For each task (``gap_suite.TASKS``: the tasks built so that one step of feedback cannot reveal the task,
and, at ``--scale paper``, HalfCheetahVel for contrast), six agents train on trials of ``K`` episodes of
one task with the same PPO setting and budget: the oracle, Markov and reactive bounds (feed-forward PPO
given the observation alone, the observation with the previous action and reward, or that and the task) and three
memory agents on the reactive input (PlasticPPO at its default core, PlasticPPO with the plain RNN core,
RecurrentPPO). The report gives, per task:

* the bounds, and whether the task *needs* memory by measurement: the oracle-reactive gap is at least 25%
  of the oracle-Markov gap, and every oracle seed ends above every reactive seed;
* each agent's share of the oracle-Markov gap it closes, ``(R - R_markov) / (R_oracle - R_markov)``, per seed
  against the bounds' medians, as median [IQR] over seeds;
* the return of the trial's first and last episode (an agent that carries what it learnt across the
  boundary earns more in the last);
* each run's training time.

Every run is kept in ``adaptation-gap.<scale>.runs.json`` as it finishes (``--workers 2`` runs two at
once); a stopped study resumes from it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuromod_rl.experiment.markdown import markdown_table
from neuromod_rl.experiment.plots.figures import new_figure
from neuromod_rl.studies.adaptation import gap_suite
from neuromod_rl.studies.adaptation.gap_suite import AGENTS, TASKS, label
from neuromod_rl.studies.memory.pomdp_suite import with_tasks
from neuromod_rl.studies.registry import Study
from neuromod_rl.studies.scaffold import multiseed
from neuromod_rl.studies.scaffold.multiseed import StudyOptions
from neuromod_rl.studies.scaffold.report import Report, save_figure

NAME = "adaptation-gap"
VERSION = "adaptation-gap-1"  # bump when the protocol of a run changes (its results are then recomputed)
DEFAULT_AGENT = "plastic_lstm"
MEMORY_AGENTS = ("plastic_lstm", "plastic_rnn", "recurrent_ppo")
#: a task needs memory when the oracle-reactive gap is at least this share of the oracle-Markov gap
QUALIFYING_SHARE = 0.25


@dataclass(frozen=True)
class Settings:
    tasks: tuple[str, ...] = ("HiddenGoalCorridor-v0", "HalfCheetahHiddenGoal-v0", "HalfCheetahCueDir-v0",
                              "ReacherHiddenGoal-v0", "ReacherCue-v0")
    agents: tuple[str, ...] = AGENTS
    seeds: int = 3
    budget_fraction: float = 1.0  # of each task's budget
    evals: int = 10  # evaluations during training (the learning curve)
    eval_trials: int = 4
    final_trials: int = 20
    overrides: tuple[tuple[str, Any], ...] = ()  # PPO settings replaced for every task (smoke runs only)


SCALES = {
    "smoke": Settings(tasks=("HiddenGoalCorridor-v0",), seeds=1, budget_fraction=0.0002, evals=1, eval_trials=1,
                      final_trials=2, overrides=(("n_steps", 16), ("batch_size", 32), ("n_epochs", 1))),
    "default": Settings(),
    "paper": Settings(tasks=tuple(TASKS), seeds=5, budget_fraction=5.0, final_trials=50),
}  # fmt: skip


def budget_of(task: str, s: Settings, options: StudyOptions) -> int:
    """Env steps of a run on ``task``: ``--budget``, else the task's budget times the scale's fraction."""
    return options.budget or max(1, int(TASKS[task].budget * s.budget_fraction))


def train_all(s: Settings, seeds: list[int], out: Path, scale: str, options: StudyOptions) -> dict:
    """Every (task/agent, seed) run, trained or read back from the progress file."""
    progress = multiseed.Progress(out, NAME, scale)
    jobs = []
    for task in s.tasks:
        budget = budget_of(task, s, options)
        for agent in s.agents:
            fp = multiseed.fingerprint([gap_suite.describe(task, agent), budget, s.evals, s.eval_trials,
                                        s.final_trials, s.overrides, VERSION])  # fmt: skip
            args = (budget, s.evals, s.eval_trials, s.final_trials, dict(s.overrides))
            jobs += [multiseed.Job(f"{task}/{agent}", sd, fp, gap_suite.run_one, args) for sd in seeds]
    return multiseed.run_jobs(progress, jobs, options.workers)


def _runs(results: dict, task: str, agent: str, seeds: list[int]) -> list[dict[str, Any]]:
    return [results[(f"{task}/{agent}", k)] for k in seeds if (f"{task}/{agent}", k) in results]


def summarise(results: dict, s: Settings, seeds: list[int]) -> dict[str, Any]:
    """Per task: the bounds' medians, whether the task needs memory by measurement, and per agent the final
    return, the share of the gap closed, the first and last episode's return and the training time."""
    out: dict[str, Any] = {}
    for task in s.tasks:
        runs = {a: _runs(results, task, a, seeds) for a in s.agents}
        finals = {a: [r["final_return"] for r in rs] for a, rs in runs.items()}
        oracle, markov = (float(np.median(finals[b])) if finals.get(b) else math.nan for b in ("oracle", "markov"))
        reactive = float(np.median(finals["reactive"])) if finals.get("reactive") else math.nan
        gap = oracle - markov
        separated = bool(finals.get("oracle") and finals.get("reactive")
                         and min(finals["oracle"]) > max(finals["reactive"]))  # fmt: skip
        qualifies = bool(gap > 0 and oracle - reactive >= QUALIFYING_SHARE * gap and separated)
        rows = {}
        for agent, rs in runs.items():
            if not rs:
                continue
            shares = [(x - markov) / gap if gap > 0 else math.nan for x in finals[agent]]
            rows[agent] = {
                "final": multiseed.median_iqr(finals[agent]),
                "share": multiseed.median_iqr(shares),
                "shares": shares,
                "first": multiseed.median_iqr([r["episode_returns"][0] for r in rs]),
                "last": multiseed.median_iqr([r["episode_returns"][-1] for r in rs]),
                "rises": [r["episode_returns"][-1] > r["episode_returns"][0] for r in rs],
                "seconds": float(np.median([r["train_seconds"] for r in rs])),
                "steps_per_second": float(max(r["steps_per_second"] for r in rs)),
                "half": multiseed.median_iqr([_at_half(r["curve"]) for r in rs]),
                "end": multiseed.median_iqr([r["curve"][-1][1] for r in rs]),
            }
        out[task] = {"oracle": oracle, "markov": markov, "reactive": reactive, "gap": gap,
                     "reactive_gap": oracle - reactive, "separated": separated, "qualifies": qualifies,
                     "needs_memory": TASKS[task].needs_memory, "rows": rows}  # fmt: skip
    return out


def _at_half(curve: list[tuple[int, float]]) -> float:
    """The evaluation at (or just after) half the budget: with the final one, how much an agent still grew."""
    half = curve[-1][0] / 2
    return next(v for step, v in curve if step >= half)


def verdicts(summary: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """The issue's targets as claims: which tasks need memory by measurement; the default plastic agent closes
    half the gap on two of them; it closes more than RecurrentPPO in no more wall time; its return rises
    from the trial's first episode to its last where the reactive agent's does not."""
    claims = []
    built = {t: d for t, d in summary.items() if d["needs_memory"]}
    for task, d in built.items():
        share = d["reactive_gap"] / d["gap"] if d["gap"] > 0 else math.nan
        claims.append((f"{task} needs memory: the oracle-reactive gap is at least {QUALIFYING_SHARE:.0%} of the "
                       "oracle-Markov gap, every oracle seed above every reactive seed", d["qualifies"],
                       f"oracle {d['oracle']:.3g}, reactive {d['reactive']:.3g}, Markov {d['markov']:.3g}: "
                       f"oracle-reactive = {share:.0%} of the gap; seeds separated: {d['separated']}"))  # fmt: skip
    qualified = {t: d for t, d in built.items() if d["qualifies"]}
    half = [t for t, d in qualified.items()
            if DEFAULT_AGENT in d["rows"] and d["rows"][DEFAULT_AGENT]["share"][0] >= 0.5]
    shares = "; ".join(f"{t}: {d['rows'][DEFAULT_AGENT]['share'][0]:.0%}" for t, d in qualified.items()
                       if DEFAULT_AGENT in d["rows"]) or "no task qualifies"  # fmt: skip
    claims.append(("the default PlasticPPO closes at least 50% of the gap (median seed) on at least two tasks that "
                   "need memory", len(half) >= 2, shares))  # fmt: skip
    better, evidence = [], []
    for task, d in qualified.items():
        mine, theirs = d["rows"].get(DEFAULT_AGENT), d["rows"].get("recurrent_ppo")
        if not (mine and theirs):
            continue
        if mine["share"][0] > theirs["share"][0] and mine["steps_per_second"] >= theirs["steps_per_second"]:
            better.append(task)
        evidence.append(f"{task}: {mine['share'][0]:.0%} vs {theirs['share'][0]:.0%} of the gap at "
                        f"{mine['steps_per_second']:.0f} vs {theirs['steps_per_second']:.0f} env-steps/s")
    claims.append(("moonshot: the default PlasticPPO closes more of the gap than RecurrentPPO in no more training "
                   "time (the same env steps at no lower env-steps/s, each agent's fastest seed), on a task that needs "
                   "memory", bool(better), "; ".join(evidence) or "no task qualifies"))  # fmt: skip
    rising = [t for t, d in summary.items() if DEFAULT_AGENT in d["rows"] and "reactive" in d["rows"]
              and all(d["rows"][DEFAULT_AGENT]["rises"]) and not all(d["rows"]["reactive"]["rises"])]  # fmt: skip
    claims.append(("within a trial the default PlasticPPO's return rises from the first episode to the last (every "
                   "seed) on a task where the reactive agent's does not", bool(rising),
                   ", ".join(rising) or "on no task"))  # fmt: skip
    return claims


def gap_table(summary: dict[str, Any]) -> str:
    rows = []
    for task, d in summary.items():
        for agent, r in d["rows"].items():
            rows.append([task, label(agent), _miqr(r["final"]),
                         _miqr(r["share"], percent=True), _miqr(r["first"]), _miqr(r["last"]),
                         f"{sum(r['rises'])}/{len(r['rises'])}", f"{r['seconds']:.0f}", f"{r['steps_per_second']:.0f}"])
    return markdown_table(["task", "agent", "return per episode", "share of the gap closed", "episode 1",
                           "episode K", "seeds rising 1 to K", "train s", "env-steps/s"], rows)  # fmt: skip


def growth_table(summary: dict[str, Any]) -> str:
    rows = [[task, label(agent), _miqr(r["half"]), _miqr(r["end"])]
            for task, d in summary.items() for agent, r in d["rows"].items()]  # fmt: skip
    return markdown_table(["task", "agent", "at half the budget", "at the end"], rows)


def _miqr(v: tuple[float, float, float], percent: bool = False) -> str:
    if not all(math.isfinite(x) for x in v):
        return "n/a"
    if percent:
        return f"{v[0]:.0%} [{v[1]:.0%}, {v[2]:.0%}]"
    return f"{v[0]:.3g} [{v[1]:.3g}, {v[2]:.3g}]"


def plot_trials(results: dict, s: Settings, seeds: list[int], out: Path, filename: str) -> str:
    """Return of each episode of the trial, one panel per task, median and IQR over seeds."""
    fig, axes = new_figure(ncols=len(s.tasks), width=4.5)
    for ax, task in zip(axes, s.tasks):
        curves = {label(a): [r["episode_returns"] for r in _runs(results, task, a, seeds)] for a in s.agents}
        multiseed.plot_bands(ax, np.arange(1, TASKS[task].trial_episodes + 1), curves, "return of the episode",
                             "episode of the trial")  # fmt: skip
        ax.set_title(task, fontsize=9)
    return save_figure(fig, out, filename)


def plot_gap(summary: dict[str, Any], out: Path, filename: str) -> str:
    """Share of the oracle-Markov gap each agent closes (median, IQR bars), one group per task."""
    fig, (ax,) = new_figure(width=1.8 * len(summary) + 3)
    tasks = list(summary)
    agents = [a for a in AGENTS if any(a in d["rows"] for d in summary.values())]
    width = 0.8 / max(len(agents), 1)
    for j, agent in enumerate(agents):
        med = [summary[t]["rows"].get(agent, {}).get("share", (math.nan,) * 3) for t in tasks]
        x = np.arange(len(tasks)) + j * width
        y = np.array([m[0] for m in med])
        err = np.array([[m[0] - m[1] for m in med], [m[2] - m[0] for m in med]])
        ax.bar(x, y, width, yerr=np.nan_to_num(err), label=label(agent), capsize=2)
    ax.axhline(1.0, color="k", linewidth=0.8)
    ax.axhline(0.0, color="k", linewidth=0.8)
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, [t.removesuffix("-v0") for t in tasks], fontsize=7,
                  rotation=15)  # fmt: skip
    ax.set(ylabel="share of the oracle-Markov gap closed")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(fig, out, filename)


def plot_learning(results: dict, s: Settings, seeds: list[int], out: Path, filename: str) -> str:
    fig, axes = new_figure(ncols=len(s.tasks), width=4.5)
    for ax, task in zip(axes, s.tasks):
        rs = {label(a): _runs(results, task, a, seeds) for a in s.agents}
        curves = {name: [[v for _, v in r["curve"]] for r in runs] for name, runs in rs.items()}
        first = next(r for runs in rs.values() for r in runs)
        multiseed.plot_bands(ax, np.array([step for step, _ in first["curve"]]), curves,
                             "return per episode (evaluation)", "env steps")  # fmt: skip
        ax.set_title(task, fontsize=9)
    return save_figure(fig, out, filename)


PROTOCOL = """\
Every agent trains on trials of K episodes of one task (`Trial`: the task is drawn once per trial, the memory
agents keep their state across the episode boundaries, and the observation flags each episode's first step).
The bounds are feed-forward PPO (`MlpPolicy`, 64x64): the **Markov** agent sees the observation alone, the
**reactive** agent the observation with the previous action and reward (`PrevActionReward`), the **oracle**
the reactive input and the task (`TaskInObservation`; on these tasks the body's position is hidden, so the
reward is what tells even an agent that knows the goal that it has arrived). The memory agents see the
reactive input: PlasticPPO at its default core and heads, PlasticPPO with the plain RNN core, and RecurrentPPO
(`lstm_hidden_size=64`, its critic LSTM). All agents of a task share its PPO setting (Settings below) and
VecNormalize. Returns are per episode, averaged over the K episodes of each evaluation trial (discrete tasks:
sampled actions, since the best memoryless policy there is stochastic; MuJoCo tasks: the mean action). The
share of the gap closed is `(R - R_markov) / (R_oracle - R_markov)` per seed against the bounds' medians (1 =
the oracle's return, 0 = no better than the Markov agent). A task *needs memory by measurement* when the
oracle-reactive gap is at least 25% of the oracle-Markov gap and every oracle seed ends above every reactive
seed. The oracle is what a feed-forward PPO given the task reaches on the same budget, not the task's ceiling:
a share above 100% means a memory agent learnt the task better than that PPO did."""


def run(scale: str, seed: int, out: Path, command: str, options: StudyOptions | None = None) -> Path:
    options = options or StudyOptions()
    s = with_tasks(SCALES[scale], options.tasks, TASKS, NAME)
    seeds = multiseed.seed_list(seed, options.seeds or s.seeds)
    settings = {**s.__dict__, "budgets": {t: budget_of(t, s, options) for t in s.tasks},
                "tasks": {t: dataclasses.asdict(TASKS[t]) for t in s.tasks}}  # fmt: skip
    report = Report(NAME, "How much adaptation each task needs, and the share of it each agent delivers",
                    command, seed, scale, settings, seeds=seeds)  # fmt: skip
    results = train_all(s, seeds, out, scale, options)
    summary = summarise(results, s, seeds)
    for claim in verdicts(summary):
        report.claim(*claim)
    report.add("## Protocol\n\n" + PROTOCOL)
    bounds = [[t, TASKS[t].trial_episodes, budget_of(t, s, options), f"{d['oracle']:.3g}", f"{d['markov']:.3g}",
               f"{d['reactive']:.3g}", f"{d['reactive_gap'] / d['gap']:.0%}" if d["gap"] > 0 else "no gap",
               "yes" if d["qualifies"] else ("no" if d["needs_memory"] else "no (contrast task)")]
              for t, d in summary.items()]  # fmt: skip
    report.add("## Bounds (median over seeds)\n\n" + markdown_table(
        ["task", "K", "env steps", "oracle", "Markov", "reactive", "oracle-reactive, share of the gap",
         "needs memory by measurement"], bounds))  # fmt: skip
    report.add("## Share of the gap closed, and the trial's first and last episode\n\nMedian [IQR] over seeds. "
               "train s: the median run's training time (evaluations excluded); env-steps/s: the fastest seed's (one "
               "torch thread per run; other work on the machine slows runs unevenly).\n\n" + gap_table(summary))
    report.add("## Still learning? The evaluation at half the budget and at its end\n\nMedian [IQR] over seeds of the "
               "return per episode in the learning curve's evaluations (fewer trials than the final evaluation). An "
               "agent still rising at the end would gain from a longer run (`--budget`, or `--scale paper`: 5x the "
               "steps).\n\n" + growth_table(summary))
    report.add("## Plots\n\n" + plot_gap(summary, out, f"{NAME}_gap.png") + "\n\n"
               + plot_trials(results, s, seeds, out, f"{NAME}_trials.png") + "\n\n"
               + plot_learning(results, s, seeds, out, f"{NAME}_learning.png"))  # fmt: skip
    progress = multiseed.Progress(out, NAME, scale)
    report.add(f"## Compute\n\nSum of the runs' wall times: {progress.total_seconds() / 60:.0f} min; every run's "
               f"numbers: `{progress.path.name}`. {progress.provenance()}")
    return report.write(out)


STUDY = Study(
    NAME,
    "which tasks need memory (oracle, Markov and reactive bounds) and the share of the gap each agent closes",
    run,
    takes_budget=True,
    tasks=tuple(TASKS),
)
