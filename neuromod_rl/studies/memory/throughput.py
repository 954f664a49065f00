"""Wall-time comparison of the memory suite's agents: each one's training throughput, measured back to
back in fresh processes after the long runs, so that ratios do not depend on what else the machine
ran while the suite trained (:mod:`.pomdp` reports both this and the runs' own times)."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import torch
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from neuromod_rl.studies.memory.pomdp_suite import TASKS, Settings, build, env_id

#: this module, for the timing processes that import it by name
THIS = "neuromod_rl.studies.memory.throughput"


def measure_throughput(task: str, agent: str, steps: int, overrides: dict[str, Any] | None = None) -> float:
    """Env steps per second of ``agent`` training on ``task`` (rollouts and updates, one thread), after
    one warm-up rollout: the suite times every agent this way back to back, so that wall-time ratios
    do not depend on what else the machine ran during the long training runs."""
    torch.set_num_threads(1)
    t = TASKS[task]
    env = make_vec_env(env_id(task, agent), n_envs=t.n_envs, seed=0)
    if t.normalize:
        env = VecNormalize(env, gamma=t.hyperparameters.get("gamma", 0.99))
    model = build(t, agent, 0, env, overrides)
    rollout = model.n_steps * t.n_envs
    model.learn(rollout)
    start, before = time.perf_counter(), model.num_timesteps
    model.learn(max(steps, rollout), reset_num_timesteps=False)
    return (model.num_timesteps - before) / (time.perf_counter() - start)


def time_all(s: Settings) -> dict[str, dict[str, float]]:
    """Throughput of every agent on every task, each in a fresh process, one after another."""
    out: dict[str, dict[str, float]] = {}
    for task in s.tasks:
        out[task] = {}
        for agent in s.agents:
            code = (f"import json,sys; from {THIS} import measure_throughput as m; "
                    f"print(m({task!r}, {agent!r}, {s.timing_steps}, {dict(s.overrides)!r}))")
            if s.jobs == 0:
                out[task][agent] = measure_throughput(task, agent, s.timing_steps, dict(s.overrides))
                continue
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"timing {task}/{agent} failed:\n{proc.stderr[-3000:]}")
            out[task][agent] = float(proc.stdout.strip().splitlines()[-1])
    return out
