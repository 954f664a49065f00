"""The compatibility path: plastic policies trained by ``sb3_contrib.RecurrentPPO``.

``RecurrentPPO(MlpPlasticPolicy, env, policy_kwargs=...)`` trains: the plastic policies speak
RecurrentPPO's policy protocol (``lstm_actor.num_layers / hidden_size``, the packed state's width:
:class:`PackedStateSpec`; ``forward(obs, lstm_states, episode_starts)``, ``predict_values``,
``evaluate_actions(obs, actions, lstm_states, episode_starts)``) through this mixin, and are
registered as virtual subclasses of :class:`sb3_contrib.common.recurrent.policies.RecurrentActorCriticPolicy`
(the ``isinstance`` check RecurrentPPO makes). Importing ``neuromod_rl.agents`` also adds the plastic policy names to
``sb3_contrib.RecurrentPPO.policy_aliases``: ``RecurrentPPO("MlpPlasticPolicy", env)``.

Packing: the flat plastic state (``D`` floats per env: ``N`` hidden + ``N²`` fast weights for
``core="rnn"``) is split over the LSTM tuple ``(h, c)`` of shape ``[1, n_envs, ceil(D / 2)]``; the
critic tuple repeats it. Memory cost: RecurrentPPO stores both tuples at *every* step, so its
buffer holds ``2 · D`` floats per step and env (``n_steps · n_envs · 2 · D · 4`` bytes: ~68 MB for
``N = 64``, ``n_steps = 256``, 8 envs, against ~133 kB in PlasticPPO's buffer), and it trains with its
own per-step Python loop wherever an episode starts inside a sequence. Use ``PlasticPPO`` for
speed; this path is for code that already uses RecurrentPPO.

Not supported here: ``modulation_source="td_error"`` (RecurrentPPO's buffer cannot store the TD
signal the rollout used; ``"hidden"`` and ``"reward"`` work).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

import sb3_contrib
import torch as th
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates

from neuromod_rl.agents.on_policy.buffers import SequenceBatch

if TYPE_CHECKING:  # annotations only
    from neuromod_rl.plasticity import PlasticState


class PackedStateSpec(NamedTuple):
    """What ``policy.lstm_actor`` reports: RecurrentPPO reads ``num_layers`` and ``hidden_size`` (and
    nothing else of ``lstm_actor``) to allocate its ``(h, c)`` tensors ``[num_layers, n_envs,
    hidden_size]``, so ``hidden_size`` is the width of each packed half, ``ceil(D / 2)``, not the core's.
    ``core_hidden_size`` is the plastic core's width (``policy_kwargs["hidden_size"]``)."""

    num_layers: int
    hidden_size: int
    core_hidden_size: int


def _rnn_states(h: th.Tensor, c: th.Tensor):
    return RNNStates((h, c), (h, c))


class RecurrentPPOAdapterMixin:
    """RecurrentPPO's policy protocol for :class:`~neuromod_rl.agents.on_policy.policies.PlasticActorCriticPolicy`."""

    @property
    def lstm_actor(self) -> PackedStateSpec:
        if self.core_config.modulation_source == "td_error":
            raise ValueError(
                "modulation_source='td_error' is not supported by sb3_contrib.RecurrentPPO (it cannot store "
                "the TD signal the rollout used); use PlasticPPO, or modulation_source='hidden' / 'reward'"
            )
        return PackedStateSpec(1, math.ceil(self.state_dim / 2), self.core_config.hidden_size)

    @property
    def lstm_hidden_state_shape(self) -> tuple[int, int, int]:
        return (1, 1, self.lstm_actor.hidden_size)

    def _pack_rnn(self, state: PlasticState):
        flat = self.pack_state(state)
        half = self.lstm_actor.hidden_size
        flat = th.nn.functional.pad(flat, (0, 2 * half - flat.shape[1]))
        return _rnn_states(flat[:, :half].unsqueeze(0).contiguous(), flat[:, half:].unsqueeze(0).contiguous())

    def _unpack_rnn(self, hc: tuple[th.Tensor, th.Tensor]) -> PlasticState:
        h, c = hc
        flat = th.cat([h[0], c[0]], dim=1)[:, : self.state_dim]
        return self.unpack_state(flat)

    def _recurrent_forward(self, obs, lstm_states, episode_starts, deterministic: bool):
        out = self.step(obs, self._unpack_rnn(lstm_states.pi), episode_starts, deterministic)
        return out.actions, out.values, out.log_prob, self._pack_rnn(out.state)

    def _recurrent_values(self, obs, hc, episode_starts) -> th.Tensor:
        state = self._unpack_rnn(hc)
        n = state.batch_size
        # RecurrentPPO passes every env's episode_starts with a single terminal observation: the
        # value of a terminal observation continues its episode, so no reset applies there.
        if episode_starts is None or episode_starts.numel() != n:
            episode_starts = th.zeros(n, dtype=th.bool, device=state.device)
        return self.step(obs, state, episode_starts, deterministic=True).values

    def _recurrent_evaluate(self, obs, actions, lstm_states, episode_starts):
        state = self._unpack_rnn(lstm_states.pi)
        n_seq = state.batch_size
        T = episode_starts.numel() // n_seq

        # RecurrentPPO lays sequences out batch-major (n_seq, T); scan wants time-major (T, n_seq).
        def time_major(x: th.Tensor) -> th.Tensor:
            return x.reshape(n_seq, T, *x.shape[1:]).transpose(0, 1).reshape(n_seq * T, *x.shape[1:])

        def batch_major(x: th.Tensor) -> th.Tensor:
            return x.reshape(T, n_seq, *x.shape[1:]).transpose(0, 1).reshape(n_seq * T, *x.shape[1:])

        obs_tm = {k: time_major(v) for k, v in obs.items()} if isinstance(obs, dict) else time_major(obs)
        starts = episode_starts.reshape(n_seq, T).transpose(0, 1).bool()
        batch = SequenceBatch(obs_tm, starts, self.pack_state(state), None)
        values, log_prob, entropy = self._evaluate_sequences(batch, time_major(actions))
        return batch_major(values), batch_major(log_prob), batch_major(entropy)


def register_with_recurrent_ppo(policy_class: type, aliases: Mapping[str, type] | None = None) -> None:
    """Make ``isinstance(policy, RecurrentActorCriticPolicy)`` true for ``policy_class`` (ABC register) and
    add ``aliases`` (name -> policy class) to ``sb3_contrib.RecurrentPPO.policy_aliases``, so
    ``RecurrentPPO("MlpPlasticPolicy", env)`` works by name. ``aliases=None``: register the class only.

    Raises:
        ValueError: an alias already names a different policy of RecurrentPPO's (it is never replaced).
    """
    RecurrentActorCriticPolicy.register(policy_class)
    aliases = aliases or {}
    current = sb3_contrib.RecurrentPPO.policy_aliases
    clashes = sorted(k for k, v in aliases.items() if k in current and current[k] is not v)
    if clashes:
        raise ValueError(
            f"sb3_contrib.RecurrentPPO already has the policy alias(es) {clashes} for other policies; "
            "register the plastic policy under another name"
        )
    # a new dict on the class: subclasses declaring their own aliases (ours included) stay as they are
    sb3_contrib.RecurrentPPO.policy_aliases = {**current, **aliases}
