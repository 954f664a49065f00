"""Backpropamine's comparison (Miconi et al., ICLR 2019): retroactive and simple neuromodulation
against non-modulated plasticity and a non-plastic network, sizes matched by parameter count.

Variants, all PlasticPPO on the default plastic core (``core`` and ``alpha_shape`` from CoreConfig;
``--core rnn`` puts every variant on the paper's plain recurrent core instead):

* retroactive modulation (``rule="retroactive"``: eligibility trace gated by ``M(t)``);
* simple modulation (``rule="neuromod"``);
* plastic, non-modulated (``rule="clipped"``: the clipped Hebbian trace);
* non-plastic (the clipped-rule network with its plastic gain held at 0 and the rule untrained:
  an ordinary recurrent network of the same shape);
* optionally an LSTM (RecurrentPPO).

The simple-modulation network has the reference hidden size (CoreConfig's default, or the paper's
100 at ``--scale paper``); every other variant gets the hidden size whose count of trainable
parameters is closest to it (the paper: 100 modulated, 101 plastic, 139 non-plastic).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuromod_rl.experiment.curves import learning_curve
from neuromod_rl.experiment.markdown import markdown_table
from neuromod_rl.experiment.plots.figures import new_figure
from neuromod_rl.studies.scaffold import multiseed, rl
from neuromod_rl.studies.scaffold.report import WALL_TIMES, Report, save_figure

RETRO, SIMPLE, PLASTIC, RNN, LSTM = ("retroactive modulation", "simple modulation", "plastic (non-modulated)",
                                     "non-plastic (alpha = 0)", "LSTM (RecurrentPPO)")  # fmt: skip


@dataclass(frozen=True)
class Scale:
    seeds: int = 3
    n_timesteps: int = 500_000
    n_envs: int = 16
    hidden: int | None = None  # reference hidden size; None: CoreConfig's default
    eval_episodes: int = 200
    env: str | None = None  # a different task id (e.g. the paper's maze size)
    changes: dict[str, Any] = field(default_factory=dict)  # extra hyperparameter overrides
    wrappers: list[Any] = field(default_factory=list)  # env wrappers (config `wrappers` entries)


UNMODULATED = rl.UNMODULATED


def variants(name: str, env: str, hyperparameters: dict[str, Any], scale: Scale, lstm: bool,
             reward_index: int = -2, core: str | None = None) -> dict[str, rl.Agent]:
    """The agents before size matching (all at the reference hidden size). ``reward_index``: where the
    task's observation holds the previous reward (read if the default core's modulation is external);
    ``core``: the plastic core of every PlasticPPO variant (``None``: the default core)."""
    hidden = scale.hidden or rl.default_core()["hidden_size"]
    # linear heads on the core, as Backpropamine's networks (and the LSTM baseline here) have
    plastic = {"hidden_size": hidden, "reward_index": reward_index, "net_arch": []}
    if core is not None:  # else the default core, filled in when the config is resolved
        plastic["core"] = core
    base = {"env": scale.env or env, "n_envs": scale.n_envs, "n_timesteps": scale.n_timesteps,
            "hyperparameters": {**hyperparameters, **scale.changes}, "checkpoint_freq": 100_000,
            "algo": "plastic_ppo", "policy": "MlpPlasticPolicy", "wrappers": list(scale.wrappers)}  # fmt: skip
    out = {
        RETRO: rl.Agent(RETRO, {**base, "name": f"{name}_retroactive",
                                "policy_kwargs": {"rule": "retroactive", **plastic}}),
        SIMPLE: rl.Agent(SIMPLE, {**base, "name": f"{name}_neuromod",
                                  "policy_kwargs": {"rule": "neuromod", **plastic}}),
        PLASTIC: rl.Agent(PLASTIC, {**base, "name": f"{name}_plastic", "policy_kwargs": {**UNMODULATED, **plastic}}),
        RNN: rl.Agent(RNN, {**base, "name": f"{name}_rnn", "policy_kwargs": {**UNMODULATED, **plastic}},
                      frozen_plasticity=True),
    }  # fmt: skip
    if lstm:
        out[LSTM] = rl.Agent(LSTM, {**base, "name": f"{name}_lstm", "algo": "recurrent_ppo", "policy": "MlpLstmPolicy",
                                    "policy_kwargs": {"lstm_hidden_size": hidden, "net_arch": []}})  # fmt: skip
    return out


def match_sizes(table: dict[str, rl.Agent], progress: multiseed.Progress) -> dict[str, tuple[int, int]]:
    """``{variant: (hidden size, trainable parameters)}``, every variant matched to simple modulation;
    cached in the progress file (building models to count them takes a few seconds)."""
    ref = table[SIMPLE]
    target = rl.count_trainable(ref)
    cache = progress.data.setdefault("matched_sizes", {})
    out = {}
    for name, agent in table.items():
        key = multiseed.fingerprint([agent.config, agent.frozen_plasticity, target])
        if name == SIMPLE:
            out[name] = (agent.config["policy_kwargs"]["hidden_size"], target)
        elif key in cache:
            out[name] = tuple(cache[key])
        else:
            size_key = "lstm_hidden_size" if agent.config["algo"] == "recurrent_ppo" else "hidden_size"
            out[name] = rl.matched_size(agent, size_key, target, upper=4 * out.get(SIMPLE, (64,))[0] + 8)
            cache[key] = list(out[name])
    return out


def sized(table: dict[str, rl.Agent], sizes: dict[str, tuple[int, int]]) -> dict[str, rl.Agent]:
    out = {}
    for name, agent in table.items():
        key = "lstm_hidden_size" if agent.config["algo"] == "recurrent_ppo" else "hidden_size"
        cfg = rl.merged(agent.config, {"policy_kwargs": {key: sizes[name][0]}})
        out[name] = rl.Agent(name, cfg, agent.frozen_plasticity, agent.source)
    return out


def job(label: str, seed: int, agent: rl.Agent, runs_dir: Path, study: str, train_fp: str,
        evaluator: Callable[..., dict[str, Any]], episodes: int) -> dict[str, Any]:
    cfg = agent.resolved(seed)
    run = rl.train_or_resume(agent, cfg, rl.run_path(runs_dir, study, label, seed, train_fp))
    model, normalizer = rl.load_trained(run, cfg)

    result = evaluator(cfg, model, normalizer, seed, episodes)
    result.update(run=str(run.path), learning_curve=learning_curve(run, cfg.n_timesteps), resumed=rl.was_resumed(run))
    return result


@dataclass
class TaskSetup:
    name: str
    title: str
    env: str
    hyperparameters: dict[str, Any]
    scales: dict[str, Scale]
    evaluator: Callable[..., dict[str, Any]]
    metric: str  # the result key the claims compare
    metric_label: str
    lstm: bool = False
    reward_index: int = -2  # the previous reward's place in the observation


@dataclass
class Trained:
    """Variants trained and evaluated over seeds, ready for a report (each scale's outcome extends it).

    Attributes:
        report: the report under construction.
        results: ``{(variant, seed): result}``.
        names: the variants, in report order.
        sizes: ``{variant: (hidden size, trainable parameters)}``.
        described: ``{variant: described config}``.
        progress: the progress file.
        seeds: the seeds.
    """

    report: Report
    results: dict[tuple[str, int], dict[str, Any]]
    names: list[str]
    sizes: dict[str, tuple[int, int]]
    described: dict[str, Any]
    progress: multiseed.Progress
    seeds: list[int]

    def median(self, agent: str, key: str) -> float:
        return multiseed.median_of(self.results, agent, key)


@dataclass
class Outcome(Trained):
    """A Backpropamine study's trained and evaluated variants, ready for its claims and sections
    (``study``: its setup; ``options``: the study's options)."""

    study: TaskSetup
    options: multiseed.StudyOptions


def train_all(study: TaskSetup, scale: str, seed: int, out: Path, command: str,
              options: multiseed.StudyOptions) -> Outcome:
    """Train (or resume) and evaluate every variant of a Backpropamine study over its seeds."""
    sc = options.scale(study.scales[scale])
    seeds = multiseed.seed_list(seed, options.seeds or sc.seeds)
    report = Report(study.name, study.title, command, seed, scale,
                    {"scale": sc.__dict__, "seeds": seeds, "hyperparameters": study.hyperparameters}, seeds=seeds)
    progress = multiseed.Progress(out, study.name, scale)
    base = variants(study.name, study.env, study.hyperparameters, sc, study.lstm, study.reward_index, options.core)
    sizes = match_sizes(base, progress)
    table = sized(base, sizes)
    jobs, described = [], {}
    for name, agent in table.items():
        described[name] = agent.describe(agent.resolved(seeds[0]))
        fp = multiseed.fingerprint([described[name], sc.eval_episodes, study.name])
        train_fp = multiseed.fingerprint(described[name])  # the run directory: a new evaluation reuses it
        jobs += [multiseed.Job(name, s, fp, job, (agent, options.runs_dir, study.name, train_fp, study.evaluator,
                                                  sc.eval_episodes)) for s in seeds]  # fmt: skip
    results = multiseed.run_jobs(progress, jobs, options.workers)
    return Outcome(report, results, list(table), sizes, described, progress, seeds, study=study, options=options)


def finish(o: Outcome, out: Path, columns: list[tuple[str, str]]) -> Path:
    """Add the sections every Backpropamine study has (results, matched sizes, plots, every run, agents,
    compute) after the study's own, and write the report."""
    report, study, results, names, sizes = o.report, o.study, o.results, o.names, o.sizes
    described, progress, seeds, options = o.described, o.progress, o.seeds, o.options
    report.add(f"## Results (median [25%, 75%] over {len(seeds)} seeds)\n\n"
               + multiseed.summary_table(results, names, columns))
    report.add("## Sizes matched by parameter count\n\n" + markdown_table(
        ["variant", "hidden units", "trainable parameters"], [[n, *sizes[n]] for n in names])
        + "\n\nThe non-plastic network's frozen plastic gain and rule parameters are not counted (not trained).")
    fig, (ax,) = new_figure(width=6)
    budget = max(r.get("n_timesteps", 0) for r in results.values()) or described[names[0]]["config"]["n_timesteps"]
    curves = {n: [r["learning_curve"] for (a, _), r in results.items() if a == n] for n in names}
    x = (np.arange(20) + 0.5) * budget / 20
    multiseed.plot_bands(ax, x, curves, "training episode return", "env steps")
    ax.set_title(f"{study.name}: training")
    report.add("## Plots (median over seeds, shaded 25-75%)\n\n" + save_figure(fig, out, f"{study.name}_learning.png"))
    report.add("## Every run\n\n" + multiseed.per_seed_table(results, names, columns, progress))
    report.add("## Agents\n\n" + "\n".join(
        f"- **{n}**: `policy_kwargs` {d['config']['policy_kwargs']}"
        + (" (plasticity frozen)" if d["frozen_plasticity"] else "")
        + f", `n_envs` {d['config']['n_envs']}, `n_timesteps` {d['config']['n_timesteps']}, "
        f"hyperparameters {d['config']['hyperparameters']}" for n, d in described.items()))
    report.add(f"## Compute\n\nSum of the runs' wall times: {progress.total_seconds():.0f} s ({options.workers} "
               f"worker process(es), one torch thread each). {WALL_TIMES} Every run's numbers: "
               f"`{progress.path.name}`. {progress.provenance()}")
    return report.write(out)
