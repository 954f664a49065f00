"""Which plastic-core settings win the memory suite: one setting changed at a time around the default.

The library's default plastic core (:class:`~neuromod_rl.agents.common.core_factory.CoreConfig`) should be
the one that learns best on the memory tasks people use recurrent policies for. This study trains
``PlasticPPO("MlpPlasticPolicy")`` on the suite's cheap velocity-masked tasks (``PendulumNoVel-v1``
and ``CartPoleNoVel-v1`` at rl-zoo3's budgets and tuned RecurrentPPO settings, exactly as in
:mod:`.pomdp`) with the default core and with one setting changed at a time: the core (``rnn``),
its size (``hidden_size`` 32 and 128), the sharing of the plastic gain (``alpha_shape`` ``neuron``
and ``scalar``), the modulation (``fanout``), the rule (``retroactive``, and the unmodulated
``hebbian``), and plasticity itself (the plastic gain held at 0 and the rule untrained: the same
gated network without fast weights, which tells whether the plasticity is doing the work), and the
training sequences (``bptt_length=batch_size``: minibatches of ``batch_size`` steps, as RecurrentPPO's,
where whole rollouts would give a task far fewer gradient steps; on CartPoleNoVel the rollout per env is
already shorter than ``batch_size``, so this variant is the default there). A
one-factor-at-a-time sweep cannot find interactions; it answers the question that matters for a
default: does any single change beat it?

Every run goes through :func:`.pomdp_suite.launch` (a fresh process, one torch thread), so its numbers are
those the suite would print. Results are kept in ``core-sweep.<scale>.runs.json`` as they finish.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuromod_rl.agents.common.core_factory import CoreConfig
from neuromod_rl.experiment.markdown import markdown_table
from neuromod_rl.studies.memory import pomdp_suite
from neuromod_rl.studies.memory.summary import fmt_steps, plot_curves, steps_to
from neuromod_rl.studies.registry import Study
from neuromod_rl.studies.scaffold import multiseed
from neuromod_rl.studies.scaffold.multiseed import StudyOptions
from neuromod_rl.studies.scaffold.report import Report

NAME = "core-sweep"
VERSION = "core-sweep-1"  # bump when the protocol of a run changes (its results are then recomputed)
TASKS = {k: pomdp_suite.TASKS[k] for k in ("PendulumNoVel-v1", "CartPoleNoVel-v1", "MountainCarContinuousNoVel-v0")}

#: each variant: the plastic ``policy_kwargs`` changed from the library's default core
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "core=rnn": {"core": "rnn"},
    "hidden_size=32": {"hidden_size": 32},
    "hidden_size=128": {"hidden_size": 128},
    "alpha_shape=neuron": {"alpha_shape": "neuron"},
    "alpha_shape=scalar": {"alpha_shape": "scalar"},
    "modulation=fanout": {"modulation": "fanout"},
    "rule=retroactive": {"rule": "retroactive"},
    "rule=hebbian (unmodulated)": {"rule": "hebbian"},
    "plasticity off (alpha = 0)": {pomdp_suite.FROZEN: True},
    "bptt_length=batch_size (RecurrentPPO's minibatches)": {pomdp_suite.MATCHED_MINIBATCH: True},
}


@dataclass(frozen=True)
class Settings:
    tasks: tuple[str, ...] = ("PendulumNoVel-v1", "CartPoleNoVel-v1")
    variants: tuple[str, ...] = tuple(VARIANTS)
    seeds: int = 3
    budget_fraction: float = 1.0  # of the zoo's budget
    evals: int = 20  # evaluations during training
    eval_episodes: int = 10
    final_episodes: int = 30
    jobs: int = 1  # 1: each run in a fresh process (--workers runs several); 0: in this process
    overrides: tuple[tuple[str, Any], ...] = ()  # hyperparameters replaced for every task (smoke runs only)


SCALES = {
    "smoke": Settings(tasks=("PendulumNoVel-v1",), variants=("default", "hidden_size=32"), seeds=1,
                      budget_fraction=0.005, evals=2, eval_episodes=1, final_episodes=1, jobs=0,
                      overrides=(("n_steps", 32), ("n_epochs", 1), ("batch_size", 64))),
    "default": Settings(),
    "paper": Settings(tasks=tuple(TASKS), seeds=5),
}  # fmt: skip


def default_core() -> str:
    """The library's default core, in words (``core=lstm, hidden_size=64, ...``)."""
    c = CoreConfig()
    return (f"core={c.core}, hidden_size={c.hidden_size}, alpha_shape={c.alpha_shape}, rule={c.rule}, "
            f"modulation={c.cell_modulation}")


def _agent() -> str:
    return f"plastic_{CoreConfig().core}"


def run_variant(key: str, seed: int, budget: int, s: Settings) -> dict[str, Any]:
    """One (task/variant, seed) as a :class:`~.multiseed.Job`."""
    task, variant = key.split("/", 1)
    return pomdp_suite.launch(task, _agent(), seed, budget, s, VARIANTS[variant])


def train_all(s: Settings, seeds: list[int], out: Path, scale: str, options: StudyOptions) -> dict:
    """Every (task, variant, seed) not in the study's progress file yet; ``{("task/variant", seed): result}``."""
    progress = multiseed.Progress(out, NAME, scale)
    jobs = []
    for task in s.tasks:
        budget = pomdp_suite.budget_of(task, s, options)
        for variant in s.variants:
            fp = pomdp_suite.run_fingerprint(task, _agent(), budget, s, VERSION, VARIANTS[variant])
            jobs += [multiseed.Job(f"{task}/{variant}", seed, fp, run_variant, (budget, s)) for seed in seeds]
    return multiseed.run_jobs(progress, jobs, options.workers)


def summarise(results: dict, s: Settings, seeds: list[int]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{task: {variant: {"final": (median, q1, q3), "to_threshold": [...], "seconds": median, "rank": r}}}``;
    rank 1 is the highest median final return on that task; equal returns (a task's ceiling) are ranked
    by the median steps to the threshold, and what is still equal shares its places."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for task in s.tasks:
        rows = {}
        for variant in s.variants:
            rs = [results[(f"{task}/{variant}", k)] for k in seeds if (f"{task}/{variant}", k) in results]
            if rs:
                rows[variant] = {
                    "final": multiseed.median_iqr([r["final_return"] for r in rs]),
                    "to_threshold": [steps_to(r["curve"], TASKS[task].threshold) for r in rs],
                    "seconds": float(np.median([r["train_seconds"] for r in rs])),
                }
        keys = {v: (-r["final"][0], float(np.median(r["to_threshold"]))) for v, r in rows.items()}
        for variant, rank in _ranks(keys).items():
            rows[variant]["rank"] = rank
        out[task] = rows
    return out


def _ranks(keys: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Rank 1 for the smallest key; equal keys share the mean of their places (two variants that both
    reach the task's ceiling in the same number of steps tie, whatever their order in the table)."""
    order = sorted(keys.values())
    return {v: order.index(k) + 1 + (order.count(k) - 1) / 2 for v, k in keys.items()}


def mean_ranks(summary: dict[str, dict[str, dict[str, Any]]]) -> dict[str, float]:
    """Each variant's rank averaged over the tasks (lower is better)."""
    variants = {v for rows in summary.values() for v in rows}
    return {v: float(np.mean([rows[v]["rank"] for rows in summary.values() if v in rows])) for v in variants}


def verdicts(summary: dict[str, dict[str, dict[str, Any]]]) -> list[tuple[str, bool, str]]:
    """Per task: the default is the best variant or within the best one's IQR; overall: best mean rank."""
    claims = []
    for task, rows in summary.items():
        if "default" not in rows:
            continue
        best = min(rows, key=lambda v: rows[v]["rank"])
        (m, _, _), (bm, bq1, bq3) = rows["default"]["final"], rows[best]["final"]
        claims.append((f"{task}: no single change beats the default core (the default's median is at least the "
                       "best variant's lower quartile)", bool(m >= bq1),
                       f"default {m:.1f}; best: {best} {bm:.1f} [{bq1:.1f}, {bq3:.1f}]"))  # fmt: skip
    ranks = mean_ranks(summary)
    if "default" in ranks and len(summary) > 1:
        best = min(ranks, key=lambda v: (ranks[v], v != "default"))
        claims.append(("the default core has the best mean rank over the tasks", best == "default",
                       f"default {ranks['default']:g}; best: {best} {ranks[best]:g}"))
    return claims


def run(scale: str, seed: int, out: Path, command: str, options: StudyOptions | None = None) -> Path:
    options = options or StudyOptions()
    s = pomdp_suite.with_tasks(SCALES[scale], options.tasks, TASKS, NAME)
    seeds = multiseed.seed_list(seed, options.seeds or s.seeds)
    settings = {**s.__dict__, "default core": default_core(), "variants": {v: VARIANTS[v] for v in s.variants}}
    report = Report(NAME, "Choosing the default plastic core: one setting at a time on the memory suite",
                    command, seed, scale, settings, seeds=seeds)  # fmt: skip
    results = train_all(s, seeds, out, scale, options)
    summary = summarise(results, s, seeds)
    for claim in verdicts(summary):
        report.claim(*claim)
    report.add(f"The default core: `{default_core()}`. Every variant changes one setting of it; the tasks run "
               "at rl-zoo3's budgets with its tuned RecurrentPPO hyperparameters, as in `neuromod-rl reproduce "
               "pomdp`. Rank 1 is the highest median final return on a task; equal returns (CartPole's ceiling of 500) "
               "are ranked by the median steps to the threshold, and variants equal on both share their places.")
    rows = []
    for task, data in summary.items():
        for variant, r in sorted(data.items(), key=lambda kv: kv[1]["rank"]):
            med, q1, q3 = r["final"]
            rows.append([task, variant, r["rank"], f"{med:.1f} [{q1:.1f}, {q3:.1f}]",
                         fmt_steps(r["to_threshold"]), f"{r['seconds']:.0f}"])  # fmt: skip
    header = ["task", "variant", "rank", "final return, median [IQR]", "steps to threshold",
              "train s (median, as run)"]  # fmt: skip
    report.add("## Results\n\n" + markdown_table(header, rows))
    ranks = mean_ranks(summary)
    rank_rows = [[v, *[summary[t][v]["rank"] if v in summary[t] else "-" for t in s.tasks], f"{ranks[v]:g}"]
                 for v in sorted(ranks, key=lambda v: (ranks[v], v))]  # fmt: skip
    report.add("## Mean rank over the tasks\n\n" + markdown_table(["variant", *s.tasks, "mean rank"], rank_rows))
    progress = multiseed.Progress(out, NAME, scale)
    report.add(f"## Compute\n\nSum of the runs' wall times: {progress.total_seconds() / 60:.0f} min (one process "
               f"and one torch thread per run, `--workers` at once); every run's numbers: `{progress.path.name}`. "
               f"{progress.provenance()}")
    thresholds = "\n".join(f"- {t}: {TASKS[t].threshold:g} ({TASKS[t].threshold_source})" for t in s.tasks)
    plot = plot_curves(results, s.tasks, s.variants, seeds, out, "core-sweep_curves.png", str, 5.0)
    report.add(f"## Thresholds\n\n{thresholds}\n\n{plot}")
    return report.write(out)


STUDY = Study(
    "core-sweep",
    "which plastic-core setting learns the memory suite best, one change at a time",
    run,
    tasks=tuple(TASKS),
)
