"""sb3-contrib's RecurrentPPO with the LSTM run over whole sequences in training: the same algorithm, faster.

``RecurrentActorCriticPolicy._process_sequence`` runs the LSTM over a padded minibatch in one call only
when no sequence starts an episode; otherwise it steps the LSTM one time step at a time in Python, to
reset the state where an episode starts. RecurrentPPO's rollout buffer cuts sequences at episode starts,
so a reset can only fall on a sequence's *first* step, and nearly every minibatch has one: training runs
the per-step loop almost always (on the crippled-HalfCheetah config, 200 LSTM calls forward and back per
sequence: a 16,000-step run took 42 s with sb3-contrib's class and 10 s with this one). Zeroing the
initial state of the sequences that start an episode and then running the LSTM over the whole sequence
computes the same thing, since the loop's reset ``(1 - episode_start) * state`` is then a no-op at
every later step. Anything else (an episode start later in a sequence, which the buffer never
produces, or one-step data collection) takes sb3-contrib's own path.

Outputs and gradients agree with sb3-contrib's to float rounding (``tests/experiment/test_recurrent_ppo.py``),
which a training run amplifies as any change of summation order does, so two runs of the same seed end
close, not bit-identical; saved models load with either class. ``neuromod-rl bench sb3`` times both.
"""

from __future__ import annotations

from typing import ClassVar

import torch as th
from sb3_contrib import RecurrentPPO as ContribRecurrentPPO
from sb3_contrib.common.recurrent.policies import (
    RecurrentActorCriticCnnPolicy,
    RecurrentActorCriticPolicy,
    RecurrentMultiInputActorCriticPolicy,
)
from stable_baselines3.common.policies import BasePolicy


class _WholeSequenceLSTM:
    """Policy mixin: a reset on a sequence's first step only no longer forces the per-step loop."""

    @staticmethod
    def _process_sequence(
        features: th.Tensor,
        lstm_states: tuple[th.Tensor, th.Tensor],
        episode_starts: th.Tensor,
        lstm: th.nn.LSTM,
    ) -> tuple[th.Tensor, tuple[th.Tensor, th.Tensor]]:
        n_seq = lstm_states[0].shape[1]
        starts = episode_starts.reshape((n_seq, -1)).swapaxes(0, 1)  # (time, n_seq)
        if starts.shape[0] == 1 or not th.all(starts[1:] == 0.0):
            return RecurrentActorCriticPolicy._process_sequence(features, lstm_states, episode_starts, lstm)
        keep = (1.0 - starts[0]).view(1, n_seq, 1)
        sequence = features.reshape((n_seq, -1, lstm.input_size)).swapaxes(0, 1)
        output, states = lstm(sequence, (keep * lstm_states[0], keep * lstm_states[1]))
        return th.flatten(output.transpose(0, 1), start_dim=0, end_dim=1), states


class MlpLstmPolicy(_WholeSequenceLSTM, RecurrentActorCriticPolicy):
    """sb3-contrib's ``MlpLstmPolicy`` (same arguments) with whole-sequence LSTM training."""


class CnnLstmPolicy(_WholeSequenceLSTM, RecurrentActorCriticCnnPolicy):
    """sb3-contrib's ``CnnLstmPolicy`` (same arguments) with whole-sequence LSTM training."""


class MultiInputLstmPolicy(_WholeSequenceLSTM, RecurrentMultiInputActorCriticPolicy):
    """sb3-contrib's ``MultiInputLstmPolicy`` (same arguments) with whole-sequence LSTM training."""


class RecurrentPPO(ContribRecurrentPPO):
    """``sb3_contrib.RecurrentPPO`` (every argument and default the same) whose policy aliases train the
    LSTM over whole sequences; see the module docstring. A policy class passed directly is used as is."""

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpLstmPolicy": MlpLstmPolicy,
        "CnnLstmPolicy": CnnLstmPolicy,
        "MultiInputLstmPolicy": MultiInputLstmPolicy,
    }
