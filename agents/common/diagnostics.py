"""Per-rollout diagnostics of the plastic core, recorded through SB3's logger.

* ``plastic/mean_abs_F`` -- mean ``|F|`` over every fast-weight entry of every stored state (the
  states at sequence starts and the state at the end of the rollout);
* ``plastic/clip_fraction`` -- the fraction of those entries at the rule's clip bound
  (``|F| >= clip``; 0 for rules without a clip). Near 1 means the trace is saturated and the rule
  has stopped learning within the episode (lower ``eta`` / modulation gain);
* ``plastic/modulation_mean``, ``plastic/modulation_std`` -- statistics of ``M(t)`` over every step
  and env of the rollout (omitted for unmodulated rules).

They go to every configured output (stdout, TensorBoard, hence W&B through
``wandb.integration.sb3.WandbCallback`` with ``sync_tensorboard=True``).
"""

from __future__ import annotations

import torch as th
from stable_baselines3.common.logger import Logger

from neuromod_rl.plasticity import PlasticState

#: relative tolerance for "at the bound" (a hard clip lands exactly on it, float32 rounding aside)
_AT_BOUND = 1.0 - 1e-6


def trace_statistics(states: list[PlasticState], clip: float | None) -> dict[str, float]:
    """``mean_abs_F`` and ``clip_fraction`` over the fast-weight fields (``F``, ``F0``, ``pi.F``, ...)."""
    total, abs_sum, at_bound = 0, 0.0, 0
    for state in states:
        for name, value in state.items():
            if not name.split(".")[-1].startswith("F"):
                continue
            a = value.detach().abs()
            total += a.numel()
            abs_sum += float(a.sum())
            if clip is not None:
                at_bound += int((a >= clip * _AT_BOUND).sum())
    if total == 0:
        return {}
    return {"mean_abs_F": abs_sum / total, "clip_fraction": at_bound / total}


def modulation_statistics(modulations: list[th.Tensor]) -> dict[str, float]:
    """Mean and standard deviation of ``M(t)`` over the rollout (empty for unmodulated cores)."""
    if not modulations:
        return {}
    m = th.cat([x.detach().reshape(-1) for x in modulations])
    return {"modulation_mean": float(m.mean()), "modulation_std": float(m.std(unbiased=False))}


def record(logger: Logger, stats: dict[str, float]) -> None:
    for key, value in stats.items():
        logger.record(f"plastic/{key}", value)
