"""The memory suite: plastic policies against sb3-contrib's RecurrentPPO on rl-zoo3's velocity-masked tasks.

People pick a recurrent SB3 policy for memory, and their yardstick is RecurrentPPO with rl-zoo3's
tuned hyperparameters (``hyperparams/ppo_lstm.yml``). Here every agent gets exactly those settings
for the task (rollout size, epochs, learning rate, gamma, gSDE, observation and reward normalisation,
the heads ``net_arch``) and the zoo's budget; only the policy differs:

* ``recurrent_ppo`` -- the anchor, unchanged: ``RecurrentPPO("MlpLstmPolicy")`` with the zoo's LSTM;
* ``plastic`` -- ``PlasticPPO("MlpPlasticPolicy")`` with the library's default core (no plastic
  ``policy_kwargs`` at all: what a user gets);
* ``plastic_lstm`` -- the same with ``core="lstm"``;
* ``ppo`` -- SB3 ``PPO("MlpPolicy")``, the memoryless floor.

Each (task, agent, seed) trains in its own process with one torch thread; it is evaluated
``evals`` times during training (deterministic actions, the training normalisation statistics) and
at the end. Results are kept in ``pomdp_runs.json`` next to the report as they finish, so an
interrupted suite resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuromod_rl.experiment.reproduce.common import Report, markdown_table, new_figure, save_figure


@dataclass(frozen=True)
class Task:
    """One suite task with rl-zoo3's tuned RecurrentPPO settings (``ppo_lstm.yml``)."""

    env_id: str
    budget: int  # the zoo's n_timesteps
    threshold: float
    threshold_source: str
    n_envs: int
    hyperparameters: dict[str, Any]  # algorithm arguments ("lin_X": linear schedule from X to 0)
    heads: dict[str, Any] = field(default_factory=dict)  # SB3 policy keys every agent gets
    lstm: dict[str, Any] = field(default_factory=dict)  # RecurrentPPO's own LSTM keys
    normalize: bool = True


_HEADS = {"ortho_init": False, "activation_fn": "relu", "net_arch": {"pi": [64], "vf": [64]}}
TASKS: dict[str, Task] = {
    "PendulumNoVel-v1": Task(
        "neuromod_rl/PendulumNoVel-v1", 100_000, -200.0,
        "no Gymnasium threshold; -200 is about what rl-zoo3's tuned RecurrentPPO reaches (-218 +- 140)",
        4,
        dict(n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0, learning_rate=1e-3,
             clip_range=0.2, use_sde=True, sde_sample_freq=4),
        _HEADS,
        {"lstm_hidden_size": 64, "enable_critic_lstm": True},
    ),
    "MountainCarContinuousNoVel-v0": Task(
        "neuromod_rl/MountainCarContinuousNoVel-v0", 300_000, 90.0, "Gymnasium's reward_threshold", 8,
        dict(batch_size=256, n_steps=1024, gamma=0.9999, learning_rate=7.77e-5, ent_coef=0.00429, clip_range=0.1,
             n_epochs=10, gae_lambda=0.9, max_grad_norm=5, vf_coef=0.19, use_sde=True, sde_sample_freq=8),
        {"log_std_init": 0.0, "ortho_init": False, "net_arch": {"pi": [64], "vf": [64]}},
        {"lstm_hidden_size": 32, "enable_critic_lstm": True},
    ),
    "MountainCarNoVel-v0": Task(
        "neuromod_rl/MountainCarNoVel-v0", 1_000_000, -110.0, "Gymnasium's reward_threshold", 16,
        dict(n_steps=16, gae_lambda=0.98, gamma=0.99, n_epochs=4, ent_coef=0.0),
    ),
}  # fmt: skip
AGENTS = ("recurrent_ppo", "plastic", "plastic_lstm", "ppo")
LABELS = {
    "recurrent_ppo": "RecurrentPPO (LSTM, zoo)",
    "plastic": "PlasticPPO (default core)",
    "plastic_lstm": "PlasticPPO core=lstm",
    "ppo": "PPO MlpPolicy (no memory)",
}


@dataclass(frozen=True)
class Settings:
    tasks: tuple[str, ...] = tuple(TASKS)
    agents: tuple[str, ...] = AGENTS
    seeds: int = 3
    budget_fraction: float = 1.0  # of the zoo's budget
    evals: int = 20  # evaluations during training
    eval_episodes: int = 10
    final_episodes: int = 30
    jobs: int = 1  # runs at once, each in its own process with one thread (0: in this process, for tests)
    overrides: tuple[tuple[str, Any], ...] = ()  # hyperparameters replaced for every task (smoke runs only)


SCALES = {
    "smoke": Settings(tasks=("PendulumNoVel-v1",), seeds=1, budget_fraction=0.005, evals=2, eval_episodes=1,
                      final_episodes=1, jobs=0, overrides=(("n_steps", 32), ("n_epochs", 1), ("batch_size", 64))),
    "default": Settings(),
    "paper": Settings(seeds=5),
}  # fmt: skip


# ------------------------------------------------------------------------------------------ one run
def _schedule(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("lin_"):
        from stable_baselines3.common.utils import LinearSchedule

        return LinearSchedule(float(value[4:]), 0.0, 1.0)
    return value


def _policy_kwargs(task: Task, agent: str) -> dict[str, Any]:
    import torch

    kwargs = {k: v for k, v in task.heads.items()}
    if kwargs.get("activation_fn") == "relu":
        kwargs["activation_fn"] = torch.nn.ReLU
    if agent == "recurrent_ppo":
        kwargs.update(task.lstm)
    elif agent == "plastic_lstm":
        kwargs["core"] = "lstm"
    return kwargs


def build(task: Task, agent: str, seed: int, env, overrides: dict[str, Any] | None = None):
    """The model of ``agent`` for ``task`` on the vectorised env ``env``."""
    from sb3_contrib import RecurrentPPO
    from stable_baselines3 import PPO

    from neuromod_rl.agents import PlasticPPO

    cls, policy = {
        "recurrent_ppo": (RecurrentPPO, "MlpLstmPolicy"),
        "plastic": (PlasticPPO, "MlpPlasticPolicy"),
        "plastic_lstm": (PlasticPPO, "MlpPlasticPolicy"),
        "ppo": (PPO, "MlpPolicy"),
    }[agent]
    hyper = {k: _schedule(v) for k, v in {**task.hyperparameters, **(overrides or {})}.items()}
    return cls(policy, env, policy_kwargs=_policy_kwargs(task, agent), seed=seed, verbose=0, **hyper)


def run_one(task_name: str, agent: str, seed: int, budget: int, evals: int, eval_episodes: int,
            final_episodes: int, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and evaluate one (task, agent, seed); returns the curve, the final return and the wall time."""
    import torch
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize

    import neuromod_rl  # noqa: F401  (registers the tasks)

    torch.set_num_threads(1)
    task = TASKS[task_name]
    env = make_vec_env(task.env_id, n_envs=task.n_envs, seed=seed)
    eval_env = make_vec_env(task.env_id, n_envs=1, seed=1_000_000 + seed)
    if task.normalize:
        gamma = task.hyperparameters.get("gamma", 0.99)
        env = VecNormalize(env, gamma=gamma)
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False, gamma=gamma)
    model = build(task, agent, seed, env, overrides)

    def evaluate(episodes: int) -> float:
        if task.normalize:
            eval_env.obs_rms = env.obs_rms
        mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True)
        return float(mean)

    curve, train_seconds = [], 0.0
    chunk = max(1, budget // evals)
    while model.num_timesteps < budget:
        start = time.perf_counter()
        model.learn(min(chunk, budget - model.num_timesteps), reset_num_timesteps=False)
        train_seconds += time.perf_counter() - start
        curve.append((int(model.num_timesteps), evaluate(eval_episodes)))
    return {
        "task": task_name, "agent": agent, "seed": seed, "budget": budget, "curve": curve,
        "final_return": evaluate(final_episodes), "train_seconds": train_seconds,
        "steps_per_second": model.num_timesteps / max(train_seconds, 1e-9),
    }  # fmt: skip


# ------------------------------------------------------------------------------------------ the suite
def _worker_command(key: tuple[str, str, int], budget: int, s: Settings) -> list[str]:
    task, agent, seed = key
    args = [task, agent, str(seed), str(budget), str(s.evals), str(s.eval_episodes), str(s.final_episodes),
            json.dumps(dict(s.overrides))]
    return [sys.executable, "-m", "neuromod_rl.experiment.reproduce.pomdp", *args]


def _run_all(s: Settings, store: Path) -> list[dict[str, Any]]:
    """Every (task, agent, seed) not in ``store`` yet, ``s.jobs`` processes at a time; returns all results."""
    from tqdm.auto import tqdm

    results = json.loads(store.read_text()) if store.is_file() else []
    done = {(r["task"], r["agent"], r["seed"], r["budget"]) for r in results}
    todo = []
    for task in s.tasks:
        budget = max(1, int(TASKS[task].budget * s.budget_fraction))
        todo += [((task, a, seed), budget) for seed in range(s.seeds) for a in s.agents
                 if (task, a, seed, budget) not in done]  # fmt: skip
    if s.jobs == 0:
        for (task, agent, seed), budget in tqdm(todo, desc="pomdp suite", unit="run"):
            results.append(run_one(task, agent, seed, budget, s.evals, s.eval_episodes, s.final_episodes,
                                   dict(s.overrides)))
            store.write_text(json.dumps(results, indent=1))
        return results
    running: list[tuple[subprocess.Popen, tuple]] = []
    bar = tqdm(total=len(todo), desc="pomdp suite", unit="run")
    while todo or running:
        while todo and len(running) < s.jobs:
            key, budget = todo.pop(0)
            proc = subprocess.Popen(_worker_command(key, budget, s), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
            running.append((proc, key))
        proc, key = running.pop(0)
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"pomdp run {key} failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
        store.write_text(json.dumps(results, indent=1))
        bar.update(1)
    bar.close()
    return results


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return float(q[1]), float(q[0]), float(q[2])


def steps_to(curve: list[tuple[int, float]], level: float) -> float:
    """First training step at which the evaluation return reached ``level`` (inf if never)."""
    return next((float(step) for step, value in curve if value >= level), math.inf)


def _fmt_steps(values: list[float]) -> str:
    reached = [v for v in values if math.isfinite(v)]
    if len(reached) < len(values) / 2:
        return f"not reached ({len(reached)}/{len(values)})"
    med = float(np.median(values))
    return f"{med / 1000:.0f}k ({len(reached)}/{len(values)})"


def summarise(results: list[dict[str, Any]], s: Settings) -> dict[str, Any]:
    """Per task and agent: final return (median, IQR), steps to the threshold and to RecurrentPPO's
    final return (its lower quartile), wall time; and the targets' verdicts."""
    out: dict[str, Any] = {}
    for task in s.tasks:
        runs = {a: [r for r in results if r["task"] == task and r["agent"] == a] for a in AGENTS}
        anchor = _quartiles([r["final_return"] for r in runs["recurrent_ppo"]])
        rows = {}
        for agent, rs in runs.items():
            if not rs:
                continue
            rows[agent] = {
                "final": _quartiles([r["final_return"] for r in rs]),
                "to_threshold": [steps_to(r["curve"], TASKS[task].threshold) for r in rs],
                "to_anchor": [steps_to(r["curve"], anchor[1]) for r in rs],
                "seconds": float(np.median([r["train_seconds"] for r in rs])),
                "steps_per_second": float(np.median([r["steps_per_second"] for r in rs])),
            }
        out[task] = {"anchor": anchor, "rows": rows}
    return out


def _verdicts(summary: dict[str, Any], agent: str) -> list[tuple[str, bool, str]]:
    claims = []
    for task, data in summary.items():
        rows = data["rows"]
        if agent not in rows or "recurrent_ppo" not in rows:
            continue
        mine, anchor = rows[agent], rows["recurrent_ppo"]
        q1 = data["anchor"][1]
        return_ok = mine["final"][0] >= q1
        steps_ok = np.median(mine["to_anchor"]) <= np.median(anchor["to_anchor"])
        time_ratio = mine["seconds"] / max(anchor["seconds"], 1e-9)
        claims.append((
            f"{task}: {LABELS[agent]} reaches RecurrentPPO's final return (its lower quartile {q1:.1f}) in no more "
            "steps, in <= 0.5x its wall time",
            bool(return_ok and steps_ok and time_ratio <= 0.5),
            f"final median {mine['final'][0]:.1f} vs {data['anchor'][0]:.1f}; steps to {q1:.1f}: "
            f"{_fmt_steps(mine['to_anchor'])} vs {_fmt_steps(anchor['to_anchor'])}; wall time {time_ratio:.2f}x",
        ))  # fmt: skip
    return claims


def _plot(results: list[dict[str, Any]], s: Settings, out: Path) -> str:
    fig, axes = new_figure(ncols=len(s.tasks), width=4.6)
    for ax, task in zip(axes, s.tasks):
        for agent in AGENTS:
            curves = [r["curve"] for r in results if r["task"] == task and r["agent"] == agent]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            steps = np.array([c[i][0] for i in range(n) for c in curves[:1]])
            values = np.array([[c[i][1] for i in range(n)] for c in curves])
            q1, med, q3 = np.percentile(values, [25, 50, 75], axis=0)
            ax.plot(steps, med, label=LABELS[agent])
            ax.fill_between(steps, q1, q3, alpha=0.2)
        ax.axhline(TASKS[task].threshold, color="grey", ls=":", lw=1)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("env steps")
    axes[0].set_ylabel("evaluation return (median, IQR)")
    axes[0].legend(fontsize=7)
    return save_figure(fig, out, "pomdp_curves.png")


def run(scale: str, seed: int, out: Path, command: str) -> Path:
    s = SCALES[scale]
    settings = {**{k: v for k, v in s.__dict__.items()}, "tasks (zoo settings)": {k: TASKS[k] for k in s.tasks}}
    report = Report("pomdp", "Memory suite: plastic policies against RecurrentPPO on velocity-masked tasks",
                    command, seed, scale, settings)  # fmt: skip
    store = out / ("pomdp_runs.json" if scale != "smoke" else "pomdp_runs.smoke.json")
    results = _run_all(s, store)
    summary = summarise(results, s)
    for agent in ("plastic", "plastic_lstm"):
        for claim in _verdicts(summary, agent):
            report.claim(*claim)
    rows = []
    for task, data in summary.items():
        for agent, r in data["rows"].items():
            med, q1, q3 = r["final"]
            rows.append([task, LABELS[agent], f"{med:.1f} [{q1:.1f}, {q3:.1f}]", _fmt_steps(r["to_threshold"]),
                         _fmt_steps(r["to_anchor"]), f"{r['seconds']:.0f}", f"{r['steps_per_second']:.0f}"])
    header = ["task", "agent", "final return, median [IQR]", "steps to threshold", "steps to RecurrentPPO's final",
              "train s (median)", "env-steps/s"]  # fmt: skip
    report.add("## Results\n\n" + markdown_table(header, rows))
    thresholds = "\n".join(f"- {t}: {TASKS[t].threshold:g} ({TASKS[t].threshold_source})" for t in s.tasks)
    report.add(f"## Thresholds\n\n{thresholds}\n\n{_plot(results, s, out)}")
    return report.write(out)


def main(argv: list[str]) -> int:
    """Worker entry, one run with its JSON result on stdout: ``python -m neuromod_rl.experiment.reproduce.pomdp
    TASK AGENT SEED BUDGET EVALS EPISODES FINAL_EPISODES OVERRIDES``."""
    task, agent, seed, budget, evals, episodes, final, overrides = argv
    result = run_one(task, agent, int(seed), int(budget), int(evals), int(episodes), int(final),
                     json.loads(overrides))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
