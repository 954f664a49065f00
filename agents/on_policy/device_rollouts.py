"""The device-resident rollout path of PlasticPPO and PlasticA2C, over a batched (torch) task env.

When the algorithm's VecEnv is a ``BatchedVecEnv`` (an SB3 ``VecEnv`` whose ``.batched`` is a
``BatchedTaskEnv``: tensors in and out, on one device), :func:`collect_device_rollouts` replaces SB3's
loop: it steps the batched env directly and keeps everything a rollout produces on the model's
device -- observations, actions, rewards, values, log-probs, episode starts, the plastic state, the
running episode returns and lengths -- and writes it into a
:class:`~neuromod_rl.agents.on_policy.device_buffer.DeviceSequenceRolloutBuffer`, whose minibatches
SB3's ``train`` then reads without a host copy. On a GPU no step synchronises with the host:

* the policy step resets the episode-start rows unconditionally on a GPU (``torch.where``) rather than
  asking whether any row starts (on the CPU asking costs nothing and skips the copy), and draws the
  action as ``torch.multinomial`` does for one sample (``argmax(p / Exp(1))``, the same random
  numbers) without multinomial's validity check;
* non-finite observations, rewards, values or log-probs are looked for once, at the end of the
  rollout, before anything reaches the weights (a ``FloatingPointError`` names the env and step);
* episodes cut by a time limit are bootstrapped with the value of their last observation (as SB3's
  path does) once per rollout: if any was cut, the rollout's policy steps are replayed from the stored
  sequence-start state up to the last cut, to recover the state each cut episode ended in;
* finished episodes' returns and lengths go to ``ep_info_buffer`` (``rollout/ep_rew_mean``) once per
  rollout.

The host sees, per rollout, the minibatch order (numpy's generator, as on SB3's path), the
last observation and episode starts (kept in ``_last_obs`` / ``_last_episode_starts`` for save and
the standard path), the finished episodes and the diagnostics. For the same seed it takes the same
actions and stores the same numbers as SB3's path over the same env (which ``use_device_rollouts =
False`` forces), time-limit bootstraps aside: SB3's path draws an action for each one, which shifts
the random stream of later steps.

The callbacks' ``on_step`` runs every step; ``self.locals`` holds the step's tensors on the device
(``new_obs``, ``rewards``, ``dones``, ``actions``, ``values``, ``log_probs``) and ``infos``, a list of
empty dicts (a callback that needs numpy calls ``.cpu().numpy()``, paying the copy).
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecMonitor, VecNormalize
from torch.distributions import Categorical

from neuromod_rl.agents.common import diagnostics
from neuromod_rl.agents.common.finite import find_non_finite_source
from neuromod_rl.agents.on_policy.buffers import SequenceRolloutBuffer
from neuromod_rl.agents.on_policy.device_buffer import DeviceSequenceRolloutBuffer
from neuromod_rl.agents.on_policy.policies import PlasticActorCriticPolicy, StepOutput
from neuromod_rl.plasticity import PlasticState

if TYPE_CHECKING:  # the mixin's host (PlasticPPO / PlasticA2C)
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm


class BatchedEnv(Protocol):
    """What the device path uses of a ``BatchedTaskEnv`` (``neuromod_rl.envs.batched``)."""

    num_envs: int
    device: th.device
    check_actions: bool
    final_observation: th.Tensor | None

    def step(self, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]: ...


@dataclass
class DeviceCarry:
    """What one rollout hands the next on the device (never saved: rebuilt from ``_last_obs``).

    Attributes:
        obs: the observation the next step acts on, ``[n_envs, obs_dim]``.
        episode_starts: whether that step starts an episode, bool ``[n_envs]``.
        episode_return: running return of each env's episode (float64, as SB3's ``Monitor`` sums).
        episode_length: running length of each env's episode (int64).
        anchor: the host ``_last_obs`` this carry matches; another one means the env was reset.
    """

    obs: th.Tensor
    episode_starts: th.Tensor
    episode_return: th.Tensor
    episode_length: th.Tensor
    anchor: Any


def _unwrap(env: VecEnv) -> tuple[VecEnv, list[VecEnvWrapper]]:
    wrappers = []
    while isinstance(env, VecEnvWrapper):
        wrappers.append(env)
        env = env.venv
    return env, wrappers


def device_rollout_env(model: OnPolicyAlgorithm, env: VecEnv | None) -> BatchedEnv | None:
    """The batched env the device path steps, or ``None`` for SB3's path.

    ``None`` when ``model.use_device_rollouts`` is False, when ``env`` is not a ``BatchedVecEnv``,
    or (with a warning) when the device path cannot honour ``env``: a wrapper other than a
    file-less ``VecMonitor`` (whose episode statistics the device path records itself), a batched
    env on another device than the model, a non-``Discrete`` action space. ``VecNormalize`` is
    refused: the device path reads the batched env's tensors and would skip its normalisation.
    """
    if env is None or not getattr(model, "use_device_rollouts", True):
        return None
    inner, wrappers = _unwrap(env)
    batched = getattr(inner, "batched", None)
    if batched is None or not callable(getattr(batched, "step", None)):
        return None
    name = type(model).__name__
    if any(isinstance(w, VecNormalize) for w in wrappers):
        raise ValueError(
            f"{name}: the device-resident rollout path steps the BatchedVecEnv's tensors directly and cannot apply "
            "VecNormalize's running statistics. Normalise inside the task (its reward/observation scale), or set "
            "model.use_device_rollouts = False to train through VecNormalize on SB3's path (a host copy per step)"
        )
    why = None
    other = [w for w in wrappers if not (type(w) is VecMonitor and w.results_writer is None)]
    if other:
        why = (f"it would skip the wrapper {type(other[0]).__name__} (pass the BatchedVecEnv unwrapped, or a "
               "VecMonitor without a file: the device path records the episode statistics itself)")
    elif th.device(batched.device) != th.device(model.device):
        why = (f"the batched env is on {batched.device} and the model on {model.device} (make the env with "
               f"make_batched(..., device='{model.device}'))")
    elif not isinstance(model.action_space, spaces.Discrete):
        why = f"it samples Discrete actions only, the action space is {model.action_space}"
    if why is not None:
        warnings.warn(
            f"{name}: training on SB3's path (a host copy of every step) instead of the device-resident one: {why}. "
            "Set model.use_device_rollouts = False to choose SB3's path without this warning",
            UserWarning,
            stacklevel=4,
        )
        return None
    return batched


def rollout_buffer_of(model: OnPolicyAlgorithm, device_resident: bool) -> SequenceRolloutBuffer:
    """``model.rollout_buffer``, replaced by one of the right kind (same arguments) when the path changed."""
    buffer = model.rollout_buffer
    want = DeviceSequenceRolloutBuffer if device_resident else SequenceRolloutBuffer
    if (type(buffer) is want) or (not device_resident and not isinstance(buffer, DeviceSequenceRolloutBuffer)):
        return buffer
    model.rollout_buffer = want(
        model.n_steps,
        model.observation_space,
        model.action_space,
        device=model.device,
        gamma=model.gamma,
        gae_lambda=model.gae_lambda,
        n_envs=model.n_envs,
        **(model.rollout_buffer_kwargs or {}),
    )
    return model.rollout_buffer


def sample_step(
    policy: PlasticActorCriticPolicy, obs: th.Tensor, state: PlasticState, starts: th.Tensor, initial: PlasticState
) -> StepOutput:
    """``policy.step`` for ``Discrete`` actions without a host synchronisation (see the module docstring):
    the same actions, values, log-probs and next state for the same random stream.

    Args:
        policy: the plastic policy (a ``Discrete`` action space).
        obs: observations ``[n_envs, obs_dim]`` on the policy's device.
        state: the state before the step's episode-start reset.
        starts: bool ``[n_envs]``; those rows restart from ``initial`` first.
        initial: ``policy.initial_state(1)``.
    """
    # a GPU resets unconditionally (a masked copy of the state, no host sync); on the CPU asking is free
    # and skipping the copy of the fast weights on the steps where no episode starts is not
    if starts.device.type != "cpu" or bool(starts.any()):
        state = state.reset(starts, initial)
    latent_pi, values, new_state, m, stored = policy.advance(obs, state, starts)
    # validate_args=False: the check is a host synchronisation; non-finite values are caught after the rollout
    distribution = Categorical(logits=policy.action_net(latent_pi), validate_args=False)
    probs = distribution.probs
    actions = th.argmax(probs / th.empty_like(probs).exponential_(1), dim=-1)
    return StepOutput(actions, values, distribution.log_prob(actions), new_state, m, stored)


@contextmanager
def _unchecked_actions(batched: BatchedEnv):
    """The env's per-step action range check is a host synchronisation; sampled actions are in range."""
    checked = getattr(batched, "check_actions", False)
    batched.check_actions = False
    try:
        yield
    finally:
        batched.check_actions = checked


def _carry(model: OnPolicyAlgorithm, n_envs: int) -> DeviceCarry:
    """The carry of the previous rollout, or a new one from the host's ``_last_obs`` after a reset."""
    carry: DeviceCarry | None = getattr(model, "_device_carry", None)
    if carry is not None and carry.anchor is model._last_obs and carry.obs.shape[0] == n_envs:
        return carry
    device = model.device
    carry = DeviceCarry(
        obs=th.as_tensor(model._last_obs, dtype=th.float32, device=device).reshape(n_envs, -1),
        episode_starts=th.as_tensor(model._last_episode_starts, device=device).reshape(n_envs).bool(),
        episode_return=th.zeros(n_envs, dtype=th.float64, device=device),
        episode_length=th.zeros(n_envs, dtype=th.int64, device=device),
        anchor=model._last_obs,
    )
    model._device_carry = carry
    return carry


def collect_device_rollouts(
    model: OnPolicyAlgorithm, batched: BatchedEnv, callback: BaseCallback, n_rollout_steps: int
) -> bool:
    """Fill ``model.rollout_buffer`` (a :class:`DeviceSequenceRolloutBuffer`) with ``n_rollout_steps``
    steps of every env of ``batched``, on the device (see the module docstring); False when a callback
    stopped training.

    Args:
        model: PlasticPPO or PlasticA2C (its policy, buffer, counters and logger are used and updated).
        batched: the ``BatchedTaskEnv`` under the model's ``BatchedVecEnv``, on the model's device.
        callback: SB3 callback, called as on SB3's path.
        n_rollout_steps: steps per env.
    """
    policy: PlasticActorCriticPolicy = model.policy  # type: ignore[assignment]
    buffer = rollout_buffer_of(model, device_resident=True)
    assert isinstance(buffer, DeviceSequenceRolloutBuffer)
    n_envs = batched.num_envs
    policy.set_training_mode(False)
    buffer.reset()
    carry = _carry(model, n_envs)
    state = model._last_plastic_state
    if state is None or state.batch_size != n_envs:
        state = policy.initial_state(n_envs)
    with th.no_grad():
        initial = policy.initial_state(1)
    kept_states, modulations = [], []
    steps = (n_rollout_steps, n_envs)
    dev = model.device
    timeouts = th.zeros(steps, dtype=th.bool, device=dev)
    final_obs = th.zeros((*steps, *buffer.obs_shape), dtype=th.float32, device=dev)
    ended = th.zeros(steps, dtype=th.bool, device=dev)
    ended_return = th.zeros(steps, dtype=th.float64, device=dev)
    ended_length = th.zeros(steps, dtype=th.int64, device=dev)
    no_infos: list[dict] = [{} for _ in range(n_envs)]
    obs, starts = carry.obs, carry.episode_starts
    callback.on_rollout_start()

    n_steps = 0
    with _unchecked_actions(batched):
        while n_steps < n_rollout_steps:
            if n_steps % buffer.seq_len == 0:
                buffer.add_start_state(state.flat())  # before this step's reset, as on SB3's path
                kept_states.append(state)
            with th.no_grad():
                out = sample_step(policy, obs, state, starts, initial)
            if out.modulation is not None:
                modulations.append(out.modulation)
            new_obs, rewards, terminated, truncated = batched.step(out.actions)
            dones = terminated | truncated
            model.num_timesteps += n_envs
            callback.update_locals(dict(
                self=model, env=model.env, callback=callback, rollout_buffer=buffer, n_rollout_steps=n_rollout_steps,
                n_steps=n_steps, obs_tensor=obs, actions=out.actions, clipped_actions=out.actions,
                values=out.values, log_probs=out.log_prob, new_obs=new_obs, rewards=rewards, dones=dones,
                infos=no_infos,
            ))  # fmt: skip
            if not callback.on_step():
                carry.obs, carry.episode_starts = new_obs, dones
                return False
            episode_return = carry.episode_return + rewards
            episode_length = carry.episode_length + 1
            ended[n_steps], ended_return[n_steps], ended_length[n_steps] = dones, episode_return, episode_length
            carry.episode_return = th.where(dones, 0.0, episode_return)
            carry.episode_length = th.where(dones, 0, episode_length)
            # SB3's VecEnv marks a time-limit cut only where the task itself did not end the episode
            timeouts[n_steps] = truncated & ~terminated
            if batched.final_observation is not None:
                final_obs[n_steps] = batched.final_observation
            buffer.add(obs, out.actions, rewards, starts, out.values, out.log_prob, modulation=out.stored_signal)
            obs, starts, state = new_obs, dones, out.state
            n_steps += 1

    with th.no_grad():
        last = sample_step(policy, obs, state, starts, initial)
        _bootstrap_timeouts(model, buffer, kept_states, timeouts, final_obs, initial)
    _check_finite(model, buffer, final_obs, ended, kept_states[0], state)
    buffer.compute_returns_and_advantage(last_values=last.values, dones=starts)
    carry.obs, carry.episode_starts = obs, starts
    model._last_plastic_state = state
    # one host copy per rollout: SB3's path (and save) read the last observation from here
    model._last_obs = carry.anchor = obs.cpu().numpy()
    model._last_episode_starts = starts.cpu().numpy()
    _record_episodes(model, ended, ended_return, ended_length)
    clip = getattr(policy.core.rule, "clip", None)
    diagnostics.record(
        model.logger,
        {
            **diagnostics.trace_statistics([*kept_states, state], clip),
            **diagnostics.modulation_statistics(modulations),
        },
    )
    callback.update_locals(dict(rollout_buffer=buffer, new_obs=obs, dones=starts))
    callback.on_rollout_end()
    return True


def _bootstrap_timeouts(
    model: OnPolicyAlgorithm,
    buffer: DeviceSequenceRolloutBuffer,
    kept_states: list[PlasticState],
    timeouts: th.Tensor,
    final_obs: th.Tensor,
    initial: PlasticState,
) -> None:
    """Add ``gamma * V(last observation)`` to the reward of every step a time limit cut, with the state
    the episode ended in, recovered by replaying the rollout's policy steps (no sampling) from its first
    stored state up to the last cut step. Nothing to do, and one host synchronisation, without a cut."""
    cut_steps = timeouts.any(dim=1).nonzero().flatten().tolist()
    if not cut_steps:
        return
    policy: PlasticActorCriticPolicy = model.policy  # type: ignore[assignment]
    state = kept_states[0]
    no_starts = th.zeros(buffer.n_envs, dtype=th.bool, device=timeouts.device)
    cuts = set(cut_steps)
    for t in range(max(cut_steps) + 1):
        starts = buffer.episode_starts[t].bool()
        state = state.reset(starts, initial)
        _, _, state, _, _ = policy.advance(buffer.observations[t], state, starts)
        if t in cuts:
            _, values, _, _, _ = policy.advance(final_obs[t], state, no_starts)
            bonus = model.gamma * values.reshape(-1)
            buffer.rewards[t] += th.where(timeouts[t], bonus, th.zeros_like(bonus))


def _check_finite(
    model: OnPolicyAlgorithm,
    buffer: DeviceSequenceRolloutBuffer,
    final_obs: th.Tensor,
    ended: th.Tensor,
    first_state: PlasticState,
    last_state: PlasticState,
) -> None:
    """Raise ``FloatingPointError`` naming the env and step when the rollout holds NaN/inf (one host
    synchronisation): an env's observation or reward first, else what in the policy produced it."""
    obs_bad = ~th.isfinite(buffer.observations).flatten(2).all(dim=2)
    obs_bad |= ended & ~th.isfinite(final_obs).flatten(2).all(dim=2)
    env_bad = obs_bad | ~th.isfinite(buffer.rewards)
    policy_bad = ~(th.isfinite(buffer.device_values) & th.isfinite(buffer.log_probs))
    if not bool((env_bad | policy_bad).any()):
        return
    step = model.num_timesteps - buffer.n_envs * (buffer.buffer_size - 1)  # the count at the rollout's step 0
    if bool(env_bad.any()):
        t, e = (int(i) for i in env_bad.nonzero()[0])
        reward = float(buffer.rewards[t, e])
        what = "an observation holding NaN/inf" if bool(obs_bad[t, e]) else f"a non-finite reward ({reward})"
        raise FloatingPointError(
            f"the env returned {what} in env {e} at step {step + t * buffer.n_envs}; fix the batched task "
            "(its observations and rewards must be finite)"
        )
    t, e = (int(i) for i in policy_bad.nonzero()[0])
    source = find_non_finite_source(model.policy, buffer.observations[t], first_state, last_state)
    raise FloatingPointError(
        f"{type(model.policy).__name__}: the value or action probabilities became NaN/inf in env {e} at step "
        f"{step + t * buffer.n_envs}: {source or 'the heads produced NaN/inf from finite inputs and weights'}"
    )


def _record_episodes(model: OnPolicyAlgorithm, ended: th.Tensor, returns: th.Tensor, lengths: th.Tensor) -> None:
    """The rollout's finished episodes into ``ep_info_buffer`` (SB3's ``Monitor`` keys ``r``, ``l``, ``t``),
    in SB3's order (step by step, env by env); ``t`` is the time at the end of the rollout."""
    if model.ep_info_buffer is None:
        return
    rows = ended.nonzero(as_tuple=True)
    r, length = returns[rows].cpu().tolist(), lengths[rows].cpu().tolist()
    elapsed = round((time.time_ns() - model.start_time) / 1e9, 6)
    model.ep_info_buffer.extend({"r": round(x, 6), "l": int(n), "t": elapsed} for x, n in zip(r, length))
