"""Learning comparison of the off-policy plastic agent: PlasticSAC vs SB3 SAC vs RecurrentPPO.

Two tasks, each method trained from ``seeds`` seeds, evaluated every ``eval_every`` steps on
``eval_episodes`` episodes of a separately seeded env (deterministic actions, the plastic or LSTM
state carried through each episode):

* ``neuromod_rl/PendulumNoVel-v1`` (the angular velocity is zeroed: it must be inferred from the
  angle over time). Methods: SB3 SAC on the *full* observation (``Pendulum-v1``: the memory ceiling,
  ``sac_full_steps``), SB3 SAC on the masked task (memoryless), PlasticSAC and its frozen ablation
  (``freeze_plasticity=True``: the same recurrent network with ``alpha = 0``; ``ablation``), all with
  rl-zoo's SAC settings for Pendulum-v1 (learning rate 1e-3, SB3's defaults otherwise; MLPs of
  ``net_arch``) for ``1.5 x sac_full_steps``; and sb3-contrib's RecurrentPPO with rl-zoo's tuned
  ``ppo_lstm`` settings for PendulumNoVel-v1 and its budget (1e5 steps; LSTM of 64, see
  :data:`RPPO_PENDULUM`), with rl-zoo's ``VecNormalize`` as for every RecurrentPPO run here.
* ``neuromod_rl/CrippledHalfCheetah-v0`` with ``change_at``: the body starts intact and one joint
  breaks mid-episode; training samples the 5 training joints, evaluation also uses the held-out
  joint (``split="test"``). Every method sees the previous action and reward
  (``PrevActionReward``), which is how a failure shows. SB3 SAC and PlasticSAC with SB3's SAC
  defaults (MLPs of ``net_arch``), RecurrentPPO with 3x their steps and the settings of
  :data:`RPPO_CHEETAH` (with rl-zoo's ``VecNormalize``).

The default scale is sized for about an hour on 2 cores with ``--workers 2`` (two runs at once, one
thread each); the ``paper`` scale trains the HalfCheetah agents 20x longer. Each (task, method, seed)
is one job of :mod:`.multiseed`: its result is saved as soon as it is done (``--seeds`` sets how many
seeds), so a stopped study resumes where it was and a method whose budget or settings changed re-runs
alone.

Target claim: on the masked task PlasticSAC reaches the return of SB3 SAC on full
observations within 1.5x the steps SAC needed. "Reaching" a return ``R``: the median over seeds of
the evaluation return is at least ``R`` minus 10% of the ceiling run's improvement (evaluations are
noisy); ``R`` is the ceiling run's final median.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from sb3_contrib import RecurrentPPO
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize, sync_envs_normalization

from neuromod_rl.agents import PlasticSAC
from neuromod_rl.envs import PrevActionReward
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

PENDULUM, PENDULUM_FULL, CHEETAH = "neuromod_rl/PendulumNoVel-v1", "Pendulum-v1", "neuromod_rl/CrippledHalfCheetah-v0"
VERSION = "offpolicy-1"  # bump when run_job changes (finished runs are then recomputed)
LABELS = {
    "sac_full": "SB3 SAC, full observation (ceiling)",
    "sac": "SB3 SAC (memoryless)",
    "plastic_sac": "PlasticSAC",
    "plastic_sac_frozen": "PlasticSAC, frozen (alpha = 0)",
    "recurrent_ppo": "RecurrentPPO (rl-zoo settings)",
}
#: rl-zoo's ppo_lstm.yml entry for PendulumNoVel-v1 (4 envs, 1e5 steps), with an LSTM of 64 units
#: (sb3-contrib's default 256 runs about 4x slower on a CPU core)
RPPO_PENDULUM = dict(n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0, learning_rate=1e-3,
                     clip_range=0.2, use_sde=True, sde_sample_freq=4, policy_kwargs=dict(lstm_hidden_size=64))
#: rl-zoo's HalfCheetah-v3 entry (gamma, GAE, clipping, gradient norm, VecNormalize, log_std_init) with what
#: fits a short budget: learning rate 3e-4 (rl-zoo's 2e-5 is tuned for 1e6 steps), 5 epochs of 128 (not
#: 20 of 64), LSTM 64 and [64, 64] heads as the SAC agents
RPPO_CHEETAH = dict(n_steps=512, batch_size=128, n_epochs=5, learning_rate=3e-4, gamma=0.98, gae_lambda=0.92,
                    clip_range=0.1, max_grad_norm=0.8, ent_coef=0.0,
                    policy_kwargs=dict(lstm_hidden_size=64, log_std_init=-2, ortho_init=False,
                                       net_arch=dict(pi=[64, 64], vf=[64, 64])))


@dataclass(frozen=True)
class Settings:
    seeds: int = 3
    eval_episodes: int = 5
    sac_full_steps: int = 12_000  # the ceiling's budget (rl-zoo gives SAC 20k on Pendulum-v1; it is done by ~10k)
    pendulum_eval_every: int = 1_000
    pendulum_rppo_steps: int = 100_000  # rl-zoo's budget for RecurrentPPO on PendulumNoVel-v1
    rppo_envs: int = 4
    ablation: bool = False  # also train PlasticSAC with frozen plasticity on PendulumNoVel
    cheetah_steps: int = 15_000
    cheetah_rppo_steps: int = 45_000
    cheetah_eval_every: int = 3_000
    change_at: int = 100
    learning_starts: int = 1_000
    net_arch: tuple[int, ...] = (64, 64)  # the MLPs of every SAC agent (after the core for PlasticSAC)
    hidden_size: int = 64
    sequence_length: int = 32
    rppo_tiny: bool = False  # the smoke scale: a tiny RecurrentPPO (16-step rollouts, one epoch, LSTM of 8)
    episode_steps: int | None = None  # None: the tasks' own episode lengths (200)

    @property
    def pendulum_steps(self) -> int:
        return int(1.5 * self.sac_full_steps)


SCALES = {
    "smoke": Settings(seeds=2, eval_episodes=1, sac_full_steps=40, pendulum_eval_every=20,
                      pendulum_rppo_steps=32, rppo_envs=2, ablation=True, cheetah_steps=40, cheetah_rppo_steps=32,
                      cheetah_eval_every=20, change_at=10, learning_starts=16, net_arch=(8,), hidden_size=4,
                      sequence_length=4, rppo_tiny=True, episode_steps=20),
    "default": Settings(),
    "paper": Settings(seeds=5, sac_full_steps=20_000, ablation=True, cheetah_steps=300_000,
                      cheetah_rppo_steps=1_000_000, cheetah_eval_every=25_000, net_arch=(256, 256)),
}  # fmt: skip


#: the settings that are budgets: each run's own is in its RunSpec (steps, eval_every)
BUDGETS = ("seeds", "sac_full_steps", "pendulum_eval_every", "pendulum_rppo_steps", "ablation", "cheetah_steps",
           "cheetah_rppo_steps", "cheetah_eval_every")


@dataclass(frozen=True)
class RunSpec:
    """One training run of the study: a method on a task from one seed, with its budget."""

    task: str  # "pendulum" | "cheetah"
    method: str
    seed: int
    steps: int
    eval_every: int

    @property
    def agent(self) -> str:
        """The run's name in the progress file (with its seed)."""
        return f"{self.task}/{self.method}"


# -- one training run (runs in a worker process) -----------------------------------------------------
def _env(task: str, method: str, s: Settings, split: str = "train"):
    length = {} if s.episode_steps is None else {"max_episode_steps": s.episode_steps}
    if task == "pendulum":
        return gym.make(PENDULUM_FULL if method == "sac_full" else PENDULUM, **length)
    return PrevActionReward(gym.make(CHEETAH, change_at=s.change_at, split=split, **length))


def episode_rewards(model, venv, episodes: int) -> np.ndarray:
    """Per-step rewards ``[episodes, T]`` of deterministic episodes on a one-env VecEnv, the
    recurrent state carried with ``predict(state, episode_start)`` (feed-forward models ignore it)."""
    out = []
    for _ in range(episodes):
        obs, state, start, rewards = venv.reset(), None, np.ones(1, bool), []
        while True:
            action, state = model.predict(obs, state=state, episode_start=start, deterministic=True)
            obs, reward, done, _ = venv.step(action)
            rewards.append(float(venv.get_original_reward()[0]) if hasattr(venv, "get_original_reward") else
                           float(reward[0]))  # fmt: skip
            start = done
            if done[0]:
                break
        out.append(rewards)
    return np.array(out)


def _build(job: RunSpec, s: Settings, venv):
    sac = dict(learning_starts=s.learning_starts, seed=job.seed, policy_kwargs=dict(net_arch=list(s.net_arch)))
    if job.task == "pendulum":
        sac["learning_rate"] = 1e-3  # rl-zoo, Pendulum-v1
    if job.method in ("sac", "sac_full"):
        return SAC("MlpPolicy", venv, **sac)
    if job.method.startswith("plastic_sac"):
        sac["policy_kwargs"].update(hidden_size=s.hidden_size, freeze_plasticity=job.method.endswith("frozen"))
        return PlasticSAC("MlpPlasticPolicy", venv, sequence_length=s.sequence_length, **sac)
    hp = dict(RPPO_PENDULUM if job.task == "pendulum" else RPPO_CHEETAH)
    if s.rppo_tiny:
        hp.update(n_steps=16, batch_size=16, n_epochs=1, policy_kwargs={**hp["policy_kwargs"], "lstm_hidden_size": 8})
    return RecurrentPPO("MlpLstmPolicy", venv, seed=job.seed, **hp)


def run_job(agent: str, seed: int, steps: int, eval_every: int, s: Settings) -> dict[str, Any]:
    """Train one method (``agent`` is ``"task/method"``) from one seed for ``steps`` env steps, evaluated
    every ``eval_every``; returns its learning curve and final per-step evaluation rewards."""
    task, _, method = agent.partition("/")
    job = RunSpec(task, method, seed, steps, eval_every)
    start = time.perf_counter()
    n_envs = s.rppo_envs if (job.method == "recurrent_ppo" and job.task == "pendulum") else 1
    venv = make_vec_env(lambda: _env(job.task, job.method, s), n_envs=n_envs, seed=job.seed)
    evals = {"train": make_vec_env(lambda: _env(job.task, job.method, s), n_envs=1, seed=10_000 + job.seed)}
    if job.task == "cheetah":
        evals["test"] = make_vec_env(lambda: _env(job.task, job.method, s, "test"), n_envs=1, seed=20_000 + job.seed)
    if job.method == "recurrent_ppo":  # rl-zoo's ppo_lstm entries normalise both tasks
        venv = VecNormalize(venv)
        evals = {k: VecNormalize(v, training=False, norm_reward=False) for k, v in evals.items()}
    model = _build(job, s, venv)
    curve: list[tuple[int, float]] = []

    def evaluate() -> None:
        for e in evals.values():
            if isinstance(e, VecNormalize):
                sync_envs_normalization(venv, e)
        returns = episode_rewards(model, evals["train"], s.eval_episodes).sum(1)
        curve.append((model.num_timesteps, float(returns.mean())))

    class Every(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps // job.eval_every > len(curve) - 1:
                evaluate()
            return True

    evaluate()
    model.learn(job.steps, callback=Every())
    if curve[-1][0] != model.num_timesteps:
        evaluate()
    final = {k: episode_rewards(model, e, s.eval_episodes).tolist() for k, e in evals.items()}
    return dict(job=job.__dict__, curve=curve, final=final, seconds=time.perf_counter() - start)


# -- the study ----------------------------------------------------------------------------------------
def jobs_for(s: Settings, seed: int) -> list[RunSpec]:
    """Every run of the study: ``s.seeds`` seeds from ``seed``, each method with its budget."""
    jobs = []
    for sd in seed_list(seed, s.seeds):
        methods = [("sac_full", s.sac_full_steps), ("sac", s.pendulum_steps), ("plastic_sac", s.pendulum_steps),
                   ("recurrent_ppo", s.pendulum_rppo_steps)] + [("plastic_sac_frozen", s.pendulum_steps)] * s.ablation
        for method, steps in methods:
            every = s.pendulum_eval_every * (5 if method == "recurrent_ppo" else 1)
            jobs.append(RunSpec("pendulum", method, sd, steps, every))
        for method, steps in (("sac", s.cheetah_steps), ("plastic_sac", s.cheetah_steps),
                              ("recurrent_ppo", s.cheetah_rppo_steps)):  # fmt: skip
            every = s.cheetah_eval_every * (2 if method == "recurrent_ppo" else 1)
            jobs.append(RunSpec("cheetah", method, sd, steps, every))
    return jobs


def run_fingerprint(spec: RunSpec, s: Settings) -> str:
    """What a run's result depends on: its method and budget, the settings every run shares, and the
    RecurrentPPO settings of its task (for RecurrentPPO)."""
    shared = {k: v for k, v in settings_dict(s).items() if k not in BUDGETS}
    rppo = (RPPO_PENDULUM if spec.task == "pendulum" else RPPO_CHEETAH) if spec.method == "recurrent_ppo" else None
    described = [spec.task, spec.method, spec.steps, spec.eval_every, shared, rppo, VERSION]
    if rppo is not None and spec.task == "pendulum":
        described.append("VecNormalize")  # added after the first default-scale run, which trained without it
    return fingerprint(described)


def run_all(specs: list[RunSpec], s: Settings, progress: Progress, workers: int) -> list[dict[str, Any]]:
    """Every run's result, in the order of ``specs``: trained now (the longest first, for the workers'
    sake) or read back from ``progress``."""
    jobs = [Job(spec.agent, spec.seed, run_fingerprint(spec, s), run_job, (spec.steps, spec.eval_every, s))
            for spec in sorted(specs, key=lambda j: -j.steps)]  # fmt: skip
    done = multiseed.run_jobs(progress, jobs, workers)
    return [done[(spec.agent, spec.seed)] for spec in specs]


def _curves(results, task: str, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation steps and returns ``[seeds, evals]`` (the runs share their evaluation steps)."""
    runs = [r["curve"] for r in results if r["job"]["task"] == task and r["job"]["method"] == method]
    n = min(len(c) for c in runs)
    return np.array([x for x, _ in runs[0][:n]]), np.array([[y for _, y in c[:n]] for c in runs])


def _fmt(values) -> str:
    med, q1, q3 = median_iqr(values)
    return f"{med:.0f} [{q1:.0f}, {q3:.0f}]"


def first_reach(steps: np.ndarray, returns: np.ndarray, level: float) -> int | None:
    """First evaluation step at which the median over seeds reaches ``level``."""
    median = np.median(returns, axis=0)
    hit = np.nonzero(median >= level)[0]
    return int(steps[hit[0]]) if len(hit) else None


def _plot_curves(ax, results, task: str, methods) -> None:
    for method in methods:
        steps, returns = _curves(results, task, method)
        plot_bands(ax, steps, {LABELS[method]: list(returns)}, "evaluation return (median, IQR)", "env steps")


def _pendulum_section(report: Report, results, s: Settings, out: Path) -> None:
    methods = ["sac_full", "sac", "plastic_sac", "recurrent_ppo"] + ["plastic_sac_frozen"] * s.ablation
    steps_full, full = _curves(results, "pendulum", "sac_full")
    start_full, final_full = float(np.median(full[:, 0])), float(np.median(full[:, -1]))
    level = final_full - 0.1 * abs(final_full - start_full)
    reach = {m: first_reach(*_curves(results, "pendulum", m), level) for m in methods}
    rows = []
    for m in methods:
        steps, returns = _curves(results, "pendulum", m)
        reached = reach[m] if reach[m] is not None else "not reached"
        rows.append([LABELS[m], int(steps[-1]), _fmt(returns[:, -1]), reached])
    full_steps, plastic_steps = reach["sac_full"], reach["plastic_sac"]
    learned = final_full > start_full  # otherwise the ceiling is no ceiling and the claim says nothing
    ok = learned and full_steps is not None and plastic_steps is not None and plastic_steps <= 1.5 * full_steps
    report.claim(
        "PlasticSAC on PendulumNoVel-v1 reaches SB3 SAC's return on full observations within 1.5x its steps",
        ok,
        f"level {level:.0f} (ceiling median {start_full:.0f} at step 0, {final_full:.0f} at the end"
        + ("" if learned else ": it did not improve") + f"); ceiling reached it at {full_steps} steps, "
        f"PlasticSAC at {plastic_steps} (limit {'n/a' if full_steps is None else int(1.5 * full_steps)})",
    )
    _, plastic = _curves(results, "pendulum", "plastic_sac")
    _, memoryless = _curves(results, "pendulum", "sac")
    p, m = median_iqr(plastic[:, -1]), median_iqr(memoryless[:, -1])
    report.claim(
        "PlasticSAC beats memoryless SB3 SAC on PendulumNoVel-v1 at the same steps (IQRs apart)",
        p[1] > m[2],
        f"final returns, median [IQR]: PlasticSAC {_fmt(plastic[:, -1])}, SAC {_fmt(memoryless[:, -1])}",
    )
    _, rppo = _curves(results, "pendulum", "recurrent_ppo")
    report.claim(
        f"PlasticSAC after {s.pendulum_steps} steps matches RecurrentPPO after {s.pendulum_rppo_steps} "
        "(final median at least as high)",
        p[0] >= median_iqr(rppo[:, -1])[0],
        f"PlasticSAC {_fmt(plastic[:, -1])}, RecurrentPPO {_fmt(rppo[:, -1])}",
    )
    fig, axes = new_figure(ncols=1, width=7)
    _plot_curves(axes[0], results, "pendulum", methods)
    axes[0].axhline(level, color="grey", ls=":", lw=1)
    axes[0].set(title="PendulumNoVel-v1 (ceiling: SAC on Pendulum-v1)")
    img = save_figure(fig, out, "offpolicy_pendulum.png")
    report.add(
        f"## PendulumNoVel-v1 ({s.seeds} seeds, {s.eval_episodes} evaluation episodes per point)\n\n"
        + markdown_table(["method", "env steps", "final return, median [IQR]", f"steps to reach {level:.0f}"], rows)
        + ("\n\nThe frozen ablation is the same recurrent network with its plastic gain held at 0: the gap "
           "between it and PlasticSAC is what plasticity adds to recurrence on this task." if s.ablation else "")
        + f"\n\n{img}"
    )


def _cheetah_section(report: Report, results, s: Settings, out: Path) -> None:
    methods = ["sac", "plastic_sac", "recurrent_ppo"]
    rows, after, before = [], {}, {}
    for m in methods:
        runs = [r for r in results if r["job"]["task"] == "cheetah" and r["job"]["method"] == m]
        per_split = {}
        for split in ("train", "test"):
            rewards = [np.array(r["final"][split]) for r in runs]  # each [episodes, T]
            per_split[split] = ([float(x.sum(1).mean()) for x in rewards],
                                [float(x[:, s.change_at:].sum(1).mean()) for x in rewards])  # fmt: skip
        after[m] = per_split["test"][1]
        before[m] = [float(np.array(r["final"]["train"])[:, : s.change_at].sum(1).mean()) for r in runs]
        steps, _ = _curves(results, "cheetah", m)
        rows.append([LABELS[m], int(steps[-1]), _fmt(per_split["train"][0]), _fmt(per_split["train"][1]),
                     _fmt(per_split["test"][0]), _fmt(per_split["test"][1])])  # fmt: skip
    ran = all(median_iqr(before[m])[0] > 0 for m in ("plastic_sac", "sac"))  # a failure means little before that
    report.claim(
        "after a mid-episode failure of the held-out joint PlasticSAC earns more than SB3 SAC (same steps, median), "
        "both having learned to run (positive return before the failure)",
        ran and median_iqr(after["plastic_sac"])[0] > median_iqr(after["sac"])[0],
        f"return after step {s.change_at}: PlasticSAC {_fmt(after['plastic_sac'])}, SAC {_fmt(after['sac'])}; "
        f"before it (training joints): PlasticSAC {_fmt(before['plastic_sac'])}, SAC {_fmt(before['sac'])}",
    )
    fig, axes = new_figure(ncols=2)
    _plot_curves(axes[0], results, "cheetah", methods)
    axes[0].set(title="CrippledHalfCheetah, training joints")
    for m in methods:
        per_step = [np.array(r["final"]["test"]).mean(0) for r in results
                    if r["job"]["task"] == "cheetah" and r["job"]["method"] == m]  # fmt: skip
        axes[1].plot(np.median(np.array(per_step), axis=0), label=LABELS[m], lw=1)
    axes[1].axvline(s.change_at, color="grey", ls=":", lw=1)
    axes[1].set(xlabel="step of the episode", ylabel="reward (median over seeds)", title="held-out joint breaks")
    axes[1].legend(fontsize=7)
    img = save_figure(fig, out, "offpolicy_cheetah.png")
    report.add(
        f"## CrippledHalfCheetah-v0, a joint breaks at step {s.change_at} ({s.seeds} seeds)\n\n"
        + markdown_table(["method", "env steps", "return (train joints)", f"after step {s.change_at} (train)",
                          "return (held-out joint)", f"after step {s.change_at} (held-out)"], rows)  # fmt: skip
        + f"\n\nMedian [IQR] over seeds of the mean over {s.eval_episodes} deterministic episodes of the final "
        f"policies.\n\n{img}"
    )


def run(scale: str, seed: int, out: Path, command: str, options: StudyOptions | None = None,
        settings: Settings | None = None) -> Path:
    options = options or StudyOptions()
    s = settings or SCALES[scale]
    s = dataclasses.replace(s, seeds=options.seeds or s.seeds)
    seeds = seed_list(seed, s.seeds)
    report = Report("offpolicy", "Off-policy plastic agents: PlasticSAC vs SAC vs RecurrentPPO", command, seed, scale,
                    {**settings_dict(s), "pendulum_steps": s.pendulum_steps}, seeds=seeds)  # fmt: skip
    progress = Progress(out, "offpolicy", scale)
    results = run_all(jobs_for(s, seed), s, progress, options.workers)
    _pendulum_section(report, results, s, out)
    _cheetah_section(report, results, s, out)
    seconds = sorted(((r["job"]["task"], r["job"]["method"]), r["seconds"]) for r in results)
    totals: dict[tuple[str, str], float] = {}
    for key, sec in seconds:
        totals[key] = totals.get(key, 0.0) + sec
    rows = [[task, LABELS[m], round(v)] for (task, m), v in totals.items()]
    table = markdown_table(["task", "method", "seconds"], rows)
    report.add(f"## Training time (wall seconds per run, summed over seeds; {options.workers} run(s) at once)\n\n"
               f"{table}\n\nEvery run's numbers: `{progress.path.name}`. {progress.provenance()}")
    return report.write(out)


STUDY = Study(
    "offpolicy",
    "PlasticSAC learns memory tasks that SAC cannot, against RecurrentPPO",
    run,
)
