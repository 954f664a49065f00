"""Benchmark: ES population evaluation -- batched against per-member, and 1 against 2 Ray actors.

Two measurements, each against its peer in the same run:

* **batched vs per-member** (this process, one torch thread): the same population scored by one
  ``vmap``-ed forward per step over ``popsize x episodes`` envs, and by the policy's own ``step``
  one member after the other. Both step the same envs, so the ratio is what batching saves on the
  policy side: large where the env is cheap (the bandit), small where physics dominates (the Ant).
* **1 vs 2 Ray actors** (a local Ray with this machine's CPUs, batched evaluation in the actors):
  the same population through :class:`~neuromod_rl.agents.es.problem.PolicySearchProblem`, after a
  warm-up evaluation that starts the actors. The driver only waits, so on a 2-core machine 2 actors
  can approach 2x.

``evaluations/s`` counts population members scored per second (each over ``--episodes``
episodes). Times are medians over ``--repeats`` evaluations. Targets: batched >= 5x per-member
(bandit), 2 actors >= 1.7x 1 actor.

Usage: ``neuromod-rl bench es [--tasks bandit ant] [--popsize 64] [--episodes 4] [--repeats 3]
[--no-ray] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Any

import gymnasium as gym
import torch

from neuromod_rl.agents import ESTrainer
from neuromod_rl.agents.es import EvalSpec, Evaluator
from neuromod_rl.agents.es.ray_cluster import cluster_cpus, connect
from neuromod_rl.bench.harness import Column, print_table, write_report

DEFAULT_JSON = os.path.join("benchmarks", "results", "es.json")
TASKS: dict[str, dict[str, Any]] = {
    "bandit": {
        "env": "neuromod_rl/TwoArmedBanditDependent-v0", "env_kwargs": {},
        "policy_kwargs": {"rule": "neuromod", "hidden_size": 32}, "params": "all", "redraw": False,
    },
    "ant": {
        "env": "neuromod_rl/CrippledAnt-v0", "env_kwargs": {"include_cfrc_ext_in_observation": False,
                                                            "max_episode_steps": 100},
        "policy_kwargs": {"rule": "abcd", "core": "mlp", "hidden_size": 64, "alpha_shape": "none",
                          "rule_kwargs": {"slow_weights": False, "bias": False, "max_norm": True},
                          "ortho_init": False},
        "params": "rule", "redraw": True,
    },
}  # fmt: skip


def make_spec(task: str, episodes: int, chunk_size: int) -> tuple[EvalSpec, torch.Tensor]:
    """The evaluation spec and a population centre for ``task`` (seed 0)."""
    t = TASKS[task]
    env = gym.make(t["env"], **t["env_kwargs"])
    model = ESTrainer("MlpPlasticPolicy", env, params=t["params"], redraw_initial_weights=t["redraw"],
                      episodes_per_member=episodes, chunk_size=chunk_size, num_actors=0, seed=0,
                      policy_kwargs=t["policy_kwargs"])  # fmt: skip
    center = torch.cat([p.detach().reshape(-1) for n, p in model.policy.named_parameters() if n in model.param_names])
    return model.eval_spec(), center


def population(center: torch.Tensor, popsize: int) -> torch.Tensor:
    """``popsize`` members drawn around ``center`` (a fixed seed: every measurement scores the same ones)."""
    return center + 0.1 * torch.randn(popsize, center.numel(), generator=torch.Generator().manual_seed(0))


def bench_batching(task: str, popsize: int, episodes: int, repeats: int) -> dict[str, Any]:
    """Members/s of batched and per-member evaluation in this process, alternating, medians."""
    spec, center = make_spec(task, episodes, popsize)
    evaluator, vectors = Evaluator(spec), population(center, popsize)
    evaluator.evaluate(vectors[:2], 0, batched=True)  # warm-up: envs built, vmap traced once
    times: dict[str, list[float]] = {"batched": [], "per_member": []}
    steps = 0
    for r in range(repeats):
        for mode in times:
            start = time.perf_counter()
            res = evaluator.evaluate(vectors, r, batched=mode == "batched")
            times[mode].append(time.perf_counter() - start)
            steps = int(res.lengths.sum())
    out = {mode: {"evaluations_per_s": popsize / statistics.median(t), "env_steps_per_s": steps / statistics.median(t)}
           for mode, t in times.items()}  # fmt: skip
    out["ratio_batched_over_per_member"] = out["batched"]["evaluations_per_s"] / out["per_member"]["evaluations_per_s"]
    return out


def bench_actors(task: str, popsize: int, episodes: int, repeats: int, chunk_size: int) -> dict[str, Any]:
    """Members/s with 1 and with 2 Ray actors (batched evaluation inside each)."""
    # evotorch (which problem.py imports) is slow to load and only this Ray measurement needs it
    from evotorch import SolutionBatch

    from neuromod_rl.agents.es.problem import PolicySearchProblem

    connect(None)
    spec, center = make_spec(task, episodes, chunk_size)
    vectors = population(center, popsize)
    out: dict[str, Any] = {"cluster_cpus": cluster_cpus()}
    for n in (1, 2):
        problem = PolicySearchProblem(spec, num_actors=n, chunk_size=chunk_size, seed=0)
        batch = SolutionBatch(problem, popsize=popsize, empty=True)
        batch.set_values(vectors)
        problem.evaluate(batch)  # warm-up: starts the actors (seconds), builds their envs
        times = []
        for r in range(repeats):
            problem.generation = r + 1
            start = time.perf_counter()
            problem.evaluate(batch)
            times.append(time.perf_counter() - start)
        problem.kill_actors()
        out[f"{n}_actors"] = {"evaluations_per_s": popsize / statistics.median(times)}
    out["ratio_2_over_1_actors"] = out["2_actors"]["evaluations_per_s"] / out["1_actors"]["evaluations_per_s"]
    return out


def bench_es(tasks: list[str], popsize: int, episodes: int, repeats: int, chunk_size: int, ray: bool,
             json_path: str | None) -> dict[str, Any]:
    """Measure batching (and, with ``ray``, the actors) on each of ``tasks``; print the table, write JSON
    to ``json_path`` (``None``: do not write) and return the report."""
    torch.set_num_threads(1)
    results: dict[str, Any] = {}
    for task in tasks:
        results[task] = {"batching": bench_batching(task, popsize, episodes, repeats)}
        if ray:
            results[task]["actors"] = bench_actors(task, popsize, episodes, repeats, chunk_size)
    out = {
        "settings": {"popsize": popsize, "episodes": episodes, "repeats": repeats, "chunk_size": chunk_size},
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "torch": torch.__version__, "load_average_1min": os.getloadavg()[0]},
        "results": results,
    }  # fmt: skip
    _print(results)
    if ray and os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
        print(f"note: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs -- other processes compete for "
              "the cores, so the actor ratio understates what 2 actors give on a quiet machine")
    write_report(out, json_path)
    return out


_COLUMNS = (
    Column("task", 8, "task", align="<"),
    Column("measurement", 26, "measurement", align="<"),
    Column("evaluations/s", 14, "evaluations_per_s", "{:.1f}"),
    Column("env steps/s", 12, "env_steps_per_s", "{:.0f}"),
)


def _print(results: dict[str, Any]) -> None:
    rows: list[dict[str, Any]] = []
    ratios: dict[str, float] = {}
    for task, r in results.items():
        b = r["batching"]
        rows += [{"task": task, "measurement": mode, **b[mode]} for mode in ("per_member", "batched")]
        ratios[f"{task} ratio batched/per-member"] = b["ratio_batched_over_per_member"]
        if "actors" in r:
            a = r["actors"]
            rows += [{"task": task, "measurement": f"{n} Ray actor(s)", **a[f"{n}_actors"]} for n in (1, 2)]
            ratios[f"{task} ratio 2/1 actors"] = a["ratio_2_over_1_actors"]
    print_table(None, _COLUMNS, rows, ratios, ratio_fmt="{:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neuromod-rl bench es", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=["bandit", "ant"])
    parser.add_argument("--popsize", type=int, default=64, help="members per evaluation (default 64)")
    parser.add_argument("--episodes", type=int, default=4, help="episodes per member (default 4)")
    parser.add_argument("--chunk-size", type=int, default=16, help="members per actor call (default 16)")
    parser.add_argument("--repeats", type=int, default=3, help="timed evaluations per measurement (default 3)")
    parser.add_argument("--no-ray", action="store_true", help="skip the 1-vs-2 actor measurement")
    parser.add_argument("--json", default=DEFAULT_JSON, help=f"output file (default {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    if min(args.popsize, args.episodes, args.chunk_size, args.repeats) < 1:
        parser.error("--popsize, --episodes, --chunk-size and --repeats must be positive")
    bench_es(args.tasks, args.popsize, args.episodes, args.repeats, args.chunk_size, not args.no_ray, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
