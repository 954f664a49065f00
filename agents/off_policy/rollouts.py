"""What PlasticSAC and PlasticTD3 add to SB3's off-policy algorithms: acting with a plastic state.

:class:`PlasticOffPolicyMixin` goes in front of SB3's ``SAC`` / ``TD3`` in the class bases and
overrides only:

* ``__init__`` -- takes the sequence settings (below); every other argument goes to SB3's constructor;
* ``_setup_model`` -- picks the sequence replay buffer with the sequence settings, checks the policy
  is plastic and that a loaded model's plastic configuration matches the saved one;
* ``_sample_action`` -- one ``policy.step`` per env step carries the plastic state (also during the
  random warm-up, so stored states always describe the history the buffer holds); exploration
  (warm-up sampling, ``action_noise``) is SB3's;
* ``_store_transition`` -- refuses a NaN/inf reward or observation (naming the env and the step),
  hands the buffer the step's episode starts and the state held before the step (kept every
  ``sequence_length`` steps), then SB3's own storage runs;
* ``train`` -- SB3's ``SAC.train`` / ``TD3.train`` unchanged, skipped only until the buffer holds a
  whole sequence (a model loaded without its replay buffer refills it first);
* ``dump_logs`` -- adds the plastic diagnostics (``plastic/mean_abs_F``, ``plastic/clip_fraction``,
  ``plastic/modulation_mean|std``) to SB3's log.

``collect_rollouts`` and ``learn`` are SB3's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.noise import ActionNoise, NormalActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.utils import obs_as_tensor

from neuromod_rl.agents.common import diagnostics
from neuromod_rl.agents.common.algorithm import PlasticAlgorithmMixin
from neuromod_rl.agents.common.finite import check_transition
from neuromod_rl.agents.off_policy.policies import PlasticOffPolicyPolicyMixin
from neuromod_rl.agents.off_policy.sequence_replay import (
    SequenceDictReplayBuffer,
    SequenceReplayBuffer,
    check_sequence_settings,
)
from neuromod_rl.plasticity import PlasticState

_BUFFERS = (SequenceReplayBuffer, SequenceDictReplayBuffer)


class PlasticOffPolicyMixin(PlasticAlgorithmMixin):
    """Plastic state handling for SB3 off-policy algorithms (see the module docstring).

    Sequence settings (constructor arguments of PlasticSAC / PlasticTD3):

    * ``sequence_length`` (L) -- trained steps per sampled sequence; a state is stored every L steps
      per env. A batch of ``batch_size`` transitions is ``batch_size // L`` sequences (at least one).
    * ``burn_in`` (K) -- steps before the trained ones that only refresh the stored state, without
      gradient (R2D2). Sequences then span ``K + L`` buffer steps.
    * ``start_state`` -- ``"stored"``: a sequence starts from the state the agent had when it
      collected it; ``"zero"``: from the episode-start state (nothing stored; pair it with a burn-in).

    ``action_noise`` may also be a number: Gaussian exploration noise of that standard deviation (in the
    scaled action space, as SB3's ``NormalActionNoise``), which is what a YAML config can express.

    ``learning_starts`` is raised to at least ``(burn_in + sequence_length) * n_envs``: training needs
    one whole sequence per env.
    """

    feed_forward_peers = "stable_baselines3.SAC / TD3"
    _last_plastic_state: PlasticState | None

    def __init__(
        self,
        policy: str | type[BasePolicy],
        env,
        sequence_length: int = 32,
        burn_in: int = 0,
        start_state: str = "stored",
        **kwargs: Any,
    ):
        self.sequence_length, self.burn_in, self.start_state = check_sequence_settings(
            sequence_length, burn_in, start_state
        )
        self.plastic_config = None
        self._last_plastic_state = None
        self._state_before_step: PlasticState | None = None
        self._modulation_sums = np.zeros(3)  # count, sum, sum of squares of M(t) since the last log
        super().__init__(policy, env, **kwargs)  # type: ignore[call-arg]  (SB3's SAC / TD3)

    # -- set-up ----------------------------------------------------------------------------------------
    def _setup_model(self) -> None:
        if self.replay_buffer_class is not None and not issubclass(self.replay_buffer_class, _BUFFERS):
            raise ValueError(
                f"{type(self).__name__} keeps plastic states in its own replay buffer; drop replay_buffer_class="
                f"{self.replay_buffer_class.__name__} (valid: {[c.__name__ for c in _BUFFERS]})"
            )
        if self.n_steps > 1:
            raise ValueError(
                f"n_steps={self.n_steps}: n-step returns are not supported by the sequence replay buffer; use n_steps=1"
            )
        if self.optimize_memory_usage:
            raise ValueError(
                "optimize_memory_usage=True is not supported: the sequence replay buffer keeps every next observation "
                "(episodes end inside sequences); drop it"
            )
        if isinstance(self.action_noise, int | float) and not isinstance(self.action_noise, bool):
            # a number is Gaussian exploration noise of that scale (what a YAML config can say)
            dim = get_action_dim(self.action_space)
            self.action_noise = NormalActionNoise(np.zeros(dim), float(self.action_noise) * np.ones(dim))
        self.replay_buffer_class = _BUFFERS[1] if isinstance(self.observation_space, spaces.Dict) else _BUFFERS[0]
        self.replay_buffer_kwargs = {
            **(self.replay_buffer_kwargs or {}),
            "sequence_length": self.sequence_length,
            "burn_in": self.burn_in,
            "start_state": self.start_state,
        }
        super()._setup_model()  # type: ignore[misc]
        if not isinstance(self.policy, PlasticOffPolicyPolicyMixin):
            raise ValueError(
                f"{type(self).__name__} needs a plastic policy ({sorted(self.policy_aliases)}), got "
                f"{type(self.policy).__name__}; feed-forward policies: {self.feed_forward_peers}"
            )
        self._check_plastic_config()
        self.replay_buffer.plastic_config = self.plastic_config  # checked when a saved buffer is loaded
        self.learning_starts = max(self.learning_starts, (self.burn_in + self.sequence_length) * self.n_envs)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_last_plastic_state", "_state_before_step", "_modulation_sums"]  # type: ignore[misc]

    def load_replay_buffer(self, path, truncate_last_traj: bool = True) -> None:
        """SB3's, plus a check that the buffer was filled by a model like this one (sequence settings,
        envs, spaces and, where it stores plastic states, the plastic configuration): otherwise the
        error comes only later, from inside ``learn``. A refused buffer leaves the model's own in place."""
        own = self.replay_buffer
        super().load_replay_buffer(path, truncate_last_traj)  # type: ignore[misc]
        differences = self._replay_buffer_differences(self.replay_buffer)
        if differences:
            self.replay_buffer = own
            raise ValueError(
                f"the loaded replay buffer does not match this model's settings ({'; '.join(differences)}); load a "
                "buffer saved by a model with the same settings, or none (training refills the buffer)"
            )

    def _replay_buffer_differences(self, buf) -> list[str]:
        """What differs between ``buf`` and the buffer this model fills, as ``"key: X in the buffer, Y in this
        model"``; empty when it fits."""
        if not isinstance(buf, _BUFFERS):
            return [f"type: {type(buf).__name__} in the buffer, one of {[c.__name__ for c in _BUFFERS]} in this model"]
        ours: dict[str, Any] = {
            "sequence_length": self.sequence_length, "burn_in": self.burn_in, "start_state": self.start_state,
            "n_envs": self.n_envs, "observation_space": self.observation_space, "action_space": self.action_space,
        }  # fmt: skip
        theirs = {k: getattr(buf, k, None) for k in ours}
        if self.start_state == "stored":  # the stored states are the plastic core's: they fit only its configuration
            saved = getattr(buf, "plastic_config", None)
            if saved is not None:
                ours.update(self.plastic_config or {})
                theirs.update({k: saved.get(k) for k in self.plastic_config or {}})
            elif buf.start_states is not None:  # a buffer saved before it recorded the configuration
                ours["plastic state width"] = self._stored_state_width()
                theirs["plastic state width"] = buf.start_states.shape[-1]
        return [f"{k}: {theirs[k]!r} in the buffer, {v!r} in this model" for k, v in ours.items() if theirs[k] != v]

    def _stored_state_width(self) -> int:
        """Floats per env of the state the buffer stores (the actor's, plus the critic's where carried)."""
        return int(self.policy.initial_state(1, critic=self._carries_critic_state).flat().shape[1])

    # -- acting ----------------------------------------------------------------------------------------
    @property
    def _carries_critic_state(self) -> bool:
        # the critic core's state is only needed where it is stored
        return self.start_state == "stored" and self.policy.has_critic_state

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """SB3's exploration (uniform warm-up, then the policy's sample plus ``action_noise``), with the
        plastic state carried from step to step. Returns ``(env action, scaled action for the buffer)``."""
        policy = self.policy
        state = self._last_plastic_state
        if state is None or state.batch_size != n_envs:
            state = policy.initial_state(n_envs, critic=self._carries_critic_state)
        with th.no_grad():
            obs = obs_as_tensor(self._last_obs, self.device)
            starts = th.as_tensor(self._last_episode_starts, device=self.device).bool()
            out = policy.step(obs, state, starts, deterministic=False)
        self._state_before_step, self._last_plastic_state = state, out.state
        if out.modulation is not None:
            m = out.modulation.double()
            self._modulation_sums += (m.numel(), float(m.sum()), float((m * m).sum()))
        if self.num_timesteps < learning_starts:
            scaled = policy.scale_action(np.array([self.action_space.sample() for _ in range(n_envs)]))
        else:
            scaled = out.actions.cpu().numpy().reshape(n_envs, -1)
        if action_noise is not None:
            scaled = np.clip(scaled + action_noise(), -1, 1)
        return policy.unscale_action(scaled), scaled

    def _store_transition(self, replay_buffer, buffer_action, new_obs, reward, dones, infos) -> None:
        # names the env before a NaN/inf enters the buffer, where the critic's targets would spread it
        check_transition(new_obs, reward, self.num_timesteps, infos)
        stored = self._state_before_step.flat() if self.start_state == "stored" else None  # type: ignore[union-attr]
        replay_buffer.stage(self._last_episode_starts, stored)
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)  # type: ignore[misc]
        self._last_episode_starts = dones

    # -- training and logs -------------------------------------------------------------------------------
    def train(self, gradient_steps: int, batch_size: int = 256) -> None:
        if not self.replay_buffer.can_sample():
            return  # e.g. loaded without its replay buffer: collect a whole sequence first
        super().train(gradient_steps, batch_size)  # type: ignore[misc]

    def dump_logs(self) -> None:
        state = self._last_plastic_state
        if state is not None:
            clip = getattr(self.policy.actor.features_extractor.core.rule, "clip", None)
            diagnostics.record(self.logger, diagnostics.trace_statistics([state], clip))
        count, total, squares = self._modulation_sums
        if count:
            mean = total / count
            diagnostics.record(
                self.logger,
                {"modulation_mean": mean, "modulation_std": float(np.sqrt(max(squares / count - mean * mean, 0.0)))},
            )
        self._modulation_sums = np.zeros(3)
        super().dump_logs()  # type: ignore[misc]

