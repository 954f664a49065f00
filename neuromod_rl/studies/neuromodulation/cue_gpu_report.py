"""The report of ``neuromod-rl reproduce cue --scale gpu`` (:mod:`.cue_gpu`): device, steps reached and
throughput per variant, the paper's ordering, the paper's budget projected at the measured throughput,
and the learning curves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from neuromod_rl.experiment.markdown import markdown_table
from neuromod_rl.experiment.plots.figures import new_figure
from neuromod_rl.studies.neuromodulation import frame as bp
from neuromod_rl.studies.scaffold.report import WALL_TIMES, save_figure

if TYPE_CHECKING:  # the scale's settings (the module that imports this one)
    from neuromod_rl.studies.neuromodulation.cue_gpu import GpuScale

#: the paper's seeds per network, for the projection of its budget
PAPER_SEEDS = 3
#: learning-curve points per variant in the report's table (the progress file keeps every one)
TABLE_POINTS = 8


@dataclass
class GpuOutcome(bp.Trained):
    """The trained and evaluated variants of the wall-clock scale, ready for the report: the fields of
    :class:`.frame.Trained` (``results`` from :func:`.cue_gpu.job`; ``described`` at the scale's nominal
    number of envs), then ``scale``, the scale's settings."""

    scale: GpuScale

    def runs(self):
        """``(variant, seed, result)`` in report order."""
        return [(n, s, self.results[(n, s)]) for n in self.names for s in self.seeds]


def projection(o: GpuOutcome, paper_steps: int) -> tuple[dict[str, float], float]:
    """Hours the paper's budget (``paper_steps`` per network, :data:`PAPER_SEEDS` seeds) takes per variant at
    its median throughput after the first rollout, and for the variants one after another."""
    hours = {n: PAPER_SEEDS * paper_steps / o.median(n, "steady_steps_per_s") / 3600 for n in o.names}
    return hours, float(sum(hours.values()))


def claims(o: GpuOutcome, chance_band: float) -> None:
    acc = {n: o.median(n, "accuracy") for n in o.names}
    mod, plastic, frozen = acc[bp.SIMPLE], acc[bp.PLASTIC], acc[bp.RNN]
    o.report.claim(f"{bp.SIMPLE} learns the task within the budget (held-out go-step accuracy >= {chance_band}, "
                   "out of the chance band)", mod >= chance_band, f"{mod:.3f} (chance 0.5)")
    o.report.claim("the paper's ordering begins to show: simple modulation > non-modulated plastic > non-plastic "
                   "(held-out go-step accuracy)", mod > plastic > frozen,
                   f"{mod:.3f} > {plastic:.3f} > {frozen:.3f}" if mod > plastic > frozen
                   else f"{mod:.3f}, {plastic:.3f}, {frozen:.3f}")  # fmt: skip


def throughput_section(o: GpuOutcome, paper_steps: int) -> str:
    devices = sorted({r["device"] for _, _, r in o.runs()})
    envs = sorted({int(r["n_envs"]) for _, _, r in o.runs()})
    rows = [[n, s, o.sizes[n][0], o.sizes[n][1], r["steps"], f"{r['seconds']:.1f}", f"{r['steps_per_s']:.0f}",
             f"{r['steady_steps_per_s']:.0f}", r["curve"][-1]["train_accuracy"], r["accuracy"], r["return"]]
            for n, s, r in o.runs()]  # fmt: skip
    table = markdown_table(["variant", "seed", "hidden", "parameters", "steps reached", "training s",
                            "env-steps/s", "env-steps/s after the first rollout", "last rollout's go-step accuracy",
                            "held-out go-step accuracy", "held-out episode return"], rows)  # fmt: skip
    hours, total = projection(o, paper_steps)
    per = "; ".join(f"{n} {h:.1f} h" for n, h in hours.items())
    return (f"## Device, steps reached and throughput\n\nDevice: {', '.join(devices)}; "
            f"{', '.join(map(str, envs))} batched envs (`BatchedVecEnv(make_batched(\"neuromod_rl/CueReward-v0\", "
            f"n_envs, device))`, the device-resident rollout path); {o.scale.time_budget_s:g} s of training per "
            "variant, stopped at the last rollout and update that fit in it. The first rollout pays for the warm-up "
            "(on a GPU the CUDA context, kernel compilation and the allocator), so the throughput after it is the "
            f"one that scales. Held-out numbers: the cue study's evaluation ({o.scale.eval_episodes} episodes of "
            "the Gymnasium task, deterministic actions).\n\n" + table + "\n\n"
            f"## The paper's budget\n\nAt the measured throughput (after the first rollout, median over seeds), the "
            f"paper's budget of {paper_steps:.2g} steps per network x {PAPER_SEEDS} seeds would take: {per}; "
            f"{total:.1f} h for the three networks one after another on this device.")


def curves_section(o: GpuOutcome, out: Path) -> str:
    fig, (by_time, by_steps) = new_figure(ncols=2, width=5.5)
    for n, s, r in o.runs():
        c = r["curve"]
        label = n if len(o.seeds) == 1 else f"{n}, seed {s}"
        acc = [p["train_accuracy"] for p in c]
        by_time.plot([p["seconds"] for p in c], acc, label=label)
        by_steps.plot([p["steps"] for p in c], acc, label=label)
    for ax, x in ((by_time, "wall seconds"), (by_steps, "env steps")):
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set(xlabel=x, ylabel="training go-step accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    rows = []
    for n, s, r in o.runs():
        c = r["curve"]
        keep = sorted({int(i) for i in np.linspace(0, len(c) - 1, min(TABLE_POINTS, len(c)))})
        rows += [[n, s, c[i]["steps"], f"{c[i]['seconds']:.1f}", c[i]["train_accuracy"], c[i]["episode_return"]]
                 for i in keep]  # fmt: skip
    return ("## Learning curves\n\nGo-step accuracy of the actions sampled during each rollout (chance 0.5) and "
            "the mean return of the last 100 finished training episodes, one point per rollout (every point is in "
            f"`{o.progress.path.name}`).\n\n" + save_figure(fig, out, "cue_gpu_learning.png") + "\n\n"
            + markdown_table(["variant", "seed", "env steps", "wall s", "go-step accuracy", "episode return"], rows))


def settings_section(o: GpuOutcome) -> str:
    sc = o.scale
    return ("## PPO settings for many envs\n\n"
            f"`n_steps` 120 (one whole episode per env per rollout, so no episode is cut between rollouts); "
            f"{sc.minibatches} minibatches per epoch whatever the number of envs, so a minibatch holds n_envs / "
            f"{sc.minibatches} whole episodes ({sc.n_envs_cuda // sc.minibatches} on a GPU with {sc.n_envs_cuda} envs, "
            f"{sc.n_envs_cpu // sc.minibatches} on the CPU with {sc.n_envs_cpu}; the cue study's minibatch is 8): "
            "wide minibatches fill the device, and the optimizer steps per rollout stay "
            f"{sc.minibatches * sc.n_epochs} (`n_epochs` {sc.n_epochs}) instead of growing with the envs, so the "
            "update does not swamp the rollout; a constant learning rate "
            f"{sc.learning_rate:g} (the cue study's starting rate) because a linear decay needs the run's total steps, "
            "which a wall-clock budget does not know. The rest is the cue study's (discount 0.9, value weight 0.1, "
            "entropy 0.03, gradient clip 4). More envs mean fewer updates per env step: at equal steps the GPU "
            "run has made fewer updates than the CPU one.")


def write(o: GpuOutcome, out: Path, paper_steps: int, chance_band: float) -> Path:
    """Add the claims and sections to ``o.report`` and write it; returns its path."""
    claims(o, chance_band)
    o.report.add(throughput_section(o, paper_steps))
    o.report.add(curves_section(o, out))
    o.report.add(settings_section(o))
    o.report.add("## Agents\n\n" + "\n".join(
        f"- **{n}**: `policy_kwargs` {d['config']['policy_kwargs']}"
        + (" (plasticity frozen)" if d["frozen_plasticity"] else "") for n, d in o.described.items()))
    o.report.add(f"## Compute\n\nSum of the runs' wall times (training, evaluation, saving): "
                 f"{o.progress.total_seconds():.0f} s, one run at a time. {WALL_TIMES} Every run's numbers: "
                 f"`{o.progress.path.name}`. {o.progress.provenance()}")
    return o.report.write(out)
