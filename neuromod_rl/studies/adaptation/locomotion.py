"""The MuJoCo adaptation studies' common frame: three agents trained on equal env-step budgets (the
plastic agent with PlasticPPO, feed-forward PPO, RecurrentPPO with an LSTM), each from its YAML in
``configs/``, per scale and seed; one job per (agent, seed) trains (or resumes) the run, then
hands the loaded model to the study's evaluation function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuromod_rl.experiment.curves import learning_curve
from neuromod_rl.experiment.plots.figures import new_figure
from neuromod_rl.studies.scaffold import multiseed, rl
from neuromod_rl.studies.scaffold.report import WALL_TIMES, Report, save_figure

PLASTIC, PPO, LSTM = "plastic (PlasticPPO)", "MLP PPO", "LSTM (RecurrentPPO)"
AGENT_ORDER = (PLASTIC, PPO, LSTM)


@dataclass(frozen=True)
class Scale:
    """A study's size. ``n_timesteps=None`` keeps each YAML's budget (the default scale);
    ``changes`` is merged into every agent's config (smoke: tiny rollouts and short episodes)."""

    seeds: int = 3
    n_timesteps: int | None = None
    eval_episodes: int = 32
    changes: dict[str, Any] = field(default_factory=dict)


def smoke_changes(episode: int, change_at: int) -> dict[str, Any]:
    """Seconds-long runs for the tests: 2 envs, one short rollout per update, short episodes."""
    return {
        "n_envs": 2,
        "env_kwargs": {"change_at": change_at, "max_episode_steps": episode},
        "hyperparameters": {"n_steps": episode, "batch_size": episode, "n_epochs": 1},
        "checkpoint_freq": 0,
    }


#: the scales of the MuJoCo studies: seconds for the tests, each YAML's budget, the paper's size
SCALES = {
    "smoke": Scale(seeds=2, n_timesteps=160, eval_episodes=2, changes=smoke_changes(40, 20)),
    "default": Scale(),
    "paper": Scale(seeds=5, n_timesteps=2_000_000, eval_episodes=64),
}


def agents(files: dict[str, str]) -> dict[str, rl.Agent]:
    """``{label: Agent}`` from ``{label: YAML file name}``."""
    return {label: rl.yaml_agent(label, name) for label, name in files.items()}


def job(agent_name: str, seed: int, study: str, agent: rl.Agent, scale: Scale, runs_dir: Path, train_fp: str,
        evaluator: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Train (or resume, or reuse) one (agent, seed) and evaluate it with ``evaluator(cfg, model,
    normalizer, seed, episodes)``; the result adds the learning curve and the training budget."""
    cfg = agent.resolved(seed, scale.n_timesteps, **scale.changes)
    run = rl.train_or_resume(agent, cfg, rl.run_path(runs_dir, study, agent_name, seed, train_fp))
    model, normalizer = rl.load_trained(run, cfg)
    result = evaluator(cfg, model, normalizer, seed, scale.eval_episodes)
    result.update(n_timesteps=cfg.n_timesteps, run=str(run.path), learning_curve=learning_curve(run, cfg.n_timesteps),
                  resumed=rl.was_resumed(run))
    return result


def jobs(study: str, table: dict[str, rl.Agent], seeds: list[int], scale: Scale, runs_dir: Path,
         evaluator: Callable[..., dict[str, Any]], version: str) -> tuple[list[multiseed.Job], dict[str, Any]]:
    """One :class:`~.multiseed.Job` per (agent, seed), and each agent's resolved config (for the report).

    A result's fingerprint covers the agent's resolved config (budget and plastic core included), the
    evaluation size and ``version`` (bump it when the study's evaluation changes); the run directory's
    covers the resolved config alone, so a new evaluation re-evaluates the trained runs, not retrains them."""
    out, described = [], {}
    for name, agent in table.items():
        cfg = agent.resolved(seeds[0], scale.n_timesteps, **scale.changes)
        described[name] = agent.describe(cfg)
        fp = multiseed.fingerprint([described[name], scale.eval_episodes, version])
        train_fp = multiseed.fingerprint(described[name])
        out += [multiseed.Job(name, s, fp, job, (study, agent, scale, runs_dir, train_fp, evaluator)) for s in seeds]
    return out, described


def plot_learning(results: dict, names: list[str], path_out: Path, filename: str, title: str) -> str:
    fig, (ax,) = new_figure(width=6)
    budget = max(r["n_timesteps"] for r in results.values())
    curves = {n: [r["learning_curve"] for (a, _), r in results.items() if a == n] for n in names}
    x = (np.arange(len(next(iter(results.values()))["learning_curve"])) + 0.5) * budget / 20
    multiseed.plot_bands(ax, x, curves, "training episode return", "env steps")
    ax.set_title(title)
    return save_figure(fig, path_out, filename)


def plot_within_episode(results: dict, names: list[str], key: str, change_at: int | None, ylabel: str,
                        title: str, path_out: Path, filename: str) -> str:
    """Median over seeds of each seed's mean per-step curve ``key``, with the change marked."""
    fig, (ax,) = new_figure(width=6)
    curves = {n: [r[key] for (a, _), r in results.items() if a == n] for n in names}
    n = max(len(c) for cs in curves.values() for c in cs)
    multiseed.plot_bands(ax, np.arange(n), curves, ylabel, "step in the episode")
    if change_at is not None:
        ax.axvline(change_at, color="k", linestyle="--", linewidth=1)
    ax.set_title(title)
    return save_figure(fig, path_out, filename)


def settings_section(described: dict[str, Any], table: dict[str, rl.Agent]) -> str:
    lines = ["## Agents' settings (resolved configs)", ""]
    for name, d in described.items():
        cfg = dict(d["config"])
        lines.append(f"- **{name}** from `{table[name].source}`: algo `{cfg['algo']}`, policy `{cfg['policy']}`, "
                     f"`policy_kwargs` {cfg['policy_kwargs']}, `n_envs` {cfg['n_envs']}, `n_timesteps` "
                     f"{cfg['n_timesteps']}, `normalize` {cfg['normalize']}, wrappers {cfg['wrappers']}, "
                     f"`env_kwargs` {cfg['env_kwargs']}, hyperparameters {cfg['hyperparameters']}")
    return "\n".join(lines)


@dataclass
class Outcome:
    """A study's trained and evaluated agents, ready for its claims and tables."""

    report: Report
    results: dict[tuple[str, int], dict[str, Any]]
    names: list[str]
    seeds: list[int]
    table: dict[str, rl.Agent]
    described: dict[str, Any]
    progress: multiseed.Progress
    scale: Scale

    def median(self, agent: str, key: str) -> float:
        return multiseed.median_of(self.results, agent, key)

    def first(self, key: str, default: Any = None) -> Any:
        return self.results[(self.names[0], self.seeds[0])].get(key, default)


def train_all(name: str, title: str, files: dict[str, str], scales: dict[str, Scale], scale: str, seed: int,
              out: Path, command: str, options: multiseed.StudyOptions,
              evaluator: Callable[..., dict[str, Any]], version: str) -> Outcome:
    """Train (or reuse) and evaluate every (agent, seed) of a MuJoCo study; the report is started
    (its clock too) before the first run."""
    sc = options.scale(scales[scale])
    seeds = multiseed.seed_list(seed, options.seeds or sc.seeds)
    report = Report(name, title, command, seed, scale, {"scale": sc.__dict__, "seeds": seeds}, seeds=seeds)
    table = agents(files)
    progress = multiseed.Progress(out, name, scale)
    todo, described = jobs(name, table, seeds, sc, options.runs_dir, evaluator, version)
    results = multiseed.run_jobs(progress, todo, options.workers)
    return Outcome(report, results, list(table), seeds, table, described, progress, sc)


#: how the studies run RecurrentPPO (``algo: recurrent_ppo``), said in every MuJoCo report
RECURRENT_PPO_NOTE = """\
RecurrentPPO is sb3-contrib's algorithm with every setting above; `algo: recurrent_ppo` trains its LSTM
over each whole minibatch sequence in one call where sb3-contrib loops over time steps in Python (the
same values and gradients to float rounding, tested; `neuromod_rl.agents.on_policy.recurrent_ppo`). Which
committed runs used sb3-contrib's own class (the same computation, slower) is in docs/reproduce.md."""


#: what these tasks can and cannot show, said in every report of this frame
ONE_STEP_NOTE = """\
## What this task can show

One step of feedback reveals the task here: every agent sees its previous action and reward, and from one
reward and the observed velocities (or one action and the joint velocities it produced) the target velocity or
the disabled joint follows. So a memoryless agent can adapt as well as a recurrent or plastic one, and no
result here shows what memory is for. The tasks where it is necessary, and the study that measures how much of
the oracle-Markov gap each agent closes on them, are `neuromod-rl reproduce adaptation-gap` (docs/envs.md,
"Tasks where memory is necessary")."""


def finish(o: Outcome, out: Path, options: multiseed.StudyOptions, tuning: str) -> Path:
    """The sections every MuJoCo study ends with, then the report is written."""
    o.report.add(ONE_STEP_NOTE)
    o.report.add(f"## How the baselines were tuned\n\n{tuning}\n\n{RECURRENT_PPO_NOTE}")
    o.report.add(f"## Compute\n\nSum of the runs' wall times: {o.progress.total_seconds():.0f} s "
                 f"({options.workers} worker process(es), one torch thread each). {WALL_TIMES}")
    o.report.add(settings_section(o.described, o.table))
    o.report.add(f"Every run's numbers and curves: `{o.progress.path.name}` (next to this report). "
                 f"{o.progress.provenance()}")
    return o.report.write(out)
