"""Look inside a plastic policy during one evaluation episode: fast weights ``F`` and modulation ``M(t)``.

The plastic policies of :mod:`neuromod_rl.agents` expose one step of the whole policy,
``policy.step(obs, state, episode_starts) -> StepOutput(actions, values, log_prob, state, modulation, ...)``,
with the state a :class:`~neuromod_rl.plasticity.PlasticState` whose actor-core fields are prefixed
``pi.`` (``pi.h``, ``pi.F``, ``pi.E``). Running that step in a loop is exactly what ``predict`` does,
so the recorded episode is an ordinary episode of the agent, with its internals kept.
Policies without a plastic core (SB3 ``MlpPolicy``, ``MlpLstmPolicy``) yield ``None``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from neuromod_rl.experiment.config import ExperimentConfig
from neuromod_rl.experiment.environment import make_env


def _trace_key(state) -> str | None:
    """The actor core's fast-weight field: ``pi.F`` if present, else the first ``pi.*`` matrix."""
    if "pi.F" in state:
        return "pi.F"
    return next((k for k, v in state.items() if k.startswith("pi.") and v.dim() == 3), None)


def plastic_trace(model, cfg: ExperimentConfig, task: Any = None, seed: int = 0,
                  deterministic: bool = False, normalizer=None) -> dict[str, np.ndarray] | None:
    """One episode step by step: ``F[T, N, N]`` after each step, ``M[T]`` (fan-out: mean over neurons),
    ``M_neurons[T, N]`` for fan-out, ``rewards[T]``, ``actions[T, ...]``; ``None`` for non-plastic policies.
    ``normalizer``: the run's observation normalisation (what the policy saw in training)."""
    policy = model.policy
    if not (hasattr(policy, "step") and hasattr(policy, "initial_state")):
        return None
    env = make_env(cfg)
    try:
        obs, _ = env.reset(seed=seed, options=None if task is None else {"task": task})
        state = policy.initial_state(1)
        key = _trace_key(state)
        if key is None:
            return None
        starts = torch.ones(1, dtype=torch.bool)
        F, M, rewards, actions = [], [], [], []
        policy.set_training_mode(False)
        with torch.no_grad():
            for _ in range(100_000):
                obs_t, _ = policy.obs_to_tensor(obs if normalizer is None else normalizer(obs))
                out = policy.step(obs_t, state, starts, deterministic)
                starts = torch.zeros(1, dtype=torch.bool)
                state = out.state
                F.append(state[key][0].cpu().numpy().copy())
                m = out.modulation
                M.append(np.nan if m is None else m[0].cpu().numpy().reshape(-1))
                action = out.actions.cpu().numpy()[0]
                if getattr(policy, "squash_output", False):  # SAC / TD3 policies act in [-1, 1]
                    action = policy.unscale_action(action)
                if isinstance(env.action_space, spaces.Box):
                    action = np.clip(action, env.action_space.low, env.action_space.high)
                obs, r, term, trunc, _ = env.step(action)
                rewards.append(float(r))
                actions.append(np.asarray(action))
                if term or trunc:
                    break
    finally:
        env.close()
    m_arr = np.array([np.full(1, np.nan) if np.ndim(m) == 0 else m for m in M], dtype=np.float64)
    out_dict = {
        "F": np.stack(F),
        "M": np.nanmean(m_arr, axis=1) if m_arr.shape[1] else np.full(len(M), np.nan),
        "rewards": np.array(rewards),
        "actions": np.stack(actions),
        "field": np.array(key),
    }
    if m_arr.shape[1] > 1:
        out_dict["M_neurons"] = m_arr
    return out_dict
