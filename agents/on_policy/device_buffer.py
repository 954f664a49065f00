"""The sequence rollout buffer with its storage on the model's device, for the device-resident path.

:class:`DeviceSequenceRolloutBuffer` is :class:`~neuromod_rl.agents.on_policy.buffers.SequenceRolloutBuffer`
with every per-step array (observations, actions, rewards, episode starts, values, log-probs,
advantages, returns, stored modulation) a torch tensor on the buffer's device instead of a numpy
array. ``add`` takes tensors already there, Generalized Advantage Estimation runs on them, and
``get`` yields the same minibatches of whole sequences (same order, same shapes, same dtypes) by
indexing them, so SB3's ``PPO.train`` / ``A2C.train`` run unchanged and nothing crosses to the host
but the minibatch order (numpy's generator, as in the host buffer) and the explained-variance
figure SB3 logs once per update.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import torch as th
from stable_baselines3.common.buffers import BaseBuffer
from stable_baselines3.common.type_aliases import RolloutBufferSamples

from neuromod_rl.agents.on_policy.buffers import SequenceBatch, SequenceRolloutBuffer


class DeviceSequenceRolloutBuffer(SequenceRolloutBuffer):
    """:class:`SequenceRolloutBuffer` keeping its storage as tensors on ``device`` (see the module docstring).

    Args:
        buffer_size: steps per env per rollout (``n_steps``).
        observation_space: the env's (1-D ``Box``) observation space.
        action_space: the env's action space.
        device: where the tensors live (the model's device).
        gae_lambda: the bias/variance trade-off of Generalized Advantage Estimation.
        gamma: discount factor.
        n_envs: parallel envs.
        seq_len: training sequence length (``None``: the whole rollout, ``bptt_length="episode"``).
    """

    device_values: th.Tensor
    device_returns: th.Tensor

    def reset(self) -> None:
        # not SequenceRolloutBuffer.reset: it allocates numpy arrays
        BaseBuffer.reset(self)
        steps = (self.buffer_size, self.n_envs)

        def zeros(*shape: int) -> th.Tensor:
            return th.zeros((*steps, *shape), dtype=th.float32, device=self.device)

        self.observations = zeros(*self.obs_shape)
        self.actions = zeros(self.action_dim)
        self.rewards = zeros()
        self.episode_starts = zeros()
        self.device_values = zeros()
        self.log_probs = zeros()
        self.advantages = zeros()
        self.device_returns = zeros()
        self.modulations = zeros()
        self.generator_ready = False
        self._states_written = 0

    # SB3's train reads ``values`` and ``returns`` once per update, with numpy, for the explained variance.
    @property
    def values(self) -> np.ndarray:  # type: ignore[override]
        """A host copy of the values ``[n_steps, n_envs]`` (the storage is :attr:`device_values`)."""
        return self.device_values.cpu().numpy()

    @property
    def returns(self) -> np.ndarray:  # type: ignore[override]
        """A host copy of the returns ``[n_steps, n_envs]`` (the storage is :attr:`device_returns`)."""
        return self.device_returns.cpu().numpy()

    def add(  # type: ignore[override]
        self,
        obs: th.Tensor,
        action: th.Tensor,
        reward: th.Tensor,
        episode_start: th.Tensor,
        value: th.Tensor,
        log_prob: th.Tensor,
        modulation: th.Tensor | None = None,
    ) -> None:
        """Store one step of every env; each argument a tensor on the buffer's device, ``n_envs`` rows.

        Args:
            obs: observations the step acted on, ``[n_envs, *obs_shape]``.
            action: actions taken, ``[n_envs, action_dim]`` (or ``[n_envs]``).
            reward: rewards received, ``[n_envs]``.
            episode_start: whether the step began an episode, ``[n_envs]`` (bool or 0/1).
            value: the value estimates, ``[n_envs, 1]`` or ``[n_envs]``.
            log_prob: log-probabilities of the actions, ``[n_envs]``.
            modulation: the external modulation to replay in training (``td_error`` source), ``[n_envs]``.
        """
        if self.full:
            raise RuntimeError(f"the rollout buffer already holds {self.buffer_size} steps: reset() it first")
        n = self.n_envs
        self.observations[self.pos].copy_(obs.reshape(n, *self.obs_shape))
        self.actions[self.pos].copy_(action.reshape(n, self.action_dim))
        self.rewards[self.pos].copy_(reward.reshape(n))
        self.episode_starts[self.pos].copy_(episode_start.reshape(n))
        self.device_values[self.pos].copy_(value.reshape(n))
        self.log_probs[self.pos].copy_(log_prob.reshape(n))
        if modulation is not None:
            self.modulations[self.pos].copy_(modulation.reshape(n))
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full = True

    def compute_returns_and_advantage(self, last_values: th.Tensor, dones: th.Tensor) -> None:  # type: ignore[override]
        """SB3's Generalized Advantage Estimation, the same float32 operations in the same order, on the
        device. ``last_values``: values of the observation after the last step ``[n_envs, 1]``;
        ``dones``: whether that step ended each env's episode ``[n_envs]``."""
        last_values = last_values.detach().reshape(self.n_envs).to(th.float32)
        last_gae_lam: th.Tensor | float = 0.0
        for step in reversed(range(self.buffer_size)):
            if step == self.buffer_size - 1:
                next_non_terminal = 1.0 - dones.to(th.float32)
                next_values = last_values
            else:
                next_non_terminal = 1.0 - self.episode_starts[step + 1]
                next_values = self.device_values[step + 1]
            delta = self.rewards[step] + self.gamma * next_values * next_non_terminal - self.device_values[step]
            last_gae_lam = delta + self.gamma * self.gae_lambda * next_non_terminal * last_gae_lam
            self.advantages[step] = last_gae_lam
        self.device_returns = self.advantages + self.device_values

    def _seq_t(self, tensor: th.Tensor, c: th.Tensor, e: th.Tensor) -> th.Tensor:
        """``[n_steps, n_envs, ...]`` -> the sequences ``(chunk c, env e)`` as ``[T * n_seq, ...]`` (time-major)."""
        rest = tensor.shape[2:]
        chunks = tensor.reshape(self.n_chunks, self.seq_len, self.n_envs, *rest)
        return chunks[c, :, e].transpose(0, 1).reshape(self.seq_len * len(c), *rest)

    def get(self, batch_size: int | None = None) -> Generator[RolloutBufferSamples, None, None]:  # type: ignore[override]
        for ids in self._sequence_batches(batch_size):
            c_np, e_np = np.divmod(ids, self.n_envs)
            c = th.as_tensor(c_np, device=self.device)
            e = th.as_tensor(e_np, device=self.device)
            T, n = self.seq_len, len(ids)
            batch = SequenceBatch(
                self._seq_t(self.observations, c, e),
                self._seq_t(self.episode_starts, c, e).reshape(T, n).bool(),
                self.start_states[c, e],
                self._seq_t(self.modulations, c, e).reshape(T, n),
            )
            yield RolloutBufferSamples(
                batch,  # type: ignore[arg-type]
                self._seq_t(self.actions, c, e),
                self._seq_t(self.device_values, c, e).flatten(),
                self._seq_t(self.log_probs, c, e).flatten(),
                self._seq_t(self.advantages, c, e).flatten(),
                self._seq_t(self.device_returns, c, e).flatten(),
            )
