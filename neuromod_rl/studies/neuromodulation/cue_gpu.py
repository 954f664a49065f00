"""``neuromod-rl reproduce cue --scale gpu``: the cue task's three Backpropamine variants on the batched,
device-resident path, each for a fixed wall-clock budget.

Simple modulation, non-modulated plasticity and the non-plastic network (the cue study's own variants and
size matching, :mod:`.frame`; ``--core`` applies) train one after another on
``BatchedVecEnv(make_batched("neuromod_rl/CueReward-v0", n_envs, device))``, the model on CUDA when
torch sees a GPU and on the CPU otherwise. Each variant learns one rollout at a time until its budget is
spent, which records the learning curve (env steps, wall seconds, training go-step accuracy, mean
episode return) and the steps reached; then the cue study's evaluation (held-out episodes on the
Gymnasium task, deterministic actions) measures it. The report gives the device, the throughput,
whether the paper's ordering begins to show, and how long the paper's budget would take at that
throughput. One seed by default (``--seeds`` for more); the runs go one at a time (``--workers`` is not
used: two runs sharing a device would each measure the other's load).
"""

from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from neuromod_rl.agents.on_policy.device_rollouts import device_rollout_env
from neuromod_rl.envs.batched import BatchedVecEnv, make_batched
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.train import build_model
from neuromod_rl.plasticity import freeze_plasticity
from neuromod_rl.studies.neuromodulation import cue_gpu_report as gpu_report
from neuromod_rl.studies.neuromodulation import frame as bp
from neuromod_rl.studies.scaffold import multiseed, rl
from neuromod_rl.studies.scaffold.report import Report

#: the variants trained: one modulated network (the size reference), the non-modulated and the non-plastic one
VARIANTS = (bp.SIMPLE, bp.PLASTIC, bp.RNN)


@dataclass(frozen=True)
class GpuScale:
    """Settings of the wall-clock scale.

    Args:
        time_budget_s: training seconds per variant (and seed); learning stops at the end of the rollout
            and update that would otherwise run past it.
        n_envs_cuda: batched envs on a GPU: enough lanes to fill it (one rollout of 120 steps each).
        n_envs_cpu: batched envs when torch sees no GPU.
        minibatches: minibatches per epoch, whatever the number of envs, so a minibatch holds
            ``n_envs // minibatches`` whole episodes.
        n_epochs: PPO epochs per rollout.
        learning_rate: a constant rate: a linear decay needs the run's total steps, which a wall-clock
            budget does not know in advance.
        hidden: the reference hidden size (``None``: the library's default core's).
        eval_episodes: held-out episodes of the final evaluation.
    """

    time_budget_s: float = 120.0
    n_envs_cuda: int = 1024
    n_envs_cpu: int = 64
    minibatches: int = 8
    n_epochs: int = 4
    learning_rate: float = 1e-3
    hidden: int | None = None
    eval_episodes: int = 200
    extra: dict[str, Any] = field(default_factory=dict)  # further PPO overrides (tests)

    def n_envs(self, device: str) -> int:
        """The number of envs on ``device`` (``"cuda"`` or ``"cpu"``)."""
        return self.n_envs_cuda if device == "cuda" else self.n_envs_cpu

    def frame_scale(self, n_envs: int, episode_length: int) -> bp.Scale:
        """The cue study's scale record for ``n_envs`` envs and episodes of ``episode_length`` steps, with the
        PPO settings for many envs (the report's "PPO settings for many envs" says why)."""
        rollout = n_envs * episode_length
        changes = {"n_steps": episode_length, "batch_size": max(rollout // self.minibatches, episode_length),
                   "n_epochs": self.n_epochs, "learning_rate": self.learning_rate, **self.extra}
        # n_timesteps is a placeholder the configs require; the wall-clock budget stops training
        return bp.Scale(seeds=1, n_timesteps=rollout, n_envs=n_envs, hidden=self.hidden,
                        eval_episodes=self.eval_episodes, changes=changes)


DEFAULT = GpuScale()


def pick_device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_name(device: str) -> str:
    """What the report says of ``device`` (``"cuda"`` or ``"cpu"``): the GPU's name, or the CPU and its threads."""
    if device == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(0)}"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s)"


class GoStepCounter(BaseCallback):
    """Counts the go-step answers of the rollouts (reward +1 right, -1 wrong, 0 elsewhere) on the device,
    so that no step waits for the host; read with :meth:`take`."""

    def __init__(self):
        super().__init__()
        self.right: torch.Tensor | None = None
        self.answered: torch.Tensor | None = None

    def _on_step(self) -> bool:
        r = torch.as_tensor(self.locals["rewards"])
        right, answered = (r > 0).sum(), (r != 0).sum()
        if self.right is None:
            self.right, self.answered = right, answered
        else:
            self.right, self.answered = self.right + right, self.answered + answered
        return True

    def take(self) -> float:
        """Accuracy since the last call (NaN without a go step); resets the counts."""
        if self.right is None or int(self.answered) == 0:
            acc = float("nan")
        else:
            acc = float(self.right) / float(self.answered)
        self.right = self.answered = None
        return acc


def train_for(model, seconds: float, device: str) -> list[dict[str, float]]:
    """Learn one rollout and update at a time until ``seconds`` of wall clock are spent: the next one
    starts only if it should end within the budget, judged by the last one's time (the first always
    runs). Returns the learning curve, one point per rollout.

    Args:
        model: a PlasticPPO (or PlasticA2C) over a ``BatchedVecEnv``; trained from its current state.
        seconds: the wall-clock budget.
        device: the model's device type; on ``"cuda"`` the clock waits for the queued kernels.
    """
    rollout = model.n_steps * model.n_envs
    counter = GoStepCounter()
    curve: list[dict[str, float]] = []
    start = last = time.perf_counter()
    took = 0.0
    while not curve or (last - start) + took <= seconds:
        model.learn(rollout, callback=counter, reset_num_timesteps=not curve)
        if device == "cuda":
            torch.cuda.synchronize()  # the clock counts finished work, not queued kernels
        now = time.perf_counter()
        took, last = now - last, now
        returns = [e["r"] for e in model.ep_info_buffer]
        curve.append({"steps": int(model.num_timesteps), "seconds": round(now - start, 3),
                      "train_accuracy": counter.take(), "episode_return": float(np.mean(returns)) if returns else 0.0})
    return curve


def rates(curve: list[dict[str, float]]) -> tuple[float, float]:
    """``(overall, steady)`` env-steps/s of a learning ``curve`` (:func:`train_for`): over the whole budget,
    and after the first rollout (which pays for the CUDA context, kernel compilation and the allocator's
    warm-up)."""
    overall = curve[-1]["steps"] / max(curve[-1]["seconds"], 1e-9)
    if len(curve) < 2:
        return overall, overall
    steps, secs = curve[-1]["steps"] - curve[0]["steps"], curve[-1]["seconds"] - curve[0]["seconds"]
    return overall, steps / max(secs, 1e-9)


def job(label: str, seed: int, agent: rl.Agent, sc: GpuScale, setup: bp.TaskSetup, device: str,
        runs_dir: Path, fp: str) -> dict[str, Any]:
    """Train one variant for the budget on the batched task, evaluate it, save its model; returns its result.

    Args:
        label: the variant's name.
        seed: its seed.
        agent: its agent (config with the scale's envs and PPO settings, sizes matched).
        sc: the scale's settings.
        setup: the cue study's task setup (its evaluator).
        device: ``"cuda"`` or ``"cpu"``.
        runs_dir: where the trained model is saved (``<runs_dir>/cue/gpu-<variant>-seed<k>-<fingerprint>``).
        fp: the run's fingerprint.
    """
    n_envs = sc.n_envs(device)
    cfg = agent.resolved(seed, device=device)
    env = BatchedVecEnv(make_batched(cfg.env, n_envs, device))
    model = build_model(cfg, env)
    if device_rollout_env(model, model.get_env()) is None:  # the scale measures the device-resident path only
        raise RuntimeError(f"the {label!r} model on {device} would not train on the device-resident rollout path "
                           "(the warning above says why); the gpu scale measures that path only")
    if agent.frozen_plasticity:
        freeze_plasticity(model.policy)  # before the first update, as the cue study's callback does
    curve = train_for(model, sc.time_budget_s, device)
    result = setup.evaluator(cfg, model, None, seed, sc.eval_episodes)
    path = rl.run_path(runs_dir, setup.name, f"gpu-{label}", seed, fp)
    path.mkdir(parents=True, exist_ok=True)
    model.save(path / "model.zip")
    overall, steady = rates(curve)
    result.update(run=str(path), device=device_name(device), n_envs=n_envs, steps=curve[-1]["steps"],
                  seconds=curve[-1]["seconds"], steps_per_s=overall, steady_steps_per_s=steady, curve=curve)
    return result


def run(setup: bp.TaskSetup, seed: int, out: Path, command: str, options: multiseed.StudyOptions,
        paper_steps: int, chance_band: float, sc: GpuScale | None = None) -> Path:
    """Train, evaluate and report the three variants at the wall-clock scale.

    Args:
        setup: the cue study's task setup (env, hyperparameters, evaluator).
        seed: master seed.
        out: folder of the report, plot and progress file.
        command: the command line written into the report.
        options: the study's command-line options (``--seeds``, ``--core``, ``--runs-dir``).
        paper_steps: the paper's env steps per network, for the projection.
        chance_band: the accuracy a variant must reach to count as having learned the task.
        sc: the scale's settings (``None``: :data:`DEFAULT`).
    """
    sc = sc or DEFAULT
    if options.budget is not None:
        raise UserError("--budget sets env steps; --scale gpu trains each variant for a wall-clock time instead "
                        f"({sc.time_budget_s:g} s): leave --budget out")
    device = pick_device()
    seeds = multiseed.seed_list(seed, options.seeds or 1)
    report = Report(setup.name, f"{setup.title}: batched envs, {sc.time_budget_s:g} s per variant", command, seed,
                    "gpu", {"scale": dataclasses.asdict(sc), "seeds": seeds,
                            "hyperparameters": setup.hyperparameters}, seeds=seeds)  # fmt: skip
    progress = multiseed.Progress(out, setup.name, "gpu")
    episode = int(setup.hyperparameters["n_steps"])  # the cue study's rollouts are one episode long
    # fingerprints name the scale's settings, not the machine: a report rerun elsewhere reuses the runs
    # (each result records the device it ran on)
    nominal = sc.frame_scale(sc.n_envs_cuda, episode)
    base = bp.variants(setup.name, setup.env, setup.hyperparameters, nominal, False, setup.reward_index, options.core)
    table = {n: base[n] for n in VARIANTS}
    sizes = bp.match_sizes(table, progress)
    table = bp.sized(table, sizes)
    actual = sc.frame_scale(sc.n_envs(device), episode)
    jobs, described = [], {}
    for name, agent in table.items():
        described[name] = agent.describe(agent.resolved(seeds[0]))
        fp = multiseed.fingerprint([described[name], dataclasses.asdict(sc), setup.name, "gpu"])
        trained = rl.Agent(name, rl.merged(agent.config, {"n_envs": actual.n_envs,
                                                          "hyperparameters": actual.changes}),
                           agent.frozen_plasticity)  # fmt: skip
        jobs += [multiseed.Job(name, s, fp, job, (trained, sc, setup, device, options.runs_dir, fp)) for s in seeds]
    results = multiseed.run_jobs(progress, jobs, workers=1)
    return gpu_report.write(gpu_report.GpuOutcome(report, results, list(VARIANTS), sizes, described, progress,
                                                  seeds, sc), out, paper_steps, chance_band)
