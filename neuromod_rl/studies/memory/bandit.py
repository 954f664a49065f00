"""``neuromod-rl reproduce bandit``: regret at 100 pulls on the independent and dependent two-armed
bandits (Wang et al. 2016), learned agents against Thompson sampling, UCB1 and Bayes-greedy policies.

Agents (PlasticPPO / RecurrentPPO, the hyperparameters of :data:`HYPERPARAMETERS`): the
neuromodulated plastic agent (the default plastic core), the same core with the non-modulated
clipped Hebbian rule, and an LSTM with as many units as the plastic core. Each is trained and
evaluated on each bandit. Evaluation samples fresh arm pairs, in batches of
:data:`EVAL_CHUNK` episodes run in lockstep, until the standard error of the mean regret is below
:data:`SE_TARGET` (``Scale.max_eval_episodes`` at most); the references use ``Scale.reference_episodes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuromod_rl.envs.baselines import bandit_regret, bandit_regrets
from neuromod_rl.experiment.markdown import markdown_table
from neuromod_rl.experiment.plots.figures import new_figure
from neuromod_rl.studies.registry import Study
from neuromod_rl.studies.scaffold import multiseed, rl
from neuromod_rl.studies.scaffold.multiseed import StudyOptions
from neuromod_rl.studies.scaffold.report import WALL_TIMES, Report, save_figure

NAME = "bandit"
VERSION = "bandit-1"
SE_TARGET = 0.05
EVAL_CHUNK = 1000
BANDITS = {"independent": "neuromod_rl/TwoArmedBandit-v0", "dependent": "neuromod_rl/TwoArmedBanditDependent-v0"}
NEUROMOD, PLASTIC, LSTM = "neuromodulated (PlasticPPO)", "plastic, non-modulated (PlasticPPO)", "LSTM (RecurrentPPO)"
#: the study-specific training settings (the plastic core itself is CoreConfig's default)
HYPERPARAMETERS = {"n_steps": 100, "batch_size": 800, "n_epochs": 4, "learning_rate": "lin_3e-3", "gamma": 0.9,
                   "gae_lambda": 0.95, "ent_coef": 0.01, "vf_coef": 0.25, "max_grad_norm": 1.0}
REFERENCES = {"independent": ("thompson", "ucb1", "greedy"),
              "dependent": ("thompson", "ucb1", "greedy", "greedy_dependent")}
REFERENCE_LABELS = {"thompson": "Thompson sampling", "ucb1": "UCB1",
                    "greedy": "greedy posterior mean (arms independent)",
                    "greedy_dependent": "Bayes-greedy posterior mean (knows p2 = 1 - p1)"}


@dataclass(frozen=True)
class Scale:
    seeds: int = 3
    n_timesteps: int = 1_000_000
    n_envs: int = 16
    min_eval_episodes: int = 2 * EVAL_CHUNK
    max_eval_episodes: int = 50 * EVAL_CHUNK  # RecurrentPPO on the independent bandit: 20k was too few
    reference_episodes: int = 20_000
    changes: tuple = ()  # extra hyperparameter overrides (smoke)


SCALES = {
    "smoke": Scale(seeds=2, n_timesteps=400, n_envs=2, min_eval_episodes=20, max_eval_episodes=20,
                   reference_episodes=200, changes=(("n_steps", 100), ("batch_size", 100), ("n_epochs", 1))),
    "default": Scale(),
    "paper": Scale(seeds=5, n_timesteps=2_000_000, max_eval_episodes=50 * EVAL_CHUNK, reference_episodes=50_000),
}


#: every agent reads its actions and value linearly off its recurrent state, as in Wang et al.
LINEAR_HEADS = {"net_arch": []}


def agent_table(variant: str, scale: Scale) -> dict[str, rl.Agent]:
    """The three agents on one bandit; the plastic core (and its hidden size) from CoreConfig."""
    hp = {**HYPERPARAMETERS, **dict(scale.changes)}
    base = {"env": BANDITS[variant], "n_envs": scale.n_envs, "n_timesteps": scale.n_timesteps,
            "hyperparameters": hp, "checkpoint_freq": 100_000}  # fmt: skip
    units = rl.default_core()["hidden_size"]
    return {
        NEUROMOD: rl.Agent(NEUROMOD, {**base, "name": f"bandit_{variant}_neuromod", "algo": "plastic_ppo",
                                      "policy": "MlpPlasticPolicy",
                                      "policy_kwargs": {"rule": "neuromod", "reward_index": 2, **LINEAR_HEADS}}),
        PLASTIC: rl.Agent(PLASTIC, {**base, "name": f"bandit_{variant}_plastic", "algo": "plastic_ppo",
                                    "policy": "MlpPlasticPolicy",
                                    "policy_kwargs": {**rl.UNMODULATED, "reward_index": 2, **LINEAR_HEADS}}),
        LSTM: rl.Agent(LSTM, {**base, "name": f"bandit_{variant}_lstm", "algo": "recurrent_ppo",
                              "policy": "MlpLstmPolicy", "policy_kwargs": {"lstm_hidden_size": units, "net_arch": []}}),
    }  # fmt: skip


def regrets_until_precise(cfg, model, seed: int, scale: Scale) -> np.ndarray:
    """Per-episode cumulative regret, sampled in chunks until its standard error is below the target."""
    out: list[np.ndarray] = []
    n = 0
    while n < scale.max_eval_episodes:
        chunk = min(EVAL_CHUNK, scale.max_eval_episodes - n)
        traces = rl.evaluate(cfg, model, None, None, chunk, seed * 1_000_003 + n)
        out.append(np.nansum(traces["regret"], axis=1))
        n += chunk
        r = np.concatenate(out)
        if n >= scale.min_eval_episodes and r.std(ddof=1) / np.sqrt(len(r)) < SE_TARGET:
            break
    return np.concatenate(out)


def job(label: str, seed: int, agent: rl.Agent, scale: Scale, runs_dir: Path, train_fp: str) -> dict[str, Any]:
    cfg = agent.resolved(seed)
    run = rl.train_or_resume(agent, cfg, rl.run_path(runs_dir, NAME, label, seed, train_fp))
    model, _ = rl.load_trained(run, cfg)
    r = regrets_until_precise(cfg, model, seed, scale)
    curve = rl.evaluate(cfg, model, None, None, min(EVAL_CHUNK, scale.max_eval_episodes), seed)
    return {"regret": float(r.mean()), "regret_se": float(r.std(ddof=1) / np.sqrt(len(r))), "episodes": int(len(r)),
            "resumed": rl.was_resumed(run),
            "cumulative_regret_curve": [float(v) for v in np.nancumsum(curve["regret"], axis=1).mean(0)],
            "run": str(run.path)}  # fmt: skip


def imprecise_note(results: dict[tuple[str, int], dict[str, Any]], scale: Scale) -> str:
    """A sentence naming the runs whose evaluation stopped at the episode cap with the standard error still
    at or above the target (empty when every run met it)."""
    short = [f"{a} seed {s} ({r['regret_se']:.3f})" for (a, s), r in sorted(results.items())
             if r["regret_se"] >= SE_TARGET]  # fmt: skip
    if not short:
        return ""
    return (f"\n\nStopped at the cap of {scale.max_eval_episodes} episodes with the standard error still at or above "
            f"{SE_TARGET}: {', '.join(short)}.")


def references(variant: str, scale: Scale, seed: int) -> dict[str, tuple[float, float]]:
    out = {}
    for policy in REFERENCES[variant]:
        r = bandit_regrets(policy, variant, scale.reference_episodes, 100, seed)
        out[policy] = (float(r.mean()), float(r.std(ddof=1) / np.sqrt(len(r))))
    return out


def run(scale: str, seed: int, out: Path, command: str, options: StudyOptions | None = None) -> Path:
    options = options or StudyOptions()
    sc = options.scale(SCALES[scale])
    seeds = multiseed.seed_list(seed, options.seeds or sc.seeds)
    report = Report(NAME, "Two-armed bandits: regret at 100 pulls (learned agents vs Thompson, UCB1, Bayes-greedy)",
                    command, seed, scale, {"scale": sc.__dict__, "seeds": seeds, "hyperparameters": HYPERPARAMETERS},
                    seeds=seeds)  # fmt: skip
    progress = multiseed.Progress(out, NAME, scale)
    jobs, tables, described = [], {}, {}
    for variant in BANDITS:
        tables[variant] = agent_table(variant, sc)
        for label, agent in tables[variant].items():
            key = f"{variant}: {label}"
            described[key] = agent.describe(agent.resolved(seeds[0]))
            fp = multiseed.fingerprint([described[key], sc.__dict__, VERSION])
            train_fp = multiseed.fingerprint(described[key])  # the run directory: a new evaluation reuses it
            jobs += [multiseed.Job(key, s, fp, job, (agent, sc, options.runs_dir, train_fp)) for s in seeds]
    results = multiseed.run_jobs(progress, jobs, options.workers)
    refs = {v: references(v, sc, seed) for v in BANDITS}

    fig, axes = new_figure(ncols=2, width=5.5)
    for ax, variant in zip(axes, BANDITS):
        names = [f"{variant}: {label}" for label in tables[variant]]
        curves = {n.split(": ", 1)[1]: [r["cumulative_regret_curve"] for (a, _), r in results.items() if a == n]
                  for n in names}  # fmt: skip
        for policy in REFERENCES[variant]:  # the same seed draws the same first t pulls whatever the horizon
            ts = np.unique(np.linspace(1, 100, 25).round().astype(int))
            ys = [bandit_regret(policy, variant, min(2000, sc.reference_episodes), int(t), seed) for t in ts]
            ax.plot(ts, ys, linestyle=":", linewidth=1.2, label=REFERENCE_LABELS[policy])
        multiseed.plot_bands(ax, np.arange(1, 101), curves, "cumulative regret (lower is better)", "pull")
        ax.set_title(f"{variant} bandit")
    img = save_figure(fig, out, "bandit_regret.png")

    for variant in BANDITS:
        nm = multiseed.median_of(results, f"{variant}: {NEUROMOD}", "regret")
        ts = refs[variant]["thompson"][0]
        report.claim(f"{variant} bandit: the neuromodulated agent's regret <= Thompson sampling's (median over seeds)",
                     bool(nm <= ts), f"{nm:.3f} vs {ts:.3f}")
    rows = []
    for variant in BANDITS:
        for label in tables[variant]:
            name = f"{variant}: {label}"
            rows.append([variant, label, multiseed.fmt_miqr(multiseed.metric(results, name, "regret")),
                         max(multiseed.metric(results, name, "regret_se"))])
        rows += [[variant, REFERENCE_LABELS[p], f"{m:.3f}", se] for p, (m, se) in refs[variant].items()]
    report.add(
        f"## Regret after 100 pulls ({len(seeds)} seeds; median [25%, 75%] over seeds)\n\n"
        f"Each learned agent is evaluated on fresh arm pairs until the standard error of its mean regret is below "
        f"{SE_TARGET} ({sc.min_eval_episodes} to {sc.max_eval_episodes} episodes per seed); the references use "
        f"{sc.reference_episodes} episodes. `max SE` is the largest standard error over the seeds.\n\n"
        + markdown_table(["bandit", "agent", "regret", "max SE"], rows) + imprecise_note(results, sc) + f"\n\n{img}"
    )
    report.add("## Every run\n\n" + markdown_table(
        ["agent", "seed", "regret", "SE", "episodes", "wall time (s)"],
        [[a, s, r["regret"], r["regret_se"], r["episodes"], f"{progress.seconds(a, s):.0f}"]
         for (a, s), r in sorted(results.items())]))  # fmt: skip
    report.add(f"## Agents\n\nThe plastic core is CoreConfig's default ({rl.default_core()}); the LSTM has as many "
               "units as the plastic core. Resolved configs:\n\n"
               + "\n".join(f"- **{k}**: algo `{d['config']['algo']}`, `policy_kwargs` {d['config']['policy_kwargs']}, "
                           f"`n_envs` {d['config']['n_envs']}, `n_timesteps` {d['config']['n_timesteps']}, "
                           f"hyperparameters {d['config']['hyperparameters']}" for k, d in described.items()))
    report.add(f"## Compute\n\nSum of the runs' wall times: {progress.total_seconds():.0f} s ({options.workers} worker "
               f"process(es)). {WALL_TIMES} Every run's numbers: `{progress.path.name}`. "
               f"{progress.provenance()}")
    return report.write(out)


STUDY = Study(
    "bandit",
    "learned agents reach Thompson sampling's regret on two-armed bandits (Wang et al. 2016)",
    run,
    takes_budget=True,
)
