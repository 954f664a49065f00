"""What PlasticPPO and PlasticA2C add to SB3's on-policy algorithms: recurrent rollouts.

:class:`PlasticOnPolicyMixin` goes in front of SB3's ``PPO`` / ``A2C`` in the class bases and
overrides only:

* ``_setup_model`` -- picks the sequence rollout buffer, checks the policy is plastic and that a
  loaded model's plastic configuration matches the saved one;
* ``collect_rollouts`` -- carries the plastic state from step to step (one ``policy.step`` per env
  step under ``no_grad``), stores it where a training sequence starts, records diagnostics. Over a
  ``BatchedVecEnv`` it hands over to the device-resident path
  (:mod:`~neuromod_rl.agents.on_policy.device_rollouts`), which keeps the whole rollout on the
  model's device; ``use_device_rollouts = False`` keeps SB3's path there too.

``train`` is SB3's own, untouched: the buffer hands it minibatches of whole sequences and the
policy's ``evaluate_actions`` runs them through ``scan``.
"""

from __future__ import annotations

import warnings
from contextvars import ContextVar
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from neuromod_rl.agents.common import diagnostics
from neuromod_rl.agents.common.algorithm import PlasticAlgorithmMixin
from neuromod_rl.agents.common.finite import check_transition
from neuromod_rl.agents.on_policy.buffers import SequenceDictRolloutBuffer, SequenceRolloutBuffer
from neuromod_rl.agents.on_policy.device_rollouts import collect_device_rollouts, device_rollout_env, rollout_buffer_of
from neuromod_rl.agents.on_policy.policies import DEFAULT_NET_ARCH, PlasticActorCriticPolicy
from neuromod_rl.plasticity import PlasticState

#: True while ``load`` rebuilds a saved model: a save that names no ``net_arch`` was made while the default
#: heads were linear (every save since names them)
_LOADING: ContextVar[bool] = ContextVar("loading_plastic_model", default=False)


def check_bptt_length(bptt_length: Any) -> int | str:
    if bptt_length == "episode":
        return bptt_length
    if isinstance(bptt_length, bool) or not isinstance(bptt_length, int | np.integer) or bptt_length < 1:
        raise ValueError(
            f"bptt_length must be 'episode' (full-episode BPTT over each env's rollout) or a positive int "
            f"(truncated chunks), got {bptt_length!r}"
        )
    return int(bptt_length)


class PlasticOnPolicyMixin(PlasticAlgorithmMixin):
    """Recurrent rollout collection for plastic policies (see the module docstring).

    ``bptt_length``: ``"episode"`` -- each env's whole rollout is one training sequence; episodes
    that start inside the rollout are backpropagated through from their first step (the
    Backpropamine setting; an episode already running when the rollout starts is cut there, so use
    ``n_steps`` >= the episode length), and the buffer stores one state per env whatever ``n_steps``.
    An int ``L`` -- truncated BPTT over chunks of ``L`` steps (``L`` must divide ``n_steps``), each
    started from the state stored when the rollout reached it.

    ``use_device_rollouts`` (an attribute, default True): over a ``BatchedVecEnv`` (SB3 ``VecEnv`` whose
    ``.batched`` is a torch ``BatchedTaskEnv``), collect rollouts on the model's device with no per-step
    host copy (:mod:`~neuromod_rl.agents.on_policy.device_rollouts`); False: SB3's path (numpy per step)
    for every env. Any other VecEnv always takes SB3's path.
    """

    _last_plastic_state: PlasticState | None
    #: the device-resident path over a BatchedVecEnv (False: SB3's path for every env)
    use_device_rollouts: bool = True

    def _init_plastic(self, bptt_length: int | str) -> None:
        self.bptt_length = check_bptt_length(bptt_length)
        self.plastic_config = None
        self._last_plastic_state = None

    def _setup_model(self) -> None:
        ours = (SequenceRolloutBuffer, SequenceDictRolloutBuffer)
        if self.rollout_buffer_class is not None and not issubclass(self.rollout_buffer_class, ours):
            raise ValueError(
                f"{type(self).__name__} keeps plastic states in its own buffer; drop rollout_buffer_class="
                f"{self.rollout_buffer_class.__name__} (valid: {[c.__name__ for c in ours]})"
            )
        self.rollout_buffer_class = ours[1] if isinstance(self.observation_space, spaces.Dict) else ours[0]
        seq_len = None if self.bptt_length == "episode" else self.bptt_length
        self.rollout_buffer_kwargs = {**(self.rollout_buffer_kwargs or {}), "seq_len": seq_len}
        if "net_arch" not in (self.policy_kwargs or {}):
            # named, so that the model's save rebuilds these heads under any later default
            heads = [] if _LOADING.get() else list(DEFAULT_NET_ARCH)
            self.policy_kwargs = {**(self.policy_kwargs or {}), "net_arch": heads}
        super()._setup_model()
        if not isinstance(self.policy, PlasticActorCriticPolicy):
            raise ValueError(
                f"{type(self).__name__} needs a plastic policy ('MlpPlasticPolicy', 'CnnPlasticPolicy', "
                f"'MultiInputPlasticPolicy'), got {type(self.policy).__name__}; feed-forward policies: "
                "stable_baselines3.PPO / A2C"
            )
        self._check_plastic_config()
        self._warn_if_minibatch_exceeds_batch_size()

    @classmethod
    def load(cls, path, env=None, device="auto", custom_objects=None, print_system_info=False, force_reset=True,
             **kwargs):  # fmt: skip
        """SB3's ``load``; a model saved while the default heads were linear (its ``policy_kwargs`` name no
        ``net_arch``) is rebuilt with linear heads, as it was trained."""
        token = _LOADING.set(True)
        try:
            return super().load(path, env=env, device=device, custom_objects=custom_objects,  # type: ignore[misc]
                                print_system_info=print_system_info, force_reset=force_reset, **kwargs)
        finally:
            _LOADING.reset(token)

    def _warn_if_minibatch_exceeds_batch_size(self) -> None:
        """A minibatch is whole training sequences, so a ``batch_size`` shorter than one sequence is not
        honoured: each minibatch is one sequence, and an epoch takes far fewer gradient steps than SB3's
        PPO (or RecurrentPPO) with the same arguments."""
        batch_size = getattr(self, "batch_size", None)
        seq_len = self.rollout_buffer.seq_len
        if batch_size is None or batch_size >= seq_len:
            return
        samples = self.n_steps * self.n_envs
        fix = (f"bptt_length={batch_size} (truncated BPTT over {batch_size}-step chunks) to match it"
               if self.n_steps % batch_size == 0 else "a bptt_length that divides n_steps")
        warnings.warn(
            f"{type(self).__name__}: batch_size={batch_size} is shorter than one training sequence ({seq_len} "
            f"steps, bptt_length={self.bptt_length!r}), so each minibatch is one whole sequence of {seq_len} "
            f"steps: {samples // seq_len} gradient steps per epoch instead of the {-(-samples // batch_size)} "
            f"that batch_size={batch_size} gives SB3's PPO. Pass {fix}, or batch_size={seq_len} to keep "
            f"{seq_len}-step sequences without this warning",
            UserWarning,
            stacklevel=5,
        )

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_last_plastic_state", "_device_carry"]

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: SequenceRolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """Fill the buffer with ``n_rollout_steps`` steps per env, carrying the plastic state (on the device,
        without host copies, over a ``BatchedVecEnv``: see the class docstring)."""
        assert self._last_obs is not None, "No previous observation was provided"
        batched = device_rollout_env(self, env)
        if batched is not None:
            return collect_device_rollouts(self, batched, callback, n_rollout_steps)
        rollout_buffer = rollout_buffer_of(self, device_resident=False)
        policy: PlasticActorCriticPolicy = self.policy
        policy.set_training_mode(False)
        rollout_buffer.reset()
        state = self._last_plastic_state
        if state is None or state.batch_size != env.num_envs:
            state = policy.initial_state(env.num_envs)
        kept_states, modulations = [], []
        if self.use_sde:  # gSDE: a new exploration matrix per rollout (and every sde_sample_freq steps)
            policy.reset_noise(env.num_envs)
        callback.on_rollout_start()

        n_steps = 0
        while n_steps < n_rollout_steps:
            if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
                policy.reset_noise(env.num_envs)
            if n_steps % rollout_buffer.seq_len == 0:
                # the state *before* this step's reset: scan applies episode_starts itself.
                rollout_buffer.add_start_state(state.flat())
                kept_states.append(state)
            with th.no_grad():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)
                starts = th.as_tensor(self._last_episode_starts, device=self.device).bool()
                out = policy.step(obs_tensor, state, starts)
            if out.modulation is not None:
                modulations.append(out.modulation)
            actions = out.actions.cpu().numpy()
            clipped_actions = actions
            if isinstance(self.action_space, spaces.Box):
                if policy.squash_output:
                    clipped_actions = policy.unscale_action(clipped_actions)
                else:
                    clipped_actions = np.clip(actions, self.action_space.low, self.action_space.high)

            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += env.num_envs
            # names the env before a NaN reaches the weights (an episode's last observation sits in its info)
            check_transition(new_obs, rewards, self.num_timesteps, infos)
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)
            self._bootstrap_timeouts(rewards, dones, infos, out.state)
            rollout_buffer.add(
                self._last_obs,
                actions,
                rewards,
                self._last_episode_starts,
                out.values,
                out.log_prob,
                modulation=out.stored_signal,
            )
            self._last_obs, self._last_episode_starts, state = new_obs, dones, out.state

        with th.no_grad():
            last = policy.step(obs_as_tensor(new_obs, self.device), state, th.as_tensor(dones).bool())
        rollout_buffer.compute_returns_and_advantage(last_values=last.values, dones=dones)
        self._last_plastic_state = state
        clip = getattr(policy.core.rule, "clip", None)
        diagnostics.record(
            self.logger,
            {
                **diagnostics.trace_statistics([*kept_states, state], clip),
                **diagnostics.modulation_statistics(modulations),
            },
        )
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _bootstrap_timeouts(
        self, rewards: np.ndarray, dones: np.ndarray, infos: list[dict], state: PlasticState
    ) -> None:
        """Episodes cut by a time limit are bootstrapped with the value of their last observation
        (SB3 issue #633), computed with the state they ended in."""
        for idx, done in enumerate(dones):
            if done and infos[idx].get("terminal_observation") is not None and infos[idx].get("TimeLimit.truncated"):
                terminal_obs = self.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                with th.no_grad():
                    value = self.policy.step(terminal_obs, state.index([idx]), th.zeros(1, dtype=th.bool)).values
                rewards[idx] += self.gamma * float(value[0, 0])
