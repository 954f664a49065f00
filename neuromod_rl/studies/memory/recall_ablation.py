"""Where the plastic agent's samples go on pure memory tasks: one change at a time against RecurrentPPO.

On the recall task (``envs/recall.py``: name the symbol seen ``k = 4`` steps ago; random play returns
-0.5, perfect play 1.0), with one PPO setting shared by every agent (8 envs, ``n_steps=256``,
``batch_size=512``, 4 epochs, lr 3e-4, ``ent_coef=0.01``, 64 hidden units), RecurrentPPO and
``PlasticPPO("MlpPlasticPolicy")`` differ in more than plasticity. This study trains the plastic agent as
it was before it (one core shared by actor and critic, linear heads) and, one change at a time from it,
each difference:

* the critic: one core shared by actor and critic, or a core of its own (RecurrentPPO's critic LSTM);
* the heads after the core: linear, or 64x64 MLPs (RecurrentPPO's default ``net_arch``);
* plasticity itself: the plastic gain held at 0 and the rule untrained (the same gated network without
  fast weights);
* the plastic term: its initial gain ``alpha_init`` (10x), and Backpropamine's plastic-LSTM setting
  (fan-out modulation, clip 2, one gain per neuron);
* the minibatch: whole rollouts of ``n_steps`` per env, or 64-step training sequences (``bptt_length``);
* the size: 128 hidden units;

both differences in RecurrentPPO's layout at once (64x64 heads and a separate critic core), and the
library's default plastic agent as it is now, so the report reads as a before/after.
Every run goes through :func:`.pomdp_suite.launch` (a fresh process, one torch thread) and is kept in
``recall-ablation.<scale>.runs.json`` as it finishes. The report gives, per task and agent: the final
return, the env steps to 0.9 and to RecurrentPPO's final return, the wall time and env-steps/s as run,
and the learning curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuromod_rl.agents.common.core_factory import CoreConfig
from neuromod_rl.agents.on_policy.policies import DEFAULT_NET_ARCH
from neuromod_rl.experiment.markdown import markdown_table
from neuromod_rl.studies.memory import pomdp_suite
from neuromod_rl.studies.memory.core_sweep import default_core
from neuromod_rl.studies.memory.summary import fmt_steps, plot_curves, steps_to
from neuromod_rl.studies.registry import Study
from neuromod_rl.studies.scaffold import multiseed
from neuromod_rl.studies.scaffold.multiseed import StudyOptions
from neuromod_rl.studies.scaffold.report import Report

NAME = "recall-ablation"
VERSION = "recall-ablation-1"  # bump when the protocol of a run changes (its results are then recomputed)
TASKS = pomdp_suite.RECALL_TASKS
RPPO = "RecurrentPPO"
DEFAULT = "default"

#: the plastic agent before this study: one core for actor and critic, linear heads on it
FORMER_DEFAULT: dict[str, Any] = {"shared_core": True, "net_arch": []}
FORMER = "former default (shared core, linear heads)"
#: each plastic variant: the ``policy_kwargs`` (and :data:`.pomdp_suite.NOT_POLICY_KEYS`) of the run; every
#: one but the library's default changes one thing from the former default
VARIANTS: dict[str, dict[str, Any]] = {
    FORMER: FORMER_DEFAULT,
    "+ separate critic core": {**FORMER_DEFAULT, "shared_core": False},
    "+ 64x64 heads": {**FORMER_DEFAULT, "net_arch": [64, 64]},
    "+ plasticity off (alpha = 0)": {**FORMER_DEFAULT, pomdp_suite.FROZEN: True},
    "+ alpha_init=0.1 (10x)": {**FORMER_DEFAULT, "rule_kwargs": {"alpha_init": 0.1}},
    "+ Backpropamine's plastic LSTM term (fanout, clip 2, alpha per neuron)": {
        **FORMER_DEFAULT, "modulation": "fanout", "alpha_shape": "neuron", "rule_kwargs": {"clip": 2.0}},
    "+ 64-step sequences (bptt_length=64)": {**FORMER_DEFAULT, pomdp_suite.BPTT: 64},
    "+ hidden_size=128": {**FORMER_DEFAULT, "hidden_size": 128},
    "+ 64x64 heads and a separate critic core (RecurrentPPO's layout)": {"shared_core": False, "net_arch": [64, 64]},
    DEFAULT: {},
}  # fmt: skip
AGENTS = (RPPO, *VARIANTS)


@dataclass(frozen=True)
class Settings:
    tasks: tuple[str, ...] = ("Recall-v0",)
    agents: tuple[str, ...] = AGENTS
    seeds: int = 3
    budget_fraction: float = 1.0  # of the task's budget
    evals: int = 20  # evaluations during training
    eval_episodes: int = 20
    final_episodes: int = 100
    jobs: int = 1  # 1: each run in a fresh process (--workers runs several); 0: in this process
    overrides: tuple[tuple[str, Any], ...] = ()  # hyperparameters replaced for every task (smoke runs only)


SCALES = {
    "smoke": Settings(agents=(RPPO, DEFAULT, "+ plasticity off (alpha = 0)"), seeds=1, budget_fraction=0.001,
                      evals=2, eval_episodes=1, final_episodes=2, jobs=0,
                      overrides=(("n_steps", 32), ("n_epochs", 1), ("batch_size", 64))),
    "default": Settings(),
    "paper": Settings(tasks=tuple(TASKS), seeds=5),
}  # fmt: skip


def _launch_args(agent: str) -> tuple[str, dict[str, Any] | None]:
    """``(pomdp_suite agent, plastic keys)`` of a row of this study."""
    if agent == RPPO:
        return "recurrent_ppo", None
    return f"plastic_{CoreConfig().core}", VARIANTS[agent]


def run_agent(key: str, seed: int, budget: int, s: Settings) -> dict[str, Any]:
    """One (task/agent, seed) as a :class:`~.multiseed.Job`."""
    task, agent = key.split("/", 1)
    suite_agent, plastic = _launch_args(agent)
    return pomdp_suite.launch(task, suite_agent, seed, budget, s, plastic)


def train_all(s: Settings, seeds: list[int], out: Path, scale: str, options: StudyOptions) -> dict:
    """Every (task, agent, seed) not in the study's progress file yet; ``{("task/agent", seed): result}``."""
    progress = multiseed.Progress(out, NAME, scale)
    jobs = []
    for task in s.tasks:
        budget = pomdp_suite.budget_of(task, s, options)
        for agent in s.agents:
            suite_agent, plastic = _launch_args(agent)
            fp = pomdp_suite.run_fingerprint(task, suite_agent, budget, s, VERSION, plastic)
            jobs += [multiseed.Job(f"{task}/{agent}", seed, fp, run_agent, (budget, s)) for seed in seeds]
    return multiseed.run_jobs(progress, jobs, options.workers)


def summarise(results: dict, s: Settings, seeds: list[int]) -> dict[str, dict[str, Any]]:
    """Per task: RecurrentPPO's final return (``anchor``: median and IQR) and per agent its final return,
    steps to the task's threshold and to RecurrentPPO's final return (its lower quartile), the ratio of
    median steps to the threshold against RecurrentPPO's, train seconds (median) and env-steps/s (the best
    seed's: as run, each run's throughput is lowered by whatever else shared the cores)."""
    out: dict[str, dict[str, Any]] = {}
    for task in s.tasks:
        runs = {a: [results[(f"{task}/{a}", k)] for k in seeds if (f"{task}/{a}", k) in results] for a in s.agents}
        anchor = multiseed.median_iqr([r["final_return"] for r in runs.get(RPPO, [])]) if runs.get(RPPO) else None
        rows = {}
        for agent, rs in runs.items():
            if not rs:
                continue
            rows[agent] = {
                "final": multiseed.median_iqr([r["final_return"] for r in rs]),
                "to_threshold": [steps_to(r["curve"], TASKS[task].threshold) for r in rs],
                "to_anchor": [steps_to(r["curve"], anchor[1]) for r in rs] if anchor else [],
                "seconds": float(np.median([r["train_seconds"] for r in rs])),
                # the least disturbed run: the others shared the cores with more or less other work
                "steps_per_second": float(max(r["steps_per_second"] for r in rs)),
            }
        base = rows.get(RPPO)
        for row in rows.values():
            row["steps_ratio"] = _ratio(row["to_threshold"], base["to_threshold"]) if base else math.nan
            row["anchor_ratio"] = _ratio(row["to_anchor"], base["to_anchor"]) if base else math.nan
            row["speed_ratio"] = row["steps_per_second"] / base["steps_per_second"] if base else math.nan
        out[task] = {"anchor": anchor, "rows": rows}
    return out


def _ratio(mine: list[float], theirs: list[float]) -> float:
    """Median steps to a level over RecurrentPPO's (inf where this agent's median never got there)."""
    a, b = float(np.median(mine)), float(np.median(theirs))
    if not math.isfinite(b):
        return math.nan
    return a / b


def verdicts(summary: dict[str, dict[str, Any]]) -> list[tuple[str, bool, str]]:
    """The targets for the default agent, per task: steps to the threshold within 1.5x RecurrentPPO's (where
    RecurrentPPO's median seed does not reach it, the target cannot be met at this budget); steps to
    RecurrentPPO's final return (its lower quartile) within 1.5x its own; at least 2.5x its env-steps/s."""
    claims = []
    for task, data in summary.items():
        rows = data["rows"]
        if DEFAULT not in rows or RPPO not in rows:
            continue
        mine, theirs = rows[DEFAULT], rows[RPPO]
        level = TASKS[task].threshold
        claims.append((f"{task}: the default plastic agent reaches {level:g} in at most 1.5x RecurrentPPO's env steps",
                       bool(mine["steps_ratio"] <= 1.5),
                       f"steps to {level:g}: {fmt_steps(mine['to_threshold'])} vs {fmt_steps(theirs['to_threshold'])} "
                       f"({_ratio_words(mine['steps_ratio'])})"))  # fmt: skip
        q1 = data["anchor"][1]
        claims.append((f"{task}: the default plastic agent reaches RecurrentPPO's final return (its lower quartile, "
                       f"{q1:.3f}) in at most 1.5x RecurrentPPO's env steps", bool(mine["anchor_ratio"] <= 1.5),
                       f"{fmt_steps(mine['to_anchor'])} vs {fmt_steps(theirs['to_anchor'])} "
                       f"({_ratio_words(mine['anchor_ratio'])})"))  # fmt: skip
        claims.append((f"{task}: the default plastic agent runs at least 2.5x RecurrentPPO's env-steps/s",
                       bool(mine["speed_ratio"] >= 2.5),
                       f"{mine['steps_per_second']:.0f} vs {theirs['steps_per_second']:.0f} env-steps/s "
                       f"({mine['speed_ratio']:.2f}x; each agent's fastest seed, one torch thread a run)"))  # fmt: skip
    return claims


def _fmt_ratio(x: float) -> str:
    return "-" if math.isnan(x) else ("never" if math.isinf(x) else f"{x:.2f}x")


def _ratio_words(x: float) -> str:
    if math.isnan(x):
        return "RecurrentPPO's median seed does not reach it at this budget"
    return "the median seed does not reach it" if math.isinf(x) else f"{x:.2f}x"


def run(scale: str, seed: int, out: Path, command: str, options: StudyOptions | None = None) -> Path:
    options = options or StudyOptions()
    s = pomdp_suite.with_tasks(SCALES[scale], options.tasks, TASKS, NAME)
    seeds = multiseed.seed_list(seed, options.seeds or s.seeds)
    settings = {**s.__dict__, "default core": default_core(), "default heads": list(DEFAULT_NET_ARCH),
                "variants": {v: VARIANTS[v] for v in s.agents if v != RPPO},
                "task settings": {t: TASKS[t].hyperparameters for t in s.tasks}}  # fmt: skip
    report = Report(NAME, "Where the plastic agent's samples go on recall tasks: one change at a time",
                    command, seed, scale, settings, seeds=seeds)  # fmt: skip
    results = train_all(s, seeds, out, scale, options)
    summary = summarise(results, s, seeds)
    for claim in verdicts(summary):
        report.claim(*claim)
    report.add(f"The default plastic agent: `{default_core()}`, `net_arch={list(DEFAULT_NET_ARCH)}`, policy defaults "
               "otherwise. The rows marked + change one thing from the former default (one core for actor and critic, "
               "linear heads), RecurrentPPO's layout two. RecurrentPPO runs at its own defaults "
               "(`MlpLstmPolicy`: a critic LSTM, 64x64 heads) with `lstm_hidden_size=64`; every agent shares the PPO "
               "setting in the settings above. Steps to a level are the first evaluation (deterministic actions) at "
               "or above it; train s is the median run's training time and env-steps/s the fastest seed's (one torch "
               "thread per run, `--workers` runs at once, evaluations excluded; other work on the machine slows runs "
               "unevenly, so the fastest seed is the fairest reading).")
    rows = []
    for task, data in summary.items():
        for agent, r in data["rows"].items():
            med, q1, q3 = r["final"]
            rows.append([task, agent, f"{med:.3f} [{q1:.3f}, {q3:.3f}]", fmt_steps(r["to_threshold"]),
                         fmt_steps(r["to_anchor"]) if r["to_anchor"] else "-", _fmt_ratio(r["anchor_ratio"]),
                         f"{r['seconds']:.0f}", f"{r['steps_per_second']:.0f}", _fmt_ratio(r["speed_ratio"])])
    header = ["task", "agent", "final return, median [IQR]", "steps to 0.9", "steps to RecurrentPPO's final (its Q1)",
              "vs RecurrentPPO", "train s", "env-steps/s", "speed vs RecurrentPPO"]
    report.add("## Results\n\n" + markdown_table(header, rows))
    progress = multiseed.Progress(out, NAME, scale)
    report.add(f"## Compute\n\nSum of the runs' wall times: {progress.total_seconds() / 60:.0f} min; every run's "
               f"numbers: `{progress.path.name}`. {progress.provenance()}")
    plot = plot_curves(results, s.tasks, s.agents, seeds, out, f"{NAME}_curves.png", str, 6.0)
    report.add(f"## Learning curves\n\nMedian and IQR over seeds; the dotted line is 0.9.\n\n{plot}")
    return report.write(out)


STUDY = Study(
    NAME,
    "which of the differences between PlasticPPO and RecurrentPPO costs samples on recall tasks",
    run,
    takes_budget=True,
    tasks=tuple(TASKS),
)
