"""Evaluation during training: every ``eval.every_steps`` env steps, the agent plays
``eval.periodic_episodes`` episodes on the held-out tasks and the summary is logged as ``eval/*``.

It is the final evaluation of ``neuromod-rl eval`` (:mod:`neuromod_rl.experiment.evaluate`) at a smaller
size: the same test tasks of the env's ``task_split``, the same episode seeds and the same
``eval.deterministic``, with the observation statistics the training envs hold at that moment. The
numbers go through the run's SB3 logger, so they reach every output it has: the progress CSV and
TensorBoard in ``RUN_DIR/tb`` and, with ``--wandb``, W&B.

Evaluating does not change the training: the random number generators it draws from are restored
afterwards and it plays on envs of its own, so a run trains the same agent with or without it (and a
resumed run evaluates at the same steps as an uninterrupted one).
"""

from __future__ import annotations

import contextlib
import numbers
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from neuromod_rl.experiment import normalize
from neuromod_rl.experiment.config import ExperimentConfig
from neuromod_rl.experiment.evaluate import EVAL_SEED_OFFSET, rollout, summarize, task_list


class PeriodicEval(BaseCallback):
    """An SB3 callback that evaluates on the held-out tasks each time training passes a multiple of
    ``cfg.eval.every_steps`` env steps (at most once per callback call) and logs ``eval/<summary key>``.

    Args:
        cfg: the run's config (``eval.every_steps``, ``eval.periodic_episodes``, the tasks and seeds).
    """

    def __init__(self, cfg: ExperimentConfig):
        super().__init__()
        if cfg.eval.every_steps < 1:
            raise ValueError(f"PeriodicEval needs eval.every_steps >= 1, got {cfg.eval.every_steps}")
        self.cfg = cfg
        self.every = cfg.eval.every_steps
        self.tasks: list[Any] | None = None
        self._done = 0  # multiples of `every` already evaluated

    def _on_training_start(self) -> None:
        # a resumed run starts past some multiples: those were evaluated before it stopped
        self._done = self.num_timesteps // self.every
        self.tasks = task_list(self.cfg, "test")

    def _on_step(self) -> bool:
        if self.num_timesteps // self.every > self._done:
            self._done = self.num_timesteps // self.every
            self.evaluate()
        return True

    def _normalizer(self) -> normalize.ObsNormalizer | None:
        vn = self.model.get_vec_normalize_env()
        if vn is None or not vn.norm_obs:
            return None
        return normalize.ObsNormalizer(vn.obs_rms.mean.copy(), vn.obs_rms.var.copy(), float(vn.clip_obs),
                                       float(vn.epsilon))

    def evaluate(self) -> dict[str, Any]:
        """Run one evaluation now, log it and return its summary (what ``evaluate.summarize`` computes)."""
        cfg = self.cfg
        with _rng_kept():
            traces = rollout(cfg, self.model, cfg.eval.periodic_episodes, self.tasks, EVAL_SEED_OFFSET + cfg.seed,
                             cfg.eval.deterministic, progress=False, normalizer=self._normalizer())
        summary = summarize(traces)
        for key, value in summary.items():
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                self.logger.record(f"eval/{key}", value)
        # the step as a column of the progress CSV (TensorBoard and W&B have it as the x axis), as SB3's EvalCallback
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(self.num_timesteps)
        return summary


@contextlib.contextmanager
def _rng_kept() -> Iterator[None]:
    """Restore the global torch (CPU and CUDA), NumPy and Python random states on exit: what an
    evaluation draws (sampled actions) must not shift the training's random stream."""
    numpy_state, python_state = np.random.get_state(), random.getstate()  # noqa: NPY002  (SB3 draws from it)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            np.random.set_state(numpy_state)  # noqa: NPY002
            random.setstate(python_state)
