"""Sequence rollout buffers: SB3's per-step storage plus the plastic state at sequence starts only.

SB3's :class:`~stable_baselines3.common.buffers.RolloutBuffer` keeps ``[n_steps, n_envs]`` arrays of
observations, actions, rewards, values, log-probs and episode starts, and computes GAE. These
subclasses keep all of that (``add``, ``reset``, ``compute_returns_and_advantage`` are SB3's) and add:

* the flattened plastic state (``PlasticState.flat()``, ``[n_envs, D]``) where a training sequence
  starts -- once per rollout with ``bptt_length="episode"``, every ``bptt_length`` steps otherwise
  -- never per step. ``sb3_contrib.RecurrentPPO`` stores four ``[n_layers, n_envs, H]`` tensors at
  *every* step; here the state memory is ``n_steps / seq_len`` states per env (one per env for
  ``"episode"``, whatever ``n_steps``);
* one float per step of external modulation (the TD error the rollout used, ``modulation_source=
  "td_error"``) so training replays exactly the signal the actions were taken with;
* :meth:`get`, yielding minibatches of *whole sequences*, time-major: every per-step tensor of a
  minibatch is ``[T * n_seq, ...]`` with index ``t * n_seq + s``, and the observations come wrapped
  in a :class:`SequenceBatch` that carries the start states and episode starts, so SB3's own
  ``PPO.train`` / ``A2C.train`` run unchanged and the policy runs each minibatch through ``scan``.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch as th
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.type_aliases import DictRolloutBufferSamples, RolloutBufferSamples


@dataclass(frozen=True)
class SequenceBatch:
    """The observation side of one minibatch of whole sequences (what ``evaluate_actions`` receives).

    Attributes:
        observations: ``[T * n_seq, *obs_shape]`` (or a dict of such), time-major.
        episode_starts: bool ``[T, n_seq]``; the state is reset before step ``t`` where True.
        start_state: flat plastic state before step 0 of each sequence, ``[n_seq, D]``.
        modulation: stored external modulation ``[T, n_seq]`` (``td_error`` source) or ``None``.
    """

    observations: th.Tensor | dict[str, th.Tensor]
    episode_starts: th.Tensor
    start_state: th.Tensor
    modulation: th.Tensor | None

    @property
    def seq_len(self) -> int:
        return self.episode_starts.shape[0]

    @property
    def n_seq(self) -> int:
        return self.episode_starts.shape[1]


class _SequenceStorage:
    """What the two buffers add to SB3's: chunk-start states, stored modulation, sequence ``get``."""

    seq_len: int
    buffer_size: int
    n_envs: int

    def __init__(
        self,
        buffer_size,
        observation_space,
        action_space,
        device="auto",
        gae_lambda=1.0,
        gamma=0.99,
        n_envs=1,
        seq_len: int | None = None,
    ):
        # cooperative: the SB3 buffer class comes next in the MRO
        super().__init__(buffer_size, observation_space, action_space, device, gae_lambda, gamma, n_envs)  # type: ignore[call-arg]
        self._init_sequences(seq_len)

    def reset(self) -> None:
        super().reset()
        self._reset_sequences()

    def add(self, *args, modulation: th.Tensor | None = None, **kwargs) -> None:  # type: ignore[override]
        self._store_modulation(modulation)
        super().add(*args, **kwargs)

    def _init_sequences(self, seq_len: int | None) -> None:
        seq_len = self.buffer_size if seq_len is None else int(seq_len)
        if seq_len < 1 or self.buffer_size % seq_len:
            raise ValueError(
                f"bptt_length={seq_len} must divide n_steps={self.buffer_size} (the rollout is cut in whole "
                "training sequences); choose n_steps as a multiple of bptt_length, or bptt_length='episode'"
            )
        self.seq_len = seq_len
        self.n_chunks = self.buffer_size // seq_len
        self.start_states: th.Tensor | None = None  # [n_chunks, n_envs, D], allocated on the first state

    def _reset_sequences(self) -> None:
        self.modulations = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        self._states_written = 0

    def add_start_state(self, flat_state: th.Tensor) -> None:
        """Store the state ``[n_envs, D]`` held *before* the current step (at ``pos % seq_len == 0``)."""
        if self.pos % self.seq_len:
            raise RuntimeError(f"a sequence starts every {self.seq_len} steps; step {self.pos} is not a start")
        if self.start_states is None or self.start_states.shape[-1] != flat_state.shape[-1]:
            self.start_states = th.zeros((self.n_chunks, self.n_envs, flat_state.shape[-1]), device=self.device)
        self.start_states[self.pos // self.seq_len].copy_(flat_state)
        self._states_written += 1

    def state_nbytes(self) -> int:
        """Bytes held for recurrent state (the figure the benchmark reports)."""
        return 0 if self.start_states is None else self.start_states.numel() * self.start_states.element_size()

    def _store_modulation(self, modulation: th.Tensor | None) -> None:
        if modulation is not None:
            self.modulations[self.pos] = modulation.reshape(self.n_envs).cpu().numpy()

    def _sequence_batches(self, batch_size: int | None) -> Generator[tuple[np.ndarray, dict], None, None]:
        if not self.full:
            raise RuntimeError("the rollout buffer is not full yet: collect a whole rollout before training")
        if self._states_written != self.n_chunks:
            raise RuntimeError(f"{self._states_written} sequence-start states stored, {self.n_chunks} expected")
        n_total = self.n_chunks * self.n_envs
        per_batch = n_total if batch_size is None else max(1, batch_size // self.seq_len)
        # SB3 seeds the global numpy generator (set_random_seed): same seed, same minibatches.
        ids = np.random.permutation(n_total)  # noqa: NPY002
        for start in range(0, n_total, per_batch):
            yield ids[start : start + per_batch]

    def _seq(self, array: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """``[n_steps, n_envs, ...]`` -> the sequences ``ids`` as ``[T * n_seq, ...]`` (time-major)."""
        chunks = array.reshape(self.n_chunks, self.seq_len, self.n_envs, *array.shape[2:])
        c, e = np.divmod(ids, self.n_envs)
        return chunks[c, :, e].swapaxes(0, 1).reshape(self.seq_len * len(ids), *array.shape[2:])

    def _batch_fields(self, ids: np.ndarray, observations) -> tuple[SequenceBatch, tuple[th.Tensor, ...]]:
        c, e = np.divmod(ids, self.n_envs)
        T, n = self.seq_len, len(ids)
        starts = self.to_torch(self._seq(self.episode_starts, ids).reshape(T, n)).bool()
        modulation = self.to_torch(self._seq(self.modulations, ids).reshape(T, n))
        batch = SequenceBatch(observations, starts, self.start_states[th.as_tensor(c), th.as_tensor(e)], modulation)
        per_step = tuple(
            self.to_torch(self._seq(a, ids).reshape(T * n, *a.shape[2:]))
            for a in (self.actions, self.values, self.log_probs, self.advantages, self.returns)
        )
        values, log_probs, advantages, returns = (t.flatten() for t in per_step[1:])
        return batch, (per_step[0], values, log_probs, advantages, returns)


class SequenceRolloutBuffer(_SequenceStorage, RolloutBuffer):
    """:class:`RolloutBuffer` for plastic policies (see the module docstring). Other arguments as SB3's
    :class:`RolloutBuffer`.

    Args:
        seq_len: training sequence length (``None``: the whole rollout, ``bptt_length="episode"``).
    """

    def get(self, batch_size: int | None = None) -> Generator[RolloutBufferSamples, None, None]:  # type: ignore[override]
        for ids in self._sequence_batches(batch_size):
            obs = self.to_torch(self._seq(self.observations, ids))
            batch, fields = self._batch_fields(ids, obs)
            yield RolloutBufferSamples(batch, *fields)  # type: ignore[arg-type]


class SequenceDictRolloutBuffer(_SequenceStorage, DictRolloutBuffer):
    """:class:`DictRolloutBuffer` for plastic policies with Dict observations (see the module docstring)."""

    def get(self, batch_size: int | None = None) -> Generator[DictRolloutBufferSamples, None, None]:  # type: ignore[override]
        for ids in self._sequence_batches(batch_size):
            obs = {k: self.to_torch(self._seq(v, ids)) for k, v in self.observations.items()}
            batch, fields = self._batch_fields(ids, obs)
            yield DictRolloutBufferSamples(batch, *fields)  # type: ignore[arg-type]
