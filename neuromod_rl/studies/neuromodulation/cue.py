"""``neuromod-rl reproduce cue``: Backpropamine's cue-reward association task.

Per episode (120 steps) four random 20-bit cues, one of them the target; each trial shows two cues
among blanks, then a go signal: respond if the target was shown (+1 if right, -1 if wrong, the reward
seen on the next step). The paper's claim: neuromodulated plastic networks (simple and retroactive)
learn it, non-modulated plastic and non-plastic networks do not. Metric: accuracy of the go-step
answers (chance 0.5) and the episode return. Frame and variants: :mod:`.backpropamine`.
``--scale control`` trains the same variants on one fixed task (cues and target drawn once), which needs
memory within a trial but no adaptation: every variant should learn it. ``--scale gpu`` trains three of the
variants on the batched task for a fixed wall-clock time each and projects the paper's budget
(:mod:`.cue_gpu`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neuromod_rl.studies.neuromodulation import cue_gpu
from neuromod_rl.studies.neuromodulation import frame as bp
from neuromod_rl.studies.registry import Study
from neuromod_rl.studies.scaffold import rl
from neuromod_rl.studies.scaffold.multiseed import StudyOptions

#: study-specific training settings (Backpropamine's discount 0.9, value weight 0.1, gradient clip 4)
HYPERPARAMETERS = {"n_steps": 120, "batch_size": 960, "n_epochs": 4, "learning_rate": "lin_1e-3", "gamma": 0.9,
                   "ent_coef": 0.03, "vf_coef": 0.1, "max_grad_norm": 4.0}
SCALES = {
    "smoke": bp.Scale(seeds=2, n_timesteps=480, n_envs=2, hidden=8, eval_episodes=4,
                      changes={"n_steps": 120, "batch_size": 120, "n_epochs": 1}),
    "default": bp.Scale(n_timesteps=1_500_000),
    "paper": bp.Scale(seeds=10, n_timesteps=10_000_000, hidden=100, eval_episodes=1000),
    # the single-task control: one set of cues and one target for every episode, so the task needs memory
    # within a trial but no adaptation across trials; tells "cannot learn the skill" from "cannot adapt"
    "control": bp.Scale(n_timesteps=200_000, wrappers=[{"FixedTask": {"task_seed": 0}}]),
}
#: the accuracy that counts as learned in the single-task control
CONTROL_BAR = 0.9
#: the paper's training: 200,000 updates of a batch of 30 episodes of 120 steps
PAPER_STEPS = 200_000 * 30 * 120
#: the edge of the chance band: a variant below it has not learned the task (chance is 0.5)
CHANCE_BAND = 0.6


def evaluate(cfg, model, normalizer, seed: int, episodes: int) -> dict[str, Any]:
    traces = rl.evaluate(cfg, model, normalizer, None, episodes, seed)
    r = traces["rewards"]
    answered = np.isfinite(r) & (r != 0)
    return {"accuracy": float((r[answered] > 0).mean()) if answered.any() else float("nan"),
            "return": float(np.mean(traces["returns"])), "answers_per_episode": float(answered.sum(1).mean())}


SETUP = bp.TaskSetup("cue", "Cue-reward association (Backpropamine): modulated vs non-modulated vs non-plastic",
                 "neuromod_rl/CueReward-v0", HYPERPARAMETERS, SCALES, evaluate, "accuracy", "go-step accuracy",
                 lstm=True, reward_index=-3)


COLUMNS = [("accuracy", "go-step accuracy"), ("return", "episode return"),
           ("answers_per_episode", "go steps per episode")]


def run(scale: str, seed: int, out: Path, command: str, options: StudyOptions | None = None) -> Path:
    if scale == "gpu":
        return cue_gpu.run(SETUP, seed, out, command, options or StudyOptions(), PAPER_STEPS, CHANCE_BAND)
    o = bp.train_all(SETUP, scale, seed, out, command, options or StudyOptions())
    report = o.report
    acc = {n: o.median(n, "accuracy") for n in o.names}
    if scale == "control":
        for name in o.names:
            report.claim(f"{name} learns the single-task control (go-step accuracy >= {CONTROL_BAR})",
                         acc[name] >= CONTROL_BAR, f"{acc[name]:.3f} (chance 0.5)")
        return bp.finish(o, out, COLUMNS)
    for claim in paper_claims(acc):
        report.claim(*claim)
    report.add("## Single-task control\n\nWhether a variant that stays near chance lacks the skill or the adaptation: "
               "`neuromod-rl reproduce cue --scale control --out docs/results/cue-control` trains the same variants "
               "on one fixed set of cues and target (no adaptation needed) and writes its own report.")
    steps = o.described[o.names[0]]["config"]["n_timesteps"]
    report.add(f"## Budget\n\nThe paper trains each network for 200,000 updates of 30 episodes "
               f"({PAPER_STEPS / 1e6:.0f}M steps); this scale gives each variant {steps / 1e6:g}M steps, "
               f"{steps / PAPER_STEPS:.2%} of that. A variant at chance here has not been shown unable to learn "
               "the task, only unable to learn it at this budget.")
    report.claim(f"the non-modulated plastic and non-plastic networks stay near chance (accuracy < {CHANCE_BAND})",
                 max(acc[bp.PLASTIC], acc[bp.RNN]) < CHANCE_BAND,
                 f"plastic {acc[bp.PLASTIC]:.3f}, non-plastic {acc[bp.RNN]:.3f} (chance 0.5)")
    return bp.finish(o, out, COLUMNS)


def paper_claims(acc: dict[str, float]) -> list[tuple[str, bool, str]]:
    """The paper's ordering from the variants' median go-step accuracies: each modulated network has
    learned the task (out of the chance band) and beats both the non-modulated and the non-plastic one.
    Without the band, 0.508 against 0.506, two networks at chance, would read as a win."""
    others = max(acc[bp.PLASTIC], acc[bp.RNN])
    return [(f"{mod} learns the task (go-step accuracy >= {CHANCE_BAND}, out of the chance band) and better than the "
             "non-modulated plastic and non-plastic networks (medians over seeds)",
             acc[mod] >= CHANCE_BAND and acc[mod] > others,
             f"{acc[mod]:.3f} vs plastic {acc[bp.PLASTIC]:.3f}, non-plastic {acc[bp.RNN]:.3f}")
            for mod in (bp.RETRO, bp.SIMPLE)]  # fmt: skip


STUDY = Study(
    "cue",
    "neuromodulated plasticity learns the cue-reward task where plain and frozen plasticity fail (Miconi et al. 2019)",
    run,
    extra_scales=("control", "gpu"), takes_budget=True, takes_core=True,
)
