"""Adaptation within an episode on a MuJoCo task, logged to Weights & Biases by neuromod-rl's run workflow.

The task is ``neuromod_rl/CrippledHalfCheetah-v0``: a HalfCheetah whose joint fails at step 100 of a
200-step episode (one of five joints in training; the held-out joint, the front foot, at test). The shipped
config ``crippled_halfcheetah_neuromod`` trains PlasticPPO on it; this script runs that config through the
library's own workflow (``neuromod_rl.experiment.train.train``, what ``neuromod-rl train --wandb`` runs):

1. train for ``--steps`` env steps in a new run directory under ``--runs-dir``, everything SB3 logs
   (``rollout/*``, ``train/*``, ``plastic/*``: fast-weight size, clipping, neuromodulation) going to
   TensorBoard, CSV and W&B; the trained policy becomes a W&B model artifact (safetensors);
2. evaluate on the held-out joint and measure recovery: reward per step before the failure (``pre``), right
   after it (``after``) and at the end of the episode (``end``); ``regained`` is the share of the drop won
   back within the episode (``neuromod_rl.experiment.adaptation``);
3. log those numbers to the same W&B run and close it.

W&B mode: ``WANDB_MODE`` is respected when set (``offline``, ``online``, ``disabled``); otherwise the run is
online with credentials (``wandb login``) and offline without, in ``RUN_DIR/wandb/`` (upload later with
``wandb sync``). A W&B failure never stops training. ``--set KEY=VALUE`` changes the config as
``neuromod-rl train --set`` does (``--set n_envs=2``, ``--set hyperparameters.n_epochs=4``); another shipped
config works too, e.g. ``--config halfcheetah_vel_neuromod`` (the target velocity changes mid-episode).

The study ``neuromod-rl reproduce crippled-cheetah`` trains 400k steps per seed; a short run shows the
workflow, not the result (``docs/results/crippled-cheetah.md``).

Usage::

    python examples/adaptation_wandb.py --steps 50000 --wandb-project my-project
    WANDB_MODE=offline python examples/adaptation_wandb.py --steps 1600 --set n_envs=2 \\
        --set hyperparameters.batch_size=400
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from neuromod_rl.experiment.adaptation import recovery
from neuromod_rl.experiment.config import load_config
from neuromod_rl.experiment.evaluate import evaluate, load_traces
from neuromod_rl.experiment.export import export_safetensors
from neuromod_rl.experiment.runs import read_json
from neuromod_rl.experiment.train import TrainOptions, train
from neuromod_rl.experiment.wandb_logging import WandbSettings


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000, help="training env steps (default 50000)")
    parser.add_argument("--config", default="crippled_halfcheetah_neuromod",
                        help="a shipped config name or a YAML file (default crippled_halfcheetah_neuromod)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change the config, as neuromod-rl train --set")
    parser.add_argument("--eval-episodes", type=int, default=8, help="evaluation episodes (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs-dir", default="runs/examples", help="where the run directory goes")
    parser.add_argument("--wandb-project", default="neuromod-rl-examples")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, [f"n_timesteps={args.steps}", f"seed={args.seed}",
                                    f"eval.episodes={args.eval_episodes}", *args.overrides])
    wandb = WandbSettings(enabled=True, project=args.wandb_project, tags=["example"])
    print(f"training {cfg.algo} on {cfg.env} ({cfg.name}) for {cfg.n_timesteps} steps (n_envs={cfg.n_envs})")
    result = train(cfg, TrainOptions(runs_dir=Path(args.runs_dir), wandb=wandb, progress=False))
    run = result.run
    if not result.finished:  # Ctrl-C: a checkpoint was saved; `neuromod-rl train --resume RUN_DIR` continues
        result.wandb.finish()
        raise SystemExit(f"interrupted; resume with: neuromod-rl train --resume {run.path}")
    try:
        stats = read_json(run.metrics, {}).get("train", {})
        print(f"run directory {run.path}: {result.num_timesteps} steps, {stats.get('episodes', 0)} training "
              f"episodes, mean return of the last 100: {stats.get('mean_return_last_100', float('nan')):.1f}")
        result.wandb.log_model(lambda: export_safetensors(run.path),
                               {"format": "safetensors", "num_timesteps": result.num_timesteps})

        summary = evaluate(run.path, "test", progress=False)
        print(f"held-out task ({summary['episodes']} episodes): mean return {summary['mean_return']:.1f}")
        logged = {f"eval_test/{k}": v for k, v in summary.items()
                  if isinstance(v, int | float) and not isinstance(v, bool)}
        recovered = recovery(load_traces(run, "test"))
        if recovered is not None:
            regained = recovered["regained"]  # NaN where the change cost no reward: nothing to regain
            share = f"regained {regained:.2f} of the drop" if math.isfinite(regained) else "no drop to regain"
            print(f"reward per step: {recovered['pre']:.2f} before the change, {recovered['after']:.2f} right after, "
                  f"{recovered['end']:.2f} at the end of the episode ({share})")
            logged |= {f"adaptation/{k}": recovered[k] for k in ("pre", "after", "end", "recovery", "regained")}
        result.wandb.log(logged, step=result.num_timesteps)
        result.wandb.summary(logged)
    finally:
        result.wandb.finish()
    record = read_json(run.wandb_id, None)
    if record is None:
        print("W&B: no run was started (see the warning above); the local files are complete")
    else:
        offline = sorted((run.path / "wandb").glob("offline-run-*"))
        where = f"{offline[-1]} (upload with `wandb sync {offline[-1]}`)" if offline else f"project {record['project']}"
        print(f"W&B run {record['id']} ({record['mode']}): {len(logged)} evaluation numbers and the training "
              f"curves in {where}")


if __name__ == "__main__":
    main()
