"""Sequence replay buffers: SB3's per-step transitions plus the plastic state once per L steps.

SB3's :class:`~stable_baselines3.common.buffers.ReplayBuffer` keeps ``[buffer_size, n_envs]`` arrays of
observations, next observations, actions, rewards, dones and time-outs, as a ring. These subclasses
keep all of that (SB3's own ``add`` stores it) and add:

* one bool per step, ``episode_starts`` (the step's observation opens an episode), so sampled
  sequences reset the plastic state where an episode starts inside them (``scan``'s
  ``episode_starts``);
* the flat plastic state (``PlasticState.flat()``) held *before* every L-th step of each env, where
  a stored sequence starts -- ``buffer_size / L`` states, never one per step. With
  ``start_state="zero"`` no state is stored: every sequence starts from the episode-start state
  (R2D2's "zero state" strategy);
* :meth:`sample`, which draws whole sequences: ``burn_in`` (K) steps that only refresh the stored
  state (run without gradient, as in R2D2) followed by ``sequence_length`` (L) trained steps. The
  window of the sequence stored at step ``c*L`` is ``[c*L, c*L + K + L)``, so the trained steps of the
  windows ``c = 0, 1, ...`` tile the buffer once.

A sampled batch is SB3's ``ReplayBufferSamples``: actions, rewards and dones of the L trained steps of
``n = batch_size // L`` sequences, time-major (``[L * n, ...]``, index ``t * n + s``), and
``observations`` / ``next_observations`` as two :class:`SequenceView` of one :class:`SequenceSample`.
The plastic actor and critic run the sample's sequence through ``scan`` once and read their latents at
the trained steps (``observations``) or one step later (``next_observations``), so SB3's ``SAC.train``
and ``TD3.train`` run unchanged.

Next observations inside a sequence: where an episode ends at step ``t`` (terminated *or* truncated),
the observation that follows in the buffer opens the next episode, while the target needs the last
observation of the ending one (a time-limit truncation is bootstrapped from it). The sample therefore
inserts that next observation into the sequence right after step ``t`` (not a reset), and the
following episode start comes after it; sequences are padded to the longest one. Every trained step's
next-observation latent is then one position after its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import DictReplayBufferSamples, ReplayBufferSamples

START_STATES = ("stored", "zero")


@dataclass(frozen=True)
class SequenceSample:
    """The observation side of one sampled batch of sequences (what plastic actors and critics read).

    Attributes:
        observations: ``[T, n, *obs_shape]`` (or a dict of such), the burn-in and trained steps with the
            inserted next observations, padded to ``T`` positions.
        episode_starts: bool ``[T, n]``; the state is reset before position ``t`` where True.
        start_state: flat plastic state before position 0, ``[n, D]``, or ``None`` (the episode-start
            state, ``start_state="zero"``).
        burn_in: the first ``burn_in`` positions only refresh the state (no gradient).
        current: long ``[L, n]``, the position of each trained step.
        next: long ``[L, n]``, the position of each trained step's next observation.
    """

    observations: th.Tensor | dict[str, th.Tensor]
    episode_starts: th.Tensor
    start_state: th.Tensor | None
    burn_in: int
    current: th.Tensor
    next: th.Tensor
    #: core outputs already computed for this sample, by network (see ``PlasticEncoder.forward``)
    cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def seq_len(self) -> int:
        """L, the trained steps per sequence."""
        return self.current.shape[0]

    @property
    def n_seq(self) -> int:
        return self.current.shape[1]

    @property
    def total_len(self) -> int:
        """T, positions per sequence (burn-in, trained steps, inserted next observations, padding)."""
        return self.episode_starts.shape[0]


class SequenceView(NamedTuple):
    """The trained steps of a :class:`SequenceSample` (``which="current"``) or their next observations
    (``which="next"``): what ``replay_data.observations`` / ``.next_observations`` hold."""

    sample: SequenceSample
    which: str

    @property
    def positions(self) -> th.Tensor:
        return self.sample.current if self.which == "current" else self.sample.next


def check_sequence_settings(sequence_length: Any, burn_in: Any, start_state: Any) -> tuple[int, int, str]:
    """Validated ``(sequence_length, burn_in, start_state)``, with errors that say what is allowed."""
    if isinstance(sequence_length, bool) or not isinstance(sequence_length, int | np.integer) or sequence_length < 1:
        raise ValueError(
            f"sequence_length must be a positive int (trained steps per sequence), got {sequence_length!r}"
        )
    if isinstance(burn_in, bool) or not isinstance(burn_in, int | np.integer) or burn_in < 0:
        raise ValueError(f"burn_in must be an int >= 0 (steps that refresh the stored state), got {burn_in!r}")
    if start_state not in START_STATES:
        raise ValueError(f"start_state must be one of {START_STATES}, got {start_state!r}")
    return int(sequence_length), int(burn_in), start_state


class _SequenceStorage:
    """What the two buffers add to SB3's: episode starts, states every L steps, sequence sampling."""

    buffer_size: int
    n_envs: int
    pos: int
    full: bool
    device: th.device

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        sequence_length: int = 32,
        burn_in: int = 0,
        start_state: str = "stored",
    ):
        L, K, mode = check_sequence_settings(sequence_length, burn_in, start_state)
        if optimize_memory_usage:
            raise ValueError(
                "optimize_memory_usage=True is not supported by the sequence replay buffer (it keeps the next "
                "observation of every step to bootstrap episodes cut inside a sequence); drop it"
            )
        # whole chunks of L steps per env, so that stored sequences stay aligned when the ring wraps
        per_env = (max(int(buffer_size) // n_envs, 1) // L) * L
        if per_env < K + L:
            raise ValueError(
                f"buffer_size={buffer_size} holds {per_env} steps per env ({n_envs} envs), fewer than one sampled "
                f"sequence (burn_in + sequence_length = {K + L}); raise buffer_size"
            )
        # cooperative: SB3's buffer class comes next in the MRO
        super().__init__(per_env * n_envs, observation_space, action_space, device, n_envs,  # type: ignore[call-arg]
                         optimize_memory_usage, handle_timeout_termination)
        self.sequence_length, self.burn_in, self.start_state = L, K, mode
        self.n_chunks = self.buffer_size // L
        self.episode_starts = np.zeros((self.buffer_size, self.n_envs), dtype=bool)
        self.start_states: np.ndarray | None = None  # [n_chunks, n_envs, D], allocated at the first state
        self.states_stored = 0  # how many [n_envs, D] states were written (tests, benchmark)
        # the plastic configuration of the model filling the buffer (set by PlasticSAC / PlasticTD3): the
        # stored states fit only a core like it, which loading a saved buffer checks
        self.plastic_config: dict[str, Any] | None = None
        self._staged: tuple[np.ndarray, np.ndarray | None] | None = None

    # -- writing ------------------------------------------------------------------------------------
    def stage(self, episode_starts: np.ndarray, state: th.Tensor | np.ndarray | None) -> None:
        """Give the next :meth:`add` what SB3's signature has no room for: which envs start an episode at
        this step, and the flat plastic state ``[n_envs, D]`` held *before* the step (before its reset:
        ``scan`` applies ``episode_starts`` itself). The state is only kept every L steps."""
        state_np = None
        if state is not None:
            state_np = state.detach().cpu().numpy() if isinstance(state, th.Tensor) else np.asarray(state)
        self._staged = (np.asarray(episode_starts, dtype=bool).reshape(self.n_envs), state_np)

    def add(self, *args, **kwargs) -> None:  # type: ignore[override]
        if self._staged is None:
            raise RuntimeError(
                "the sequence replay buffer needs stage(episode_starts, state) before each add(); PlasticSAC and "
                "PlasticTD3 do this in _store_transition"
            )
        starts, state = self._staged
        self._staged = None
        self.episode_starts[self.pos] = starts
        if self.pos % self.sequence_length == 0 and self.start_state == "stored":
            if state is None:
                raise ValueError(f"step {self.pos} starts a stored sequence: stage() needs the plastic state")
            if self.start_states is None:
                self.start_states = np.zeros((self.n_chunks, self.n_envs, state.shape[-1]), dtype=np.float32)
            self.start_states[self.pos // self.sequence_length] = state
            self.states_stored += 1
        super().add(*args, **kwargs)  # type: ignore[misc]

    # -- memory ---------------------------------------------------------------------------------------
    def state_nbytes(self) -> int:
        """Bytes held for plastic states (one ``[n_envs, D]`` per L steps)."""
        return 0 if self.start_states is None else int(self.start_states.nbytes)

    def nbytes(self) -> int:
        """Bytes of every array of the buffer (SB3's transition arrays, episode starts, states)."""
        total = self.episode_starts.nbytes + self.state_nbytes()
        for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
            value = getattr(self, name, None)
            if isinstance(value, dict):
                total += sum(v.nbytes for v in value.values())
            elif value is not None:
                total += value.nbytes
        return int(total)

    # -- sampling -------------------------------------------------------------------------------------
    @property
    def window(self) -> int:
        """Buffer steps one sampled sequence spans (burn-in and trained steps)."""
        return self.burn_in + self.sequence_length

    def _valid_chunks(self) -> np.ndarray:
        """Chunks whose window is written and contiguous in time (not across the write position)."""
        starts = np.arange(self.n_chunks) * self.sequence_length
        if not self.full:
            return np.nonzero(starts + self.window <= self.pos)[0]
        age = (starts - self.pos) % self.buffer_size  # 0 = the oldest step in the ring
        return np.nonzero(age + self.window <= self.buffer_size)[0]

    def can_sample(self) -> bool:
        """True once at least one whole sequence (burn-in and trained steps) is stored."""
        return len(self._valid_chunks()) > 0

    def sample(self, batch_size: int, env=None):  # type: ignore[override]
        """``batch_size // sequence_length`` (at least 1) whole sequences, drawn uniformly with replacement
        among the stored (chunk, env) pairs whose window is complete."""
        chunks = self._valid_chunks()
        if len(chunks) == 0:
            raise RuntimeError(
                f"the sequence replay buffer holds no whole sequence yet (needs {self.window} steps per env, "
                f"has {self.buffer_size if self.full else self.pos}); collect more steps before sampling"
            )
        n = max(1, batch_size // self.sequence_length)
        # SB3 seeds the global numpy generator (set_random_seed): same seed, same batches.
        pick = np.random.randint(0, len(chunks) * self.n_envs, size=n)  # noqa: NPY002
        return self._sequences(chunks[pick // self.n_envs], pick % self.n_envs, env)

    def _sequences(self, chunks: np.ndarray, envs: np.ndarray, env=None):
        K, L, W, n = self.burn_in, self.sequence_length, self.window, len(chunks)
        idx = (chunks[None, :] * L + np.arange(W)[:, None]) % self.buffer_size  # [W, n] buffer rows
        e = np.broadcast_to(envs[None, :], idx.shape)
        dones = self.dones[idx, e] > 0
        # a next observation is inserted after every trained step that ends an episode, or is followed by
        # an episode start (a cut trajectory), and after the last step
        follows_start = np.zeros_like(dones)
        follows_start[:-1] = self.episode_starts[idx[1:], e[1:]]
        insert = (dones | follows_start) & (np.arange(W)[:, None] >= K)
        insert[-1] = True
        shift = np.concatenate([np.zeros((1, n), dtype=np.int64), np.cumsum(insert, axis=0)[:-1]])
        position = np.arange(W)[:, None] + shift  # [W, n]
        T = W + int(insert.sum(axis=0).max())
        cols = np.broadcast_to(np.arange(n)[None, :], idx.shape)
        ins_pos, ins_col = position[insert] + 1, cols[insert]

        def assemble(obs: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
            out = np.zeros((T, n, *obs.shape[2:]), dtype=obs.dtype)
            out[position, cols] = obs[idx, e]
            out[ins_pos, ins_col] = next_obs[idx[insert], e[insert]]
            return out

        if isinstance(self.observations, dict):
            observations = {k: assemble(self.observations[k], self.next_observations[k]) for k in self.observations}
        else:
            observations = assemble(self.observations, self.next_observations)
        observations = self._normalize_obs(observations, env)  # type: ignore[attr-defined]
        starts = np.zeros((T, n), dtype=bool)
        starts[position, cols] = self.episode_starts[idx, e]
        start_state = None
        if self.start_state == "stored":
            start_state = self.to_torch(self.start_states[chunks, envs])  # type: ignore[index, attr-defined]
        trained, te = idx[K:], e[K:]
        sample = SequenceSample(
            observations={k: self.to_torch(v) for k, v in observations.items()}  # type: ignore[attr-defined]
            if isinstance(observations, dict)
            else self.to_torch(observations),  # type: ignore[attr-defined]
            episode_starts=self.to_torch(starts),  # type: ignore[attr-defined]
            start_state=start_state,
            burn_in=K,
            current=th.as_tensor(position[K:], device=self.device),
            next=th.as_tensor(position[K:] + 1, device=self.device),
        )
        # SB3's convention: only terminations stop the bootstrap, time-outs do not
        done = self.dones[trained, te] * (1 - self.timeouts[trained, te])
        reward = self._normalize_reward(self.rewards[trained, te].reshape(-1, 1), env)  # type: ignore[attr-defined]
        fields = (
            self.to_torch(self.actions[trained, te].reshape(L * n, -1)),  # type: ignore[attr-defined]
            self.to_torch(done.reshape(-1, 1)),  # type: ignore[attr-defined]
            self.to_torch(reward),  # type: ignore[attr-defined]
        )
        samples_cls = DictReplayBufferSamples if isinstance(self.observations, dict) else ReplayBufferSamples
        return samples_cls(SequenceView(sample, "current"), fields[0], SequenceView(sample, "next"),  # type: ignore[arg-type]
                           fields[1], fields[2])


class SequenceReplayBuffer(_SequenceStorage, ReplayBuffer):
    """:class:`ReplayBuffer` for plastic off-policy agents (see the module docstring). Other arguments as
    SB3's :class:`ReplayBuffer` (``optimize_memory_usage`` must stay False). The per-env capacity is rounded
    down to a multiple of L.

    Args:
        sequence_length: L, trained steps per sampled sequence; a state is stored every L steps per env.
        burn_in: K, steps before the trained ones that only refresh the stored state (no gradient).
        start_state: ``"stored"`` (the state the agent had when the sequence was collected) or ``"zero"``
            (the episode-start state; nothing stored).
    """


class SequenceDictReplayBuffer(_SequenceStorage, DictReplayBuffer):
    """:class:`DictReplayBuffer` for plastic off-policy agents with Dict observations (see
    :class:`SequenceReplayBuffer`)."""
