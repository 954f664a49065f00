"""Where a NaN comes from: the checks that name the source of a non-finite value.

A NaN anywhere ends up in the action distribution, where torch reports only "Categorical ... found
invalid values". The source is one of: the env's observation, the env's reward (which reaches the
weights through the next update), the policy's weights (a diverged update), the plastic state passed
in, or the plastic traces themselves (a rule that grew without bound). These functions say which,
so the message points at what to fix.

Costs: :func:`check_transition` is one ``isfinite`` over each step's rewards and observations, and
:func:`check_step` one over a step's actions and next state (a few microseconds each);
:func:`non_finite_source` runs only after something already failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch as th

from neuromod_rl.plasticity import PlasticState


def _first_bad_row(values: np.ndarray) -> int | None:
    bad = ~np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1)
    return int(np.flatnonzero(bad)[0]) if bad.any() else None


def _env(row: int) -> str:
    return f"env {row}"


def _bad_observation(observations: Any) -> tuple[int, str] | None:
    """``(row, key)`` of the first observation holding NaN/inf (``key`` is ``""`` outside a Dict)."""
    parts = observations.items() if isinstance(observations, dict) else [("", observations)]
    for key, obs in parts:
        obs = np.asarray(obs)
        if not np.issubdtype(obs.dtype, np.floating):
            continue
        row = _first_bad_row(obs)
        if row is not None:
            return row, key
    return None


def _as_batch(observation: Any) -> Any:
    """One env's observation as a batch of one."""
    if isinstance(observation, dict):
        return {k: np.asarray(v)[None] for k, v in observation.items()}
    return np.asarray(observation)[None]


def check_transition(
    observations: Any,
    rewards: np.ndarray,
    step: int | str,
    infos: Sequence[dict] | None = None,
    where: Callable[[int], str] = _env,
) -> None:
    """Raise ``FloatingPointError`` naming the env index when a VecEnv step returned a NaN/inf reward
    or observation (before it reaches the rollout buffer and, through the update, the weights).

    ``infos``: the step's infos, whose ``terminal_observation`` (what an ending episode last saw, which
    replay buffers keep as its next observation) is checked too. ``where``: how to name the env at a
    row, when rows are not the envs of one VecEnv (evolution strategies: a member's episode)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    row = _first_bad_row(rewards.reshape(len(rewards), -1))
    if row is not None:
        raise FloatingPointError(
            f"the env returned a non-finite reward ({rewards.reshape(len(rewards), -1)[row, 0]}) in {where(row)} at "
            f"step {step}; fix the env's reward (or clip it, e.g. with gymnasium.wrappers.ClipReward)"
        )
    found, terminal = _bad_observation(observations), False
    if found is None:
        for i, info in enumerate(infos or ()):
            last = info.get("terminal_observation") if isinstance(info, dict) else None
            bad = None if last is None else _bad_observation(_as_batch(last))
            if bad is not None:
                found, terminal = (i, bad[1]), True
                break
    if found is not None:
        row, key = found
        what = [f"key {key!r}"] if key else []
        what += ["the terminal observation"] if terminal else []
        detail = f" ({' of '.join(what)})" if what else ""
        raise FloatingPointError(
            f"the env returned an observation holding NaN/inf{detail} in {where(row)} at step {step}; fix the env "
            "(SB3's VecCheckNan wrapper stops at the step that produced it)"
        )


def find_non_finite_source(
    policy: th.nn.Module, obs: Any, state: PlasticState, new_state: PlasticState | None
) -> str | None:
    """Why a policy step produced NaN/inf: the observation, the weights, the state passed in, or the
    plastic traces of this step (checked in that order: the first bad input explains the rest);
    ``None`` when all of them are finite."""
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
    return None


def non_finite_source(policy: th.nn.Module, obs: Any, state: PlasticState, new_state: PlasticState | None) -> str:
    """:func:`find_non_finite_source`, for a step already known to have produced NaN/inf."""
    found = find_non_finite_source(policy, obs, state, new_state)
    return found or "the action head produced NaN/inf from finite inputs, weights and traces"


def check_step(
    policy: th.nn.Module, obs: Any, state: PlasticState, new_state: PlasticState, actions: th.Tensor
) -> None:
    """Raise ``FloatingPointError`` naming the source when a policy step's actions or next state hold
    NaN/inf: a NaN is never handed to an env as an action, nor carried to the next step as a state."""
    outputs = [actions, *new_state.values()]
    if bool(th.stack([th.isfinite(t).all() for t in outputs]).all()):
        return
    raise FloatingPointError(f"{type(policy).__name__}: {non_finite_source(policy, obs, state, new_state)}")
