"""``neuromod-rl reproduce cheetah-vel``: HalfCheetahVel with the target velocity switched mid-episode.

Each episode starts with a target velocity ``v_goal ~ U[0, 3]`` (from the env's task split) and
switches to a new one at step 100 of 200. Metric: the tracking error ``|v_x - v_goal|`` (read from
the step's ``reward_forward``) averaged over a window before the switch (``pre``), right after it
(``after``) and at the end of the episode (``end``); lower is better. An agent that stands still
scores ``E|v_goal| = 1.5``. Plastic agent vs feed-forward PPO vs RecurrentPPO (LSTM), equal budgets,
settings from ``configs/halfcheetah_vel_*.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neuromod_rl.experiment import adaptation
from neuromod_rl.studies.adaptation import locomotion as loco
from neuromod_rl.studies.registry import Study
from neuromod_rl.studies.scaffold import multiseed, rl
from neuromod_rl.studies.scaffold.multiseed import StudyOptions

NAME = "cheetah-vel"
VERSION = "cheetah-vel-1"
STANDING_ERROR = 1.5  # E|v_goal| for v_goal ~ U[0, 3]: the error of an agent that does not move
FILES = {loco.PLASTIC: "halfcheetah_vel_neuromod.yaml", loco.PPO: "halfcheetah_vel_ppo.yaml",
         loco.LSTM: "halfcheetah_vel_lstm.yaml"}
TUNING = """\
All three agents start from rl-zoo3's tuned PPO settings for HalfCheetah (normalisation of
observations and rewards, gamma 0.98, GAE lambda 0.92, clip range 0.1, `log_std_init=-2`,
`ortho_init=False`, ReLU 256x256 heads), adapted to 200-step episodes and this budget as in the
crippled-cheetah study; the YAML files hold the exact values. Every agent sees the previous action and
reward (the reward carries the tracking error, the only clue to the target)."""


def evaluate(cfg, model, normalizer, seed: int, episodes: int) -> dict[str, Any]:
    """Test-split target velocities (switching to a fresh one at ``change_at``): tracking-error windows."""
    _, test_tasks = rl.task_split(cfg, n_train=cfg.eval.n_train_tasks, n_test=cfg.eval.n_test_tasks)
    traces = rl.evaluate(cfg, model, normalizer, test_tasks, episodes, seed, info_keys=("reward_forward",))
    error = dict(traces, rewards=-traces["info_reward_forward"])  # |v - v_goal| per step
    w = adaptation.windows(error)
    out: dict[str, Any] = {f"error_{k}": float(np.mean(v)) if len(v) else float("nan") for k, v in w.items()}
    out.update(reward_per_step=float(np.nanmean(traces["rewards"])), error_curve=rl.mean_curve(error),
               window=adaptation.default_window(error), episodes_with_window=len(w["pre"]))
    out["error_drop"] = out["error_after"] - out["error_end"]  # how much tracking improves after the switch
    return out


def run(scale: str, seed: int, out: Path, command: str, options: StudyOptions | None = None) -> Path:
    options = options or StudyOptions()
    o = loco.train_all(NAME, "HalfCheetahVel: the target velocity switches mid-episode", FILES, loco.SCALES, scale,
                       seed, out, command, options, evaluate, VERSION)
    names, report = o.names, o.report
    pre = {n: o.median(n, "error_pre") for n in names}
    report.claim(
        f"every agent tracks its target: error before the switch < {STANDING_ERROR / 2} (half of standing "
        f"still's {STANDING_ERROR}), median over seeds",
        all(v < STANDING_ERROR / 2 for v in pre.values()),
        "; ".join(f"{n} {v:.3f}" for n, v in pre.items()),
    )
    after = {n: o.median(n, "error_after") for n in names}
    report.claim(
        "after the switch the plastic agent tracks the new target better (lower error in the window after "
        "it) than MLP PPO and RecurrentPPO, medians over seeds",
        after[loco.PLASTIC] < min(after[loco.PPO], after[loco.LSTM]),
        "; ".join(f"{n} {v:.3f}" for n, v in after.items()),
    )
    cols = [("error_pre", "error: pre"), ("error_after", "error: after"), ("error_end", "error: end"),
            ("error_drop", "after - end"), ("reward_per_step", "reward/step")]
    report.add(
        f"## Results (median [25%, 75%] over {len(o.seeds)} seeds)\n\n"
        f"Tracking error |v - v_goal| (m/s, lower is better) in windows of {o.first('window', '?')} steps before "
        "the switch, right after it and at the end; `after - end`: how much the error falls after the switch "
        f"(an agent that adapts within the episode has a positive drop). {o.scale.eval_episodes} evaluation "
        "episodes per seed on the test split's target velocities.\n\n" + multiseed.summary_table(o.results, names, cols)
    )
    change_at = o.described[names[0]]["config"]["env_kwargs"].get("change_at")
    imgs = [
        loco.plot_within_episode(o.results, names, "error_curve", change_at, "|v - v_goal| (lower is better)",
                                 "target velocity switches at the dashed line", out, f"{NAME}_error.png"),
        loco.plot_learning(o.results, names, out, f"{NAME}_learning.png", "training"),
    ]
    report.add("## Plots (median over seeds, shaded 25-75%)\n\n" + "\n\n".join(imgs))
    report.add("## Every run\n\n" + multiseed.per_seed_table(
        o.results, names, [("error_pre", "error pre"), ("error_after", "error after"), ("error_end", "error end")],
        o.progress))
    return loco.finish(o, out, options, TUNING)


STUDY = Study(
    "cheetah-vel",
    "a plastic agent tracks a target velocity that switches mid-episode",
    run,
    takes_budget=True,
)
