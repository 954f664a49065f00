"""Where a NaN comes from: the checks that name the source of a non-finite value.

A NaN anywhere ends up in the action distribution, where torch reports only "Categorical ... found
invalid values". The source is one of: the env's observation, the env's reward (which reaches the
weights through the next update), the policy's weights (a diverged update), the plastic state passed
in, or the plastic traces themselves (a rule that grew without bound). These functions say which,
so the message points at what to fix.

Costs: :func:`check_transition` is one ``isfinite`` over each step's rewards and observations (a few
microseconds); :func:`non_finite_source` runs only after something already failed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th

from neuromod_rl.plasticity import PlasticState


def _first_bad_row(values: np.ndarray) -> int | None:
    bad = ~np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1)
    return int(np.flatnonzero(bad)[0]) if bad.any() else None


def check_transition(observations: Any, rewards: np.ndarray, step: int) -> None:
    """Raise ``FloatingPointError`` naming the env index when a VecEnv step returned a NaN/inf reward
    or observation (before it reaches the rollout buffer and, through the update, the weights)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    row = _first_bad_row(rewards.reshape(len(rewards), -1))
    if row is not None:
        raise FloatingPointError(
            f"the env returned a non-finite reward ({rewards.reshape(len(rewards), -1)[row, 0]}) in env {row} at "
            f"step {step}; fix the env's reward (or clip it, e.g. with gymnasium.wrappers.ClipReward)"
        )
    parts = observations.items() if isinstance(observations, dict) else [("", observations)]
    for key, obs in parts:
        obs = np.asarray(obs)
        if not np.issubdtype(obs.dtype, np.floating):
            continue
        row = _first_bad_row(obs)
        if row is not None:
            where = f" (key {key!r})" if key else ""
            raise FloatingPointError(
                f"the env returned an observation holding NaN/inf{where} in env {row} at step {step}; fix the env "
                "(SB3's VecCheckNan wrapper stops at the step that produced it)"
            )


def non_finite_source(policy: th.nn.Module, obs: Any, state: PlasticState, new_state: PlasticState | None) -> str:
    """Why a policy step produced NaN/inf: the observation, the weights, the state passed in, or the
    plastic traces of this step (checked in that order: the first bad input explains the rest)."""
    parts = obs.items() if isinstance(obs, dict) else [("", obs)]
    for key, value in parts:
        if th.is_tensor(value) and value.is_floating_point() and not bool(th.isfinite(value).all()):
            rows = (~th.isfinite(value.reshape(value.shape[0], -1))).any(1).nonzero()
            where = f" (key {key!r})" if key else ""
            return (
                f"the observation holds NaN/inf{where} in env {int(rows[0])}; check the env or the observations "
                "passed to predict"
            )
    for name, param in policy.named_parameters():
        if not bool(th.isfinite(param).all()):
            return (
                f"the policy's weight {name!r} holds NaN/inf: training diverged (a non-finite or huge reward, or too "
                "large a learning rate). Lower the learning rate or scale the rewards, and restart from a checkpoint "
                "taken before the divergence"
            )
    for name, value in state.items():
        if not bool(th.isfinite(value).all()):
            return (
                f"the plastic state passed in holds NaN/inf (field {name!r}): if it is the previous step's state, "
                "the rule's traces grew without bound (lower the plasticity rate or the plastic gain alpha, or use "
                "a clipped rule); otherwise start from state=None"
            )
    if new_state is not None:
        for name, value in new_state.items():
            if not bool(th.isfinite(value).all()):
                return (
                    f"the plastic traces became NaN/inf in this step (field {name!r}) with finite inputs and weights: "
                    "the rule grew without bound. Lower the plasticity rate, the plastic gain alpha or the "
                    "modulation gain, or use a rule with a small clip ('clipped', 'neuromod', 'retroactive')"
                )
    return "the action head produced NaN/inf from finite inputs, weights and traces"
