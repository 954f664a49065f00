"""``neuromod-rl reproduce maze``: Backpropamine's maze with an invisible goal (9x9 by default, the
paper's 13x13 under ``--scale paper``).

Each episode hides the goal in a random cell; reaching it gives +10 and teleports the agent to a random
cell, so an agent that remembers where the goal is collects more in its 200 steps. The paper's
ordering: retroactive >= simple modulation > non-modulated plastic > non-plastic. Metric: episode
return on held-out goal cells, with a random walk (floor) and an oracle that knows the goal
(ceiling). Frame and variants: :mod:`.backpropamine`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from neuromod_rl.envs.baselines import maze_return
from neuromod_rl.experiment.markdown import markdown_table
from neuromod_rl.studies.neuromodulation import frame as bp
from neuromod_rl.studies.registry import Study
from neuromod_rl.studies.scaffold import rl
from neuromod_rl.studies.scaffold.multiseed import StudyOptions

HYPERPARAMETERS = {"n_steps": 200, "batch_size": 1600, "n_epochs": 4, "learning_rate": "lin_1e-3", "gamma": 0.9,
                   "ent_coef": 0.03, "vf_coef": 0.1, "max_grad_norm": 4.0}
SCALES = {
    "smoke": bp.Scale(seeds=2, n_timesteps=800, n_envs=2, hidden=8, eval_episodes=4,
                      changes={"n_steps": 200, "batch_size": 200, "n_epochs": 1}),
    "default": bp.Scale(n_timesteps=3_000_000),
    "paper": bp.Scale(seeds=10, n_timesteps=10_000_000, hidden=100, eval_episodes=1000, env="neuromod_rl/Maze-v0"),
}


def evaluate(cfg, model, normalizer, seed: int, episodes: int) -> dict[str, Any]:
    train_goals, test_goals = rl.task_split(cfg)
    test = rl.evaluate(cfg, model, normalizer, test_goals, episodes, seed)
    train = rl.evaluate(cfg, model, normalizer, train_goals, episodes, seed)
    return {"test_return": float(np.mean(test["returns"])), "train_return": float(np.mean(train["returns"]))}


SETUP = bp.TaskSetup("maze",
                     "Maze with an invisible goal (Backpropamine): retroactive >= simple > plastic > non-plastic",
                     "neuromod_rl/Maze9-v0", HYPERPARAMETERS, SCALES, evaluate, "test_return", "held-out goals: return",
                     reward_index=-5)


def run(scale: str, seed: int, out: Path, command: str, options: StudyOptions | None = None) -> Path:
    o = bp.train_all(SETUP, scale, seed, out, command, options or StudyOptions())
    report = o.report
    m = {n: o.median(n, "test_return") for n in o.names}
    report.claim("retroactive >= simple modulation (held-out goals, median return)", m[bp.RETRO] >= m[bp.SIMPLE],
                 f"{m[bp.RETRO]:.2f} vs {m[bp.SIMPLE]:.2f}")
    report.claim("simple modulation > non-modulated plastic", m[bp.SIMPLE] > m[bp.PLASTIC],
                 f"{m[bp.SIMPLE]:.2f} vs {m[bp.PLASTIC]:.2f}")
    report.claim("non-modulated plastic > non-plastic", m[bp.PLASTIC] > m[bp.RNN],
                 f"{m[bp.PLASTIC]:.2f} vs {m[bp.RNN]:.2f}")
    size = int(gymnasium.spec(o.described[o.names[0]]["config"]["env"]).kwargs.get("size", 13))
    n_ref = 50 if scale == "smoke" else 2000
    refs = [["random walk (floor)", maze_return("random", size, n_episodes=n_ref, seed=seed)],
            ["oracle that knows the goal (ceiling)", maze_return("oracle", size, n_episodes=n_ref, seed=seed)]]
    report.add(f"## References on the {size}x{size} maze ({n_ref} episodes)\n\n"
               + markdown_table(["policy", "mean episode return"], refs))
    return bp.finish(o, out, [("test_return", "held-out goals: return"), ("train_return", "training goals: return")])


STUDY = Study(
    "maze",
    "neuromodulated plasticity finds an invisible goal faster than plain and frozen plasticity (Miconi et al. 2019)",
    run,
    takes_budget=True, takes_core=True,
)
