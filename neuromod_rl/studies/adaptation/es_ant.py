"""Reproduce Najarro & Risi (2020), "Meta-learning through Hebbian plasticity in random networks", on
``neuromod_rl/CrippledAnt-v0``: an evolved ABCD rule against a static network evolved the same way.

Claim: with only per-synapse Hebbian coefficients evolved and fresh random weights at the start of
every episode, a quadruped learns to walk within the episode, and copes with leg damage it never saw
in training. Protocol here (both methods identical except for what is evolved):

* task: Gymnasium's Ant-v5 body (no contact forces in the observation), one of legs 1-3 disabled per
  episode for training, leg 4 held out for testing, episodes of up to ``episode_steps`` steps;
* network: 27 -> ``hidden`` -> ``hidden`` tanh layers without biases, then a fixed random linear
  readout to the 8 motors;
* **ABCD**: ``Delta w_ij = eta_ij (A x_i y_j + B x_i + C y_j + D)`` on both layers, each layer divided
  by its largest ``|w|`` after every update (the paper's normalisation; without it the weights grow
  until the ant thrashes and falls); the coefficients (5 per synapse) are evolved, the weights start
  ``U[-0.1, 0.1]`` afresh every episode;
* **static**: the same layers with plasticity off (eta = 0); the weights themselves are evolved;
* search: OpenAI-ES with the Najarro & Risi preset (lr 0.2 x0.995, sigma 0.1 x0.999, fitness penalty
  0.01 mean(theta^2)), population ``popsize``, ``generations`` generations, each member scored on
  ``episodes_per_member`` episodes that every member of the generation shares;
* evaluation of each final centre: ``eval_episodes`` episodes on the training legs and on the
  held-out leg (fresh seeds), medians and IQRs over ``seeds`` seeds (``--seeds`` changes how many).

Each (method, seed) is one job of :mod:`.multiseed`: its result is saved as soon as it is done, so a
stopped study resumes where it was, and a changed method re-runs alone. A run already spreads its
population over Ray actors (one per CPU at the default scale), so ``--workers`` (runs at once) helps
only where a scale evaluates in the driver (``num_actors=0``, as the smoke scale does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.logger import KVWriter, Logger

from neuromod_rl.agents import ESTrainer
from neuromod_rl.experiment.markdown import markdown_table
from neuromod_rl.experiment.plots.figures import new_figure
from neuromod_rl.studies.registry import Study
from neuromod_rl.studies.scaffold import multiseed
from neuromod_rl.studies.scaffold.multiseed import (
    Job,
    Progress,
    StudyOptions,
    fingerprint,
    median_iqr,
    plot_bands,
    seed_list,
)
from neuromod_rl.studies.scaffold.report import Report, save_figure, settings_dict

ENV = "neuromod_rl/CrippledAnt-v0"
VERSION = "es-ant-1"  # bump when train_one changes (finished runs are then recomputed)


@dataclass(frozen=True)
class Settings:
    seeds: int = 3
    generations: int = 100
    popsize: int = 64
    episodes_per_member: int = 1
    episode_steps: int = 200
    hidden: int = 64
    eval_episodes: int = 12
    num_actors: int | str = "auto"  # Ray actors (one per CPU); 0: evaluate in the driver
    chunk_size: int = 16


SCALES = {
    "smoke": Settings(seeds=3, generations=2, popsize=4, episode_steps=15, hidden=8, eval_episodes=2, num_actors=0,
                      chunk_size=4),
    "default": Settings(),
    "paper": Settings(seeds=5, generations=300, popsize=200, hidden=64, eval_episodes=30, chunk_size=25),
}  # fmt: skip

METHODS = {
    "ABCD rule (plastic)": {
        "rule_kwargs": {"slow_weights": False, "bias": False, "max_norm": True},
        "es": {"params": "rule", "redraw_initial_weights": True},
    },
    "static weights": {
        "rule_kwargs": {"slow_weights": True, "bias": False, "eta": 0.0},
        "es": {"params": ["core.layers.*.w"], "redraw_initial_weights": False},
    },
}


def make_env(s: Settings, split: str):
    return gym.make(ENV, split=split, include_cfrc_ext_in_observation=False, max_episode_steps=s.episode_steps)


class _Capture(KVWriter):
    """An SB3 logger output that keeps every dumped row (the per-generation ES statistics)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def write(self, key_values, key_excluded, step: int = 0) -> None:
        self.rows.append(dict(key_values))

    def close(self) -> None:
        pass


def train_one(method: str, seed: int, s: Settings) -> dict[str, Any]:
    """Evolve one method with one seed; score the start and the final centre."""
    spec = METHODS[method]
    model = ESTrainer(
        "MlpPlasticPolicy", make_env(s, "train"), preset="najarro_risi", popsize=s.popsize,
        episodes_per_member=s.episodes_per_member, chunk_size=s.chunk_size, num_actors=s.num_actors, seed=seed,
        policy_kwargs=dict(rule="abcd", core="mlp", core_layers=2, hidden_size=s.hidden, alpha_shape="none",
                           rule_kwargs=spec["rule_kwargs"], ortho_init=False),
        **spec["es"],
    )  # fmt: skip
    capture = _Capture()
    model.set_logger(Logger(folder=None, output_formats=[capture]))
    eval_seed = 10_000 + seed
    start = {split: model.score(make_env(s, split), s.eval_episodes, eval_seed) for split in ("train", "test")}
    began = time.perf_counter()
    model.learn(10**12, generations=s.generations)
    seconds = time.perf_counter() - began
    final = {split: model.score(make_env(s, split), s.eval_episodes, eval_seed) for split in ("train", "test")}
    return {
        "curve": [r["es/return_mean"] for r in capture.rows],
        "start": {k: float(np.mean(v)) for k, v in start.items()},
        "final": {k: float(np.mean(v)) for k, v in final.items()},
        "parameters": model.num_parameters,
        "steps": int(model.num_timesteps),
        "seconds": seconds,
    }


def _iqr(values) -> str:
    med, q25, q75 = median_iqr(values)
    return f"{med:.1f} [{q25:.1f}, {q75:.1f}]"


def jobs(s: Settings, seeds: list[int]) -> list[Job]:
    """One job per (method, seed), fingerprinted by the settings every run shares and the method's own."""
    shared = {k: v for k, v in settings_dict(s).items() if k != "seeds"}
    return [Job(method, sd, fingerprint([shared, spec, VERSION]), train_one, (s,))
            for method, spec in METHODS.items() for sd in seeds]  # fmt: skip


def run(scale: str, seed: int, out: Path, command: str, options: StudyOptions | None = None) -> Path:
    options = options or StudyOptions()
    s = SCALES[scale]
    seeds = seed_list(seed, options.seeds or s.seeds)
    report = Report("es-ant", "Hebbian ABCD rule vs static weights, evolved by OpenAI-ES on CrippledAnt "
                    "(Najarro & Risi 2020)", command, seed, scale, {**settings_dict(s), "seeds": seeds},
                    seeds=seeds)  # fmt: skip
    progress = Progress(out, "es-ant", scale)
    done = multiseed.run_jobs(progress, jobs(s, seeds), options.workers)
    results = {m: [done[(m, sd)] for sd in seeds] for m in METHODS}

    fig, (ax,) = new_figure()
    curves = {method: [r["curve"] for r in runs] for method, runs in results.items()}
    generations = max(len(c) for runs in curves.values() for c in runs)
    plot_bands(ax, np.arange(1, generations + 1), curves, "population mean return (training legs)", "generation")
    ax.set_title("ES on CrippledAnt")
    img_curve = save_figure(fig, out, "es_ant_learning.png")

    fig, (ax,) = new_figure()
    for i, (method, runs) in enumerate(results.items()):
        for j, split in enumerate(("train", "test")):
            vals = [r["final"][split] for r in runs]
            xs = np.full(len(vals), 2 * j + 0.35 * i)
            ax.scatter(xs, vals, color=f"C{i}", label=method if j == 0 else None, zorder=3)
            ax.hlines(np.median(vals), xs[0] - 0.12, xs[0] + 0.12, color=f"C{i}", linewidth=2)
    ax.set_xticks([0.17, 2.17], ["training legs 1-3", "held-out leg 4"])
    ax.set(ylabel="episode return of the final centre", title="Final policies (one dot per seed, bar = median)")
    ax.legend(fontsize=7)
    img_returns = save_figure(fig, out, "es_ant_returns.png")

    rows = []
    for method, runs in results.items():
        rows.append([method, len(runs), runs[0]["parameters"], _iqr([r["start"]["train"] for r in runs]),
                     _iqr([r["final"]["train"] for r in runs]), _iqr([r["final"]["test"] for r in runs]),
                     int(np.mean([r["steps"] for r in runs])),
                     f"{np.mean([r['seconds'] for r in runs]):.0f}"])  # fmt: skip
    med = {m: {k: float(np.median([r["final"][k] for r in runs])) for k in ("train", "test")}
           for m, runs in results.items()}  # fmt: skip
    start = {m: float(np.median([r["start"]["train"] for r in runs])) for m, runs in results.items()}
    abcd, static = "ABCD rule (plastic)", "static weights"
    report.claim(
        "the evolved ABCD rule improves the walk from random weights (training legs)",
        med[abcd]["train"] > start[abcd],
        f"median return {med[abcd]['train']:.1f} after vs {start[abcd]:.1f} before evolution",
    )
    report.claim(
        "on the held-out leg the ABCD rule does at least as well as the static network evolved the same way",
        med[abcd]["test"] >= med[static]["test"],
        f"median held-out return {med[abcd]['test']:.1f} (ABCD) vs {med[static]['test']:.1f} (static)",
    )
    report.claim(
        "the ABCD rule loses less from the training legs to the held-out leg than the static network",
        med[abcd]["train"] - med[abcd]["test"] <= med[static]["train"] - med[static]["test"],
        f"drop {med[abcd]['train'] - med[abcd]['test']:.1f} (ABCD) vs {med[static]['train'] - med[static]['test']:.1f} "
        "(static)",
    )  # fmt: skip
    report.add(
        f"## Results ({len(seeds)} seeds, median [25%, 75%])\n\n"
        f"Each final centre is scored on {s.eval_episodes} fresh episodes of the training legs and of the held-out "
        "leg; 'start' is the same score before evolution. Episode return is Ant-v5's (forward speed + 1 per healthy "
        "step - control cost), up to "
        f"{s.episode_steps} steps.\n\n"
        + markdown_table(["method", "seeds", "evolved parameters", "start (train legs)", "final, train legs",
                          "final, held-out leg", "env steps per run", "seconds per run"], rows)  # fmt: skip
        + f"\n\n{img_curve}\n\n{img_returns}\n\n"
        "Differences from the paper: Gymnasium's MuJoCo Ant-v5 instead of the PyBullet ant, episodes of "
        f"{s.episode_steps} steps instead of 1000, {s.generations} generations of {s.popsize} members instead of "
        "300+ generations of 200 (the default scale fits an hour on 2 cores), a fixed random linear readout to the "
        "motors instead of a third Hebbian layer, and the disabled leg as the damage."
    )
    report.add(f"Compute: {progress.total_seconds():.0f} s over all runs ({options.workers} worker process(es)); "
               f"every run's numbers: `{progress.path.name}`. {progress.provenance()}")
    return report.write(out)


STUDY = Study(
    "es-ant",
    "an evolved Hebbian ABCD rule walks and adapts to a damaged leg from random weights (Najarro & Risi 2020)",
    run,
)
