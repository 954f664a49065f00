"""Benchmark: step-time overhead of the MuJoCo task logic over the raw Gymnasium v5 env.

For each MuJoCo task, both the raw v5 env (``gymnasium.make("HalfCheetah-v5", ...)``) and the task
env (``gymnasium.make("neuromod_rl/...")``) run the same pre-drawn random actions from the same seed
with the same episode length (the task's 200 steps, resets included), in alternating blocks of up to
500 steps. ``ratio`` = median over blocks of task time / raw time (the goal is <= 1.10);
``ratio_best`` = best task block / best raw block; ``overhead_us_per_step`` from the best blocks.
On a loaded machine these swing by +-20%, so the task logic is also timed alone, with the physics
stubbed out in both envs: ``logic_ratio`` = (raw step + logic overhead) / raw step.

Usage: ``python -m neuromod_rl.bench.envs [--steps N] [--repeats R] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

import neuromod_rl  # noqa: F401  (registers the ids)
from neuromod_rl.bench.harness import Column, print_table, write_report
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
    "HalfCheetahHiddenGoal": ("HalfCheetah-v5", {}),
    "HalfCheetahCueDir": ("HalfCheetah-v5", {}),
}
#: tasks without a mid-episode change (their episode is laid out in phases): timed without ``change_at``
NO_CHANGE = {"HalfCheetahCueDir"}
DEFAULT_JSON = os.path.join("benchmarks", "results", "envs.json")
_COLUMNS = (
    Column("task", 38, "task", align="<"),
    Column("raw env", 15, "raw_env", align="<"),
    Column("raw steps/s", 11, "raw_steps_per_s", "{:.0f}"),
    Column("task steps/s", 12, "task_steps_per_s", "{:.0f}"),
    Column("ratio", 6, "ratio", "{:.3f}"),
    Column("best", 6, "ratio_best", "{:.3f}"),
    Column("us/step", 8, "overhead_us_per_step", "{:.2f}"),
    Column("logic us", 8, "logic_overhead_us_per_step", "{:.2f}"),
    Column("logic ratio", 11, "logic_ratio", "{:.3f}"),
)


def _time_env(env: gym.Env, actions: np.ndarray, seed: int) -> float:
    """Seconds to run ``actions`` (resetting at episode ends), reset time included."""
    env.reset(seed=seed)
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    return time.perf_counter() - start


def _logic_overhead_us(raw_id: str, raw_kwargs: dict, task_id: str, actions: np.ndarray, repeats: int) -> float:
    """Per-step cost of the task logic alone (µs): both envs step with the physics stubbed out,
    so the difference is our Python only, far less sensitive to foreign load than full steps."""
    raw = gym.make(raw_id, **raw_kwargs).unwrapped
    ours = gym.make(task_id).unwrapped
    best = {"raw": np.inf, "ours": np.inf}
    for env in (raw, ours):
        env.reset(seed=0)
        env.do_simulation = lambda ctrl, n_frames: None  # instance attribute shadows the method
    for _ in range(repeats):
        for name, env in (("raw", raw), ("ours", ours)):
            start = time.perf_counter()
            for a in actions:
                env.step(a)
            best[name] = min(best[name], time.perf_counter() - start)
    raw.close()
    ours.close()
    return (best["ours"] - best["raw"]) / len(actions) * 1e6


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
        task_kwargs = {} if change_at is None or name in NO_CHANGE else {"change_at": change_at}
        raw = gym.make(raw_id, max_episode_steps=spec.max_episode_steps, **raw_kwargs)
        ours = gym.make(spec.id, **task_kwargs)
        rng = np.random.default_rng(seed)
        low, high = raw.action_space.low, raw.action_space.high
        actions = rng.uniform(low, high, size=(steps, *raw.action_space.shape)).astype(np.float32)
        _time_env(raw, actions[:200], seed)  # warm-up: caches, lazy allocations
        _time_env(ours, actions[:200], seed)
        # The machine is shared: time short paired blocks (raw, then ours, on the same actions),
        # so that load changes hit both members of a pair alike; the median paired ratio and the
        # ratio of the best block times are both robust to bursts of foreign load.
        block = min(steps, 500)
        t_raw, t_ours = [], []
        for r in range(repeats):
            for start in range(0, steps, block):
                chunk = actions[start : start + block]
                t_raw.append(_time_env(raw, chunk, seed + r))
                t_ours.append(_time_env(ours, chunk, seed + r))
        raw.close()
        ours.close()
        paired = [o / w for o, w in zip(t_ours, t_raw)]
        results[spec.id] = {
            "raw_env": raw_id,
            "raw_steps_per_s": block / min(t_raw),
            "task_steps_per_s": block / min(t_ours),
            "ratio": statistics.median(paired),
            "ratio_best": min(t_ours) / min(t_raw),
            "overhead_us_per_step": (min(t_ours) - min(t_raw)) / block * 1e6,
        }
        logic_us = _logic_overhead_us(raw_id, raw_kwargs, spec.id, actions[:1000], repeats)
        raw_us = min(t_raw) / block * 1e6
        results[spec.id]["logic_overhead_us_per_step"] = logic_us
        results[spec.id]["logic_ratio"] = (raw_us + logic_us) / raw_us
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
    print_table(None, _COLUMNS, [{"task": env_id, **r} for env_id, r in results.items()])
    write_report(out, json_path)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neuromod-rl bench envs", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--change-at", type=int, default=None, help="also exercise a mid-episode switch")
    parser.add_argument("--json", default=DEFAULT_JSON, help="where the JSON goes ('' for none)")
    args = parser.parse_args(argv)
    bench_envs(args.steps, args.json or None, repeats=args.repeats, seed=args.seed, change_at=args.change_at)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
