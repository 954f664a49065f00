"""Benchmark: step-time overhead of the MuJoCo task logic over the raw Gymnasium v5 env.

For each MuJoCo task, both the raw v5 env (``gymnasium.make("HalfCheetah-v5", ...)``) and the task
env (``gymnasium.make("neuromod_rl/...")``) run the same pre-drawn random actions from the same seed
with the same episode length (the task's 200 steps, resets included), in alternating repeats; the
median time of each is compared. Ratio = task time / raw time; the goal is <= 1.10.

Usage: ``python -m neuromod_rl.experiment.bench_envs [--steps N] [--repeats R] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

import neuromod_rl  # noqa: F401  (registers the ids)
from neuromod_rl.envs.registration import ENV_SPECS

# the raw v5 body behind each task, and the v5 keyword arguments that make the comparison fair
RAW = {
    "HalfCheetahVel": ("HalfCheetah-v5", {}),
    "HalfCheetahDir": ("HalfCheetah-v5", {}),
    "AntDir": ("Ant-v5", {}),
    "AntGoal": ("Ant-v5", {"terminate_when_unhealthy": False}),
    "CrippledHalfCheetah": ("HalfCheetah-v5", {}),
    "CrippledAnt": ("Ant-v5", {}),
    "HalfCheetahRandParams": ("HalfCheetah-v5", {}),
    "HopperRandParams": ("Hopper-v5", {}),
}
DEFAULT_JSON = os.path.join("benchmarks", "results", "envs.json")


def _time_env(env: gym.Env, actions: np.ndarray, seed: int) -> float:
    """Seconds to run ``actions`` (resetting at episode ends), reset time included."""
    env.reset(seed=seed)
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    return time.perf_counter() - start


def bench_envs(
    steps: int = 2000,
    json_path: str | None = None,
    repeats: int = 5,
    seed: int = 0,
    change_at: int | None = None,
) -> dict[str, Any]:
    """Time every MuJoCo task against its raw v5 env; return (and optionally save) the results."""
    results: dict[str, Any] = {}
    specs = [s for s in ENV_SPECS if s.mujoco]
    for spec in tqdm(specs, desc="bench envs", unit="env"):
        name = spec.id.split("/")[1].rsplit("-", 1)[0]
        raw_id, raw_kwargs = RAW[name]
        task_kwargs = {} if change_at is None else {"change_at": change_at}
        raw = gym.make(raw_id, max_episode_steps=spec.max_episode_steps, **raw_kwargs)
        ours = gym.make(spec.id, **task_kwargs)
        rng = np.random.default_rng(seed)
        low, high = raw.action_space.low, raw.action_space.high
        actions = rng.uniform(low, high, size=(steps, *raw.action_space.shape)).astype(np.float32)
        _time_env(raw, actions[:200], seed)  # warm-up: caches, lazy allocations
        _time_env(ours, actions[:200], seed)
        t_raw, t_ours = [], []
        for _ in range(repeats):  # alternate so that machine noise hits both alike
            t_raw.append(_time_env(raw, actions, seed))
            t_ours.append(_time_env(ours, actions, seed))
        raw.close()
        ours.close()
        med_raw, med_ours = statistics.median(t_raw), statistics.median(t_ours)
        results[spec.id] = {
            "raw_env": raw_id,
            "raw_steps_per_s": steps / med_raw,
            "task_steps_per_s": steps / med_ours,
            "ratio": med_ours / med_raw,
            "ratio_best": min(t_ours) / min(t_raw),
        }
    out = {
        "steps": steps,
        "repeats": repeats,
        "change_at": change_at,
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "results": results,
    }
    _print_table(results)
    if json_path is not None:
        os.makedirs(os.path.dirname(json_path) or ".", exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(out, f, indent=2)
    return out


def _print_table(results: dict[str, Any]) -> None:
    print(f"{'task':42s} {'raw env':15s} {'raw steps/s':>12s} {'task steps/s':>13s} {'ratio':>6s}")
    for env_id, r in results.items():
        print(
            f"{env_id:42s} {r['raw_env']:15s} {r['raw_steps_per_s']:12.0f} "
            f"{r['task_steps_per_s']:13.0f} {r['ratio']:6.3f}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--change-at", type=int, default=None, help="also exercise a mid-episode switch")
    parser.add_argument("--json", default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    bench_envs(args.steps, args.json, repeats=args.repeats, seed=args.seed, change_at=args.change_at)


if __name__ == "__main__":
    main()
