"""A limb fails mid-episode: the crippled-body studies (HalfCheetah joints, Ant legs).

Every agent trains on episodes where one of the *training* limbs breaks at ``change_at`` (the body
is intact before), and is evaluated on (a) the held-out limb (``split="test"``, never broken in
training), (b) the training limbs, (c) the intact body. Metrics (defined in
:mod:`neuromod_rl.experiment.adaptation`): reward per step in the window before the failure, right
after it and at the end of the episode; recovery = end-of-episode reward per step as a fraction of
the pre-failure one; regained = share of the drop won back; and the intact body's reward per step,
which shows whether an agent has learned to run at all. A body that can fall (the Ant) ends its
episode early: the reward per step divides the return by the full episode length, so a fall counts
as zero reward for the steps it cuts off (as a return over rl-zoo3's 1000-step episodes does), and the
mean episode length is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuromod_rl.experiment import adaptation
from neuromod_rl.studies.adaptation import locomotion as loco
from neuromod_rl.studies.scaffold import multiseed, rl

VERSION = "crippled-3"  # bump when the evaluation below changes (finished runs are then re-evaluated)
SPLITS = ("test", "train", "intact")
WINDOW_KEYS = ("pre", "after", "end", "recovery", "regained")


@dataclass(frozen=True)
class CrippledStudy:
    """What differs between the crippled-body studies."""

    name: str
    title: str
    files: dict[str, str]  # agent label -> YAML in configs/
    body: str  # e.g. "HalfCheetah"
    zoo_return: float  # rl-zoo3's tuned PPO benchmark return on the body (1000-step episodes)
    scales: dict[str, loco.Scale]
    tuning: str  # how the baselines were tuned (Markdown)


def evaluate(cfg, model, normalizer, seed: int, episodes: int) -> dict[str, Any]:
    """Held-out limb, training limbs, intact body: window metrics and mean per-step curves."""
    train_tasks, test_tasks = rl.task_split(cfg)
    episode_limit = rl.episode_limit(cfg)
    out: dict[str, Any] = {}
    for split, tasks in zip(SPLITS, (test_tasks, train_tasks, [{"limb": None}])):
        traces = rl.evaluate(cfg, model, normalizer, tasks, episodes, seed)
        rewards = traces["rewards"]
        out[f"{split}_per_step"] = float(np.nansum(rewards) / (len(rewards) * episode_limit))
        out[f"{split}_length"] = float(np.isfinite(rewards).sum(axis=1).mean())
        out[f"{split}_curve"] = rl.mean_curve(traces)
        rec = adaptation.recovery(traces) if split != "intact" else None
        for k in WINDOW_KEYS:
            out[f"{split}_{k}"] = float("nan") if rec is None else rec[k]
        if split != "intact":  # episodes too short to have the windows (a body that fell) leave none
            out[f"{split}_episodes_with_window"] = 0 if rec is None else rec["episodes"]
        if rec is not None:
            out["window"] = rec["window"]
    out["episode_limit"] = episode_limit
    return out


def recovery_claim(report, claim: str, holds: bool, evidence: str, not_running: list[str], target: float) -> None:
    """A recovery comparison is judged only between agents that run (intact-body bar met): a body that
    falls within a few steps has windows from a handful of episodes and a pre-failure reward near zero,
    whose ratio can be anything (a negative baseline recovery makes "2x" trivially beaten)."""
    if not_running:
        report.claim(claim, False, f"not judged: {', '.join(not_running)} below the intact-body bar ({target:.2f} "
                                   f"per step), so the comparison is not between agents that run; {evidence}")
    else:
        report.claim(claim, holds, evidence)


def run_study(study: CrippledStudy, scale: str, seed: int, out: Path, command: str,
              options: multiseed.StudyOptions) -> Path:
    o = loco.train_all(study.name, study.title, study.files, study.scales, scale, seed, out, command, options,
                       evaluate, VERSION)
    names, report = o.names, o.report
    target = study.zoo_return / 1000 / 2
    intact = {n: o.median(n, "intact_per_step") for n in names}
    report.claim(
        f"every agent runs: intact-body reward per step >= {target:.2f} (half of rl-zoo3's tuned PPO on "
        f"{study.body}, {study.zoo_return:,.0f} per 1000 steps), median over seeds",
        all(v >= target for v in intact.values()),
        "; ".join(f"{n} {v:.2f}" for n, v in intact.items()),
    )
    p, f, lstm = (o.median(n, "test_recovery") for n in (loco.PLASTIC, loco.PPO, loco.LSTM))
    # recovery is undefined (NaN) for a seed whose pre-failure reward is not positive: say so with the numbers
    pre = "; pre-failure reward/step " + ", ".join(f"{n.split(' ')[0]} {o.median(n, 'test_pre'):.3f}" for n in names)
    recovery_claim(report, "held-out limb: the plastic agent's recovery >= 2x MLP PPO's (medians over seeds)",
                   bool(p >= 2 * f), f"recovery {p:.3f} vs MLP PPO {f:.3f} (2x = {2 * f:.3f})" + pre,
                   [n for n in (loco.PLASTIC, loco.PPO) if intact[n] < target], target)
    recovery_claim(report, "held-out limb: the plastic agent's recovery >= RecurrentPPO's (medians over seeds)",
                   bool(p >= lstm), f"recovery {p:.3f} vs RecurrentPPO {lstm:.3f}" + pre,
                   [n for n in (loco.PLASTIC, loco.LSTM) if intact[n] < target], target)
    cols = [("intact_per_step", "intact: reward/step"), ("intact_length", "intact: episode length")] + [
        (f"test_{k}", f"held-out: {k}") for k in WINDOW_KEYS] + [("train_recovery", "train limbs: recovery"),
                                                                ("train_regained", "train limbs: regained")]
    window = next((r["window"] for r in o.results.values() if "window" in r), "?")
    report.add(
        f"## Results (median [25%, 75%] over {len(o.seeds)} seeds)\n\n"
        f"Reward per step (the return over the full {o.first('episode_limit', '?')}-step episode, so an early fall "
        f"counts as zero for the rest); windows of {window} steps before the failure (`pre`), right "
        "after it "
        "(`after`) and at the end of the episode (`end`); `recovery` = end / pre; `regained` = (end - after) / "
        "(pre - after), the share of the drop won back within the episode (about 0 for an agent that cannot "
        f"adapt). {o.scale.eval_episodes} evaluation episodes per split and seed.\n\n"
        + multiseed.summary_table(o.results, names, cols)
    )
    change_at = o.described[names[0]]["config"]["env_kwargs"].get("change_at")
    imgs = [
        loco.plot_within_episode(o.results, names, "test_curve", change_at, "reward per step",
                                 "held-out limb fails at the dashed line", out, f"{study.name}_heldout.png"),
        loco.plot_within_episode(o.results, names, "intact_curve", None, "reward per step", "intact body", out,
                                 f"{study.name}_intact.png"),
        loco.plot_learning(o.results, names, out, f"{study.name}_learning.png", "training (train limbs)"),
    ]
    report.add("## Plots (median over seeds, shaded 25-75%)\n\n" + "\n\n".join(imgs))
    report.add("## Every run\n\n" + multiseed.per_seed_table(
        o.results, names, [("intact_per_step", "intact/step"), ("intact_length", "intact length"),
                           ("test_episodes_with_window", "held-out episodes reaching the windows"),
                           ("test_pre", "held-out pre"),
                           ("test_end", "held-out end"), ("test_recovery", "held-out recovery")], o.progress))
    return loco.finish(o, out, options, study.tuning)
