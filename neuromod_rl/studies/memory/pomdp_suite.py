"""The memory suite's definitions: rl-zoo3's velocity-masked tasks with their tuned RecurrentPPO
settings, the agents, and one run of (task, agent, seed) in its own process.

:mod:`.pomdp` (the study) and :mod:`.core_sweep` train over these; :mod:`.summary` and
:mod:`.throughput` read them. Worker processes run this module by name (:data:`MODULE`).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecNormalize

from neuromod_rl.agents import PlasticPPO
from neuromod_rl.agents.common.core_factory import CoreConfig
from neuromod_rl.agents.on_policy.policies import DEFAULT_NET_ARCH
from neuromod_rl.plasticity import freeze_plasticity
from neuromod_rl.studies.scaffold import multiseed
from neuromod_rl.studies.scaffold.multiseed import StudyOptions

NAME = "pomdp"
VERSION = "pomdp-1"  # bump when the protocol of a run changes (its results are then recomputed)


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
#: this module, for the worker processes that import it by name (``-m`` and ``-c``)
MODULE = "neuromod_rl.studies.memory.pomdp_suite"

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
    "CartPoleNoVel-v1": Task(
        "neuromod_rl/CartPoleNoVel-v1", 100_000, 475.0, "Gymnasium's reward_threshold for CartPole-v1", 8,
        dict(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
             learning_rate="lin_1e-3", clip_range="lin_0.2"),
        _HEADS,
        {"lstm_hidden_size": 64, "enable_critic_lstm": True},
    ),
    "MountainCarNoVel-v0": Task(
        "neuromod_rl/MountainCarNoVel-v0", 1_000_000, -110.0, "Gymnasium's reward_threshold", 16,
        dict(n_steps=16, gae_lambda=0.98, gamma=0.99, n_epochs=4, ent_coef=0.0),
    ),
}  # fmt: skip
#: pure memory tasks (``envs/recall.py``) at one shared PPO setting for every agent: 8 envs, ``n_steps=256``,
#: ``batch_size=512``, 4 epochs, lr 3e-4, ``ent_coef=0.01``, 64 hidden units; RecurrentPPO otherwise at its
#: defaults (a critic LSTM, 64x64 heads), the plastic agents at theirs. Rewards lie in [-1, 1]: no VecNormalize.
_RECALL_SETTING = dict(n_steps=256, batch_size=512, n_epochs=4, learning_rate=3e-4, ent_coef=0.01)
RECALL_TASKS: dict[str, Task] = {
    name: Task(f"neuromod_rl/{name}", budget, 0.9, "0.9 of perfect play's 1.0 (random play returns -0.5)", 8,
               dict(_RECALL_SETTING), {}, {"lstm_hidden_size": 64}, normalize=False)
    for name, budget in (("Recall-v0", 600_000), ("Copy-v0", 600_000), ("Majority-v0", 600_000))
}  # fmt: skip
#: every task a run can name: the zoo suite and the recall tasks
ALL_TASKS: dict[str, Task] = {**TASKS, **RECALL_TASKS}
#: each task's unmasked Gymnasium env, for the control agent ``ppo_full``
FULL_OBSERVATIONS = {"PendulumNoVel-v1": "Pendulum-v1", "MountainCarContinuousNoVel-v0": "MountainCarContinuous-v0",
                     "MountainCarNoVel-v0": "MountainCar-v0", "CartPoleNoVel-v1": "CartPole-v1"}
AGENTS = ("recurrent_ppo", "plastic_rnn", "plastic_lstm", "ppo", "ppo_full")
LABELS = {
    "recurrent_ppo": "RecurrentPPO (LSTM, zoo)",
    "plastic_rnn": "PlasticPPO core=rnn",
    "plastic_lstm": "PlasticPPO core=lstm",
    "ppo": "PPO MlpPolicy (no memory)",
    "ppo_full": "PPO MlpPolicy, velocities seen (control)",
}


def env_id(task: str, agent: str) -> str:
    """The env ``agent`` trains on: the masked task, or for the control ``ppo_full`` its unmasked env
    (the same settings with the velocities seen: is the task learnable at this budget at all?)."""
    if agent == "ppo_full" and task not in FULL_OBSERVATIONS:
        raise ValueError(f"{task} has no fully observed version: the control agent ppo_full applies to "
                         f"{list(FULL_OBSERVATIONS)}")
    return FULL_OBSERVATIONS[task] if agent == "ppo_full" else ALL_TASKS[task].env_id


def label(agent: str) -> str:
    """The agent's name in tables and plots; the library's default core is marked."""
    default = agent.startswith("plastic") and agent.split("_")[1] == CoreConfig().core
    return LABELS[agent] + (" (default)" if default else "")


@dataclass(frozen=True)
class Settings:
    tasks: tuple[str, ...] = ("PendulumNoVel-v1", "MountainCarContinuousNoVel-v0", "MountainCarNoVel-v0",
                              "CartPoleNoVel-v1")
    agents: tuple[str, ...] = AGENTS
    seeds: int = 3
    budget_fraction: float = 1.0  # of the zoo's budget
    evals: int = 20  # evaluations during training
    eval_episodes: int = 10
    final_episodes: int = 30
    jobs: int = 1  # 1: each run in a fresh process with one thread (--workers runs several); 0: in this process
    timing_steps: int = 20_000  # env steps timed per agent and task for the wall-time comparison
    overrides: tuple[tuple[str, Any], ...] = ()  # hyperparameters replaced for every task (smoke runs only)


SCALES = {
    "smoke": Settings(tasks=("PendulumNoVel-v1",), seeds=1, budget_fraction=0.005, evals=2, eval_episodes=1,
                      final_episodes=1, jobs=0, timing_steps=64,
                      overrides=(("n_steps", 32), ("n_epochs", 1), ("batch_size", 64))),
    "default": Settings(),
    "paper": Settings(seeds=5),
}  # fmt: skip


# ------------------------------------------------------------------------------------------ one run
def _schedule(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("lin_"):
        return LinearSchedule(float(value[4:]), 0.0, 1.0)
    return value


#: keys of ``plastic`` that are not policy keys, applied by :func:`build`: hold the plastic gain at 0 (the
#: non-plastic twin); train on minibatches of ``batch_size`` steps, as RecurrentPPO does (:func:`matched_bptt`);
#: cut the rollout into training sequences of this many steps (PlasticPPO's ``bptt_length``)
FROZEN = "frozen_plasticity"
MATCHED_MINIBATCH = "minibatch_of_batch_size"
BPTT = "bptt_length"
NOT_POLICY_KEYS = (FROZEN, MATCHED_MINIBATCH, BPTT)


def matched_bptt(hyperparameters: dict[str, Any]) -> int | str:
    """The ``bptt_length`` that gives PlasticPPO minibatches of ``batch_size`` steps, as RecurrentPPO's:
    ``batch_size`` where one env's rollout (``n_steps``) is longer and ``batch_size`` divides it; otherwise
    whole rollouts (``"episode"``, the default), where a minibatch already holds ``batch_size`` steps or more.
    By default a minibatch is whole rollouts, so with ``batch_size < n_steps`` an epoch takes
    ``n_steps / batch_size`` times fewer gradient steps than RecurrentPPO's with the same settings."""
    n_steps, batch = hyperparameters.get("n_steps", 2048), hyperparameters.get("batch_size", 64)  # SB3's defaults
    return batch if batch < n_steps and n_steps % batch == 0 else "episode"


def _policy_kwargs(task: Task, agent: str, plastic: dict[str, Any] | None = None) -> dict[str, Any]:
    """The agent's ``policy_kwargs`` for ``task``; ``plastic``: plastic keys a plastic agent gets on top
    (the core sweep's variants, e.g. ``{"hidden_size": 32}``; :data:`NOT_POLICY_KEYS` are applied by :func:`build`)."""
    kwargs = {k: v for k, v in task.heads.items()}
    if kwargs.get("activation_fn") == "relu":
        kwargs["activation_fn"] = torch.nn.ReLU
    if agent == "recurrent_ppo":
        kwargs.update(task.lstm)
    elif agent.startswith("plastic"):
        core = agent.split("_")[1]
        if core != CoreConfig().core:  # the default core gets no plastic key at all
            kwargs["core"] = core
        kwargs.update({k: v for k, v in (plastic or {}).items() if k not in NOT_POLICY_KEYS})
    elif plastic:
        raise ValueError(f"plastic policy keys {sorted(plastic)} given to the non-plastic agent {agent!r}")
    return kwargs


def build(task: Task, agent: str, seed: int, env, overrides: dict[str, Any] | None = None,
          plastic: dict[str, Any] | None = None):
    """The model of ``agent`` for ``task`` on the vectorised env ``env`` (``plastic``: see :func:`_policy_kwargs`)."""
    cls, policy = {
        "recurrent_ppo": (RecurrentPPO, "MlpLstmPolicy"),
        "plastic_rnn": (PlasticPPO, "MlpPlasticPolicy"),
        "plastic_lstm": (PlasticPPO, "MlpPlasticPolicy"),
        "ppo": (PPO, "MlpPolicy"),
        "ppo_full": (PPO, "MlpPolicy"),
    }[agent]
    settings = {**task.hyperparameters, **(overrides or {})}
    hyper = {k: _schedule(v) for k, v in settings.items()}
    if (plastic or {}).get(MATCHED_MINIBATCH):
        hyper["bptt_length"] = matched_bptt(settings)
    if BPTT in (plastic or {}):
        hyper["bptt_length"] = plastic[BPTT]
    model = cls(policy, env, policy_kwargs=_policy_kwargs(task, agent, plastic), seed=seed, verbose=0, **hyper)
    if (plastic or {}).get(FROZEN):
        freeze_plasticity(model.policy)  # before the first update: Adam never sees a gradient for alpha
    return model


def run_one(task_name: str, agent: str, seed: int, budget: int, evals: int, eval_episodes: int,
            final_episodes: int, overrides: dict[str, Any] | None = None,
            plastic: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and evaluate one (task, agent, seed); returns the curve, the final return and the wall time."""
    torch.set_num_threads(1)
    task = ALL_TASKS[task_name]
    env = make_vec_env(env_id(task_name, agent), n_envs=task.n_envs, seed=seed)
    eval_env = make_vec_env(env_id(task_name, agent), n_envs=1, seed=1_000_000 + seed)
    if task.normalize:
        gamma = task.hyperparameters.get("gamma", 0.99)
        env = VecNormalize(env, gamma=gamma)
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False, gamma=gamma)
    model = build(task, agent, seed, env, overrides, plastic)

    def evaluate(episodes: int) -> float:
        if task.normalize:
            eval_env.obs_rms = env.obs_rms
        mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True)
        return float(mean)

    curve, train_seconds, traces = [], 0.0, TraceStatistics()
    chunk = max(1, budget // evals)
    while model.num_timesteps < budget:
        start = time.perf_counter()
        model.learn(min(chunk, budget - model.num_timesteps), reset_num_timesteps=False, callback=traces)
        train_seconds += time.perf_counter() - start
        curve.append((int(model.num_timesteps), evaluate(eval_episodes)))
    return {
        "task": task_name, "agent": agent, "seed": seed, "budget": budget, "curve": curve,
        "final_return": evaluate(final_episodes), "train_seconds": train_seconds,
        "steps_per_second": model.num_timesteps / max(train_seconds, 1e-9), "trace_statistics": traces.rows,
    }  # fmt: skip


class TraceStatistics(BaseCallback):
    """A callback keeping the plastic core's per-rollout diagnostics as PlasticPPO logs them:
    ``(step, share of fast weights at the clip bound, spread of M(t))``; empty for other agents."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, float, float | None]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        logged = self.logger.name_to_value
        if "plastic/clip_fraction" in logged:
            m = logged.get("plastic/modulation_std")
            self.rows.append((int(self.num_timesteps), float(logged["plastic/clip_fraction"]),
                              None if m is None else float(m)))


# ------------------------------------------------------------------------------------------ the suite
def run_job(key: str, seed: int, budget: int, s: Settings) -> dict[str, Any]:
    """One (task/agent, seed) as a :class:`~.multiseed.Job`."""
    task, agent = key.split("/")
    return launch(task, agent, seed, budget, s)


def launch(task: str, agent: str, seed: int, budget: int, s: Any, plastic: dict[str, Any] | None = None,
           ) -> dict[str, Any]:
    """:func:`run_one` in a fresh process (``s.jobs == 0``: in this one), so the run's own imports and
    threads are its own and its wall time is comparable; ``s`` gives the evaluation settings."""
    if s.jobs == 0:  # in this process (the smoke test)
        return run_one(task, agent, seed, budget, s.evals, s.eval_episodes, s.final_episodes, dict(s.overrides),
                       plastic)
    args = [task, agent, str(seed), str(budget), str(s.evals), str(s.eval_episodes), str(s.final_episodes),
            json.dumps(dict(s.overrides)), json.dumps(plastic or {})]
    proc = subprocess.run([sys.executable, "-m", MODULE, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pomdp run {task}/{agent} {plastic or ''} seed {seed} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def budget_of(task: str, s: Any, options: StudyOptions) -> int:
    """Env steps of a run on ``task``: ``--budget``, else the zoo's budget times the scale's fraction."""
    return options.budget or max(1, int(ALL_TASKS[task].budget * s.budget_fraction))


def run_fingerprint(task: str, agent: str, budget: int, s: Any, version: str,
                    plastic: dict[str, Any] | None = None) -> str:
    """What a run's result depends on: the task's settings, the resolved policy, the budget and the
    evaluation protocol (``s``), and the study's ``version``."""
    return multiseed.fingerprint([ALL_TASKS[task], describe_policy(task, agent, plastic), budget, s.evals,
                                  s.eval_episodes, s.final_episodes, s.overrides, version])


def describe_policy(task: str, agent: str, plastic: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the agent's policy is, resolved (the plastic agents: CoreConfig's defaults included), so
    that changing the default core re-trains the plastic agents and nothing else."""
    kwargs = _policy_kwargs(ALL_TASKS[task], agent, plastic)
    described = {k: repr(v) for k, v in kwargs.items()}
    if agent.startswith("plastic"):
        core = {k: v for k, v in kwargs.items() if k in CoreConfig.__dataclass_fields__}
        described["core"] = CoreConfig(**core).as_dict()
        if "net_arch" not in kwargs and list(DEFAULT_NET_ARCH):
            # the policy's default heads: runs recorded while the default was linear heads had no key
            described["net_arch"] = repr(list(DEFAULT_NET_ARCH))
        described.update({key: (plastic or {})[key] for key in NOT_POLICY_KEYS if (plastic or {}).get(key)})
    if agent == "ppo_full":
        described["env_id"] = env_id(task, agent)
    return described


def with_tasks(s: Any, tasks: tuple[str, ...] | None, known: dict[str, Task] = TASKS, study: str = NAME) -> Any:
    """The settings ``s`` restricted to ``tasks`` (``--tasks``), in the order of ``known``; unknown ids
    are refused by name."""
    if tasks is None:
        return s
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise ValueError(f"unknown {study} task(s) {unknown}; choose from {list(known)}")
    return dataclasses.replace(s, tasks=tuple(t for t in known if t in tasks))


def main(argv: list[str]) -> int:
    """Worker entry, one run with its JSON result on stdout: ``python -m neuromod_rl.studies.memory.pomdp_suite
    TASK AGENT SEED BUDGET EVALS EPISODES FINAL_EPISODES OVERRIDES [PLASTIC]`` (the last two JSON objects)."""
    task, agent, seed, budget, evals, episodes, final, overrides, *plastic = argv
    result = run_one(task, agent, int(seed), int(budget), int(evals), int(episodes), int(final),
                     json.loads(overrides), json.loads(plastic[0]) if plastic else None)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
