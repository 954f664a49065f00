"""The backward passes' trace replay, shared by the plastic RNN and LSTM kernels.

The backward pass of either cell walks a K-step segment in reverse and needs the traces entering
each of its steps; the forward pass kept only those entering every K-th step. The rule's inputs
(``h_{t-1}``, the postsynaptic activity, ``M(t)``) were all saved by the forward pass, so the traces
are recovered by replaying the rule alone: no drive, no gates, no modulator head. A column tile's
trace depends on no other tile, so each tile stays in registers for the whole segment: one trace
write per step (the segment buffer) and no barrier.
"""

from __future__ import annotations

import triton
import triton.language as tl

from neuromod_rl.plasticity.triton.kernels import M_NONE, R_RETRO, _hidden_entering, _is_start, _load_traces, _tile
from neuromod_rl.plasticity.triton.kernels_lstm import _rates, _restart, _rule_step


@triton.jit(do_not_specialize=["t_start", "t_end"])
def trace_replay(
    STARTS, H0, H, POST, MS, F, E, SEGF, SEGE,
    ETA, WF, BF, CA, CB, CC, CD, CETA, FINIT,
    t_start, t_end, B, N, post_stride, post_offset, clip,
    RULE: tl.constexpr, MOD: tl.constexpr, HAS_STARTS: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_J: tl.constexpr,
):
    """The traces entering each step ``t_start .. t_end - 1`` (before its reset) into ``SEGF``/``SEGE``
    slot ``t - t_start``, from those entering ``t_start`` in ``F``/``E`` (read only). The postsynaptic
    activity of step ``t`` is ``POST[(t * B + b) * post_stride + post_offset + j]`` (the RNN: ``H``;
    the LSTM: the candidate ``g`` in its saved activity)."""
    b = tl.program_id(0).to(tl.int64)
    rows = tl.arange(0, BLOCK_N)
    eta = tl.load(ETA)
    for j0 in range(0, BLOCK_N, BLOCK_J):
        cols, cmask, offs, mask = _tile(rows, j0, N, BLOCK_J)
        Fb, Eb = _load_traces(F + b * N * N, E + b * N * N, offs, mask, RULE)
        for t in range(t_start, t_end):
            slot = ((t - t_start) * B + b) * N * N
            tl.store(SEGF + slot + offs, Fb, mask=mask)
            if RULE == R_RETRO:
                tl.store(SEGE + slot + offs, Eb, mask=mask)
            if t + 1 < t_end:
                start = _is_start(STARTS, t, b, B, HAS_STARTS)
                hp = tl.where(start, 0.0, _hidden_entering(H0, H, t, 0, b, B, N, rows))
                Fb = _restart(Fb, FINIT, offs, mask, start, RULE)
                Eb = tl.where(start, 0.0, Eb)
                ms = tl.sum(0.0 * hp, axis=0)
                if MOD != M_NONE:
                    ms = tl.load(MS + t * B + b)
                m = _rates(ms, BF, WF, cols, N, MOD)
                post = tl.load(POST + (t * B + b) * post_stride + post_offset + cols, mask=cmask, other=0.0)
                Fb, Eb = _rule_step(Fb, Eb, hp, post, m, eta, clip, CA, CB, CC, CD, CETA, offs, mask, RULE)
