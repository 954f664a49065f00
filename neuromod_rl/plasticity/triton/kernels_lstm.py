"""Triton kernels of the plastic LSTM cell: forward, trace replay, backward; one program per sequence.

The cell (:class:`~neuromod_rl.plasticity.cells.PlasticLSTMCell`): ``z = xp_t + h_{t-1} w`` for the
four gate blocks ``i, f, g, o`` (``w`` is ``[N, 4N]``), the candidate block adds the plastic drive
``h_{t-1} (alpha ⊙ F)``; ``c_t = σ(f) c_{t-1} + σ(i) tanh(g)``, ``h_t = σ(o) tanh(c_t)``; ``M(t)``
from ``h_t``; the rule updates ``F`` with ``pre = h_{t-1}``, ``post = g_t`` (the candidate).

Layout as :mod:`.kernels` (batch ``b`` = the program id): ``XP [T, B, 4N]``, ``H [T, B, N]``, the
per-step activity ``AUX [T, B, 5N]`` holding ``c, i, f, g, o`` (the gates after their nonlinearity,
as the fused engine saves them), traces ``[B, N, N]``. Every gate of a column ``j`` depends only on
column ``j`` of the four blocks, so one ``N x BLOCK_J`` pass computes the whole cell for a column
tile; the trace update of step ``t`` is deferred to step ``t + 1``'s pass, as in :mod:`.kernels`.

Rules: those of :mod:`.kernels` plus ``abcd`` (Najarro & Risi 2020), whose per-synapse coefficients
``A, B, C, D, eta`` are read tile by tile and whose trace restarts from the rule's ``F0`` at an
episode start (:func:`_rule_step`, :func:`_abcd_backward`). ABCD's ``max_norm`` divides by the
largest ``|F|`` of the whole matrix, a reduction across tiles these kernels do not make: such cells
run on the fused engine.
"""

from __future__ import annotations

import triton
import triton.language as tl

from neuromod_rl.plasticity.fused.spec import RULE_CODES
from neuromod_rl.plasticity.rules import ABCD
from neuromod_rl.plasticity.triton.kernels import (
    M_NONE,
    R_RETRO,
    _hidden_entering,
    _is_start,
    _load_traces,
    _modulation_cols,
    _modulation_grad_cols,
    _modulator,
    _modulator_backward,
    _step_entering,
    _store_traces,
    _tanh,
    _tile,
    _trace_step,
    _trace_step_backward,
)

R_ABCD = tl.constexpr(RULE_CODES[ABCD][0])
# slots of a step's activity in AUX (the fused engine's order)
X_C = tl.constexpr(0)
X_I = tl.constexpr(1)
X_F = tl.constexpr(2)
X_G = tl.constexpr(3)
X_O = tl.constexpr(4)


@triton.jit
def _sigmoid(a):
    """σ from one exp of a non-positive number (never overflows)."""
    e = tl.exp(-tl.abs(a))
    return tl.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@triton.jit
def _rates(ms, BF, WF, cols, N, MOD: tl.constexpr):
    """The modulation of each column: ``M(t)`` or its fan-out; 1 without a modulator (ABCD's default)."""
    if MOD == M_NONE:
        return 1.0 + 0.0 * cols.to(ms.dtype)
    else:
        return _modulation_cols(ms, BF, WF, cols, N, MOD)


@triton.jit
def _aux(AUX, t, b, B, N, slot, cols, cmask):
    """Columns ``cols`` of one saved activity (``slot``: c, i, f, g or o) of step ``t``."""
    return tl.load(AUX + (t * B + b) * 5 * N + slot * N + cols, mask=cmask, other=0.0)


@triton.jit
def _restart(Fb, FINIT, offs, mask, start, RULE: tl.constexpr):
    """The trace entering a step after its reset: the rule's ``F0`` (ABCD) or zero at an episode start."""
    if RULE == R_ABCD:
        return tl.where(start, tl.load(FINIT + offs, mask=mask, other=0.0), Fb)
    else:
        return tl.where(start, 0.0, Fb)


@triton.jit
def _rule_step(Fb, Eb, hp, post, m, eta, clip, CA, CB, CC, CD, CETA, offs, mask, RULE: tl.constexpr):
    """One rule step on a tile (:func:`.kernels._trace_step`, plus ABCD:
    ``F + m eta ⊙ (A x y + B x + C y + D)`` with ``x = hp`` (rows), ``y = post`` (columns))."""
    if RULE == R_ABCD:
        x = hp[:, None]
        y = post[None, :]
        s = tl.load(CA + offs, mask=mask, other=0.0) * x * y + tl.load(CB + offs, mask=mask, other=0.0) * x
        s += tl.load(CC + offs, mask=mask, other=0.0) * y + tl.load(CD + offs, mask=mask, other=0.0)
        return Fb + m[None, :] * tl.load(CETA + offs, mask=mask, other=0.0) * s, Eb
    else:
        return _trace_step(Fb, Eb, hp, post, m, eta, clip, RULE)


@triton.jit
def _abcd_backward(dF, hp, post, m, CA, CB, CC, CD, CETA, GABCD, b, N, offs, mask):
    """Backward of ABCD's step on a tile. ``dF`` passes through unchanged (the update is additive);
    adds this step's gradients of ``eta, A, B, C, D`` into the sequence's accumulators ``GABCD[b]``
    (``[5, N, N]`` in that order) and returns ``(d hp (rows), d post (columns), dM per column)``."""
    x = hp[:, None]
    y = post[None, :]
    a = tl.load(CA + offs, mask=mask, other=0.0)
    bb = tl.load(CB + offs, mask=mask, other=0.0)
    cc = tl.load(CC + offs, mask=mask, other=0.0)
    et = tl.load(CETA + offs, mask=mask, other=0.0)
    s = a * x * y + bb * x + cc * y + tl.load(CD + offs, mask=mask, other=0.0)
    q = dF * m[None, :]
    qe = q * et
    G = GABCD + b * 5 * N * N + offs
    tl.store(G, tl.load(G, mask=mask, other=0.0) + q * s, mask=mask)
    tl.store(G + N * N, tl.load(G + N * N, mask=mask, other=0.0) + qe * x * y, mask=mask)
    tl.store(G + 2 * N * N, tl.load(G + 2 * N * N, mask=mask, other=0.0) + qe * x, mask=mask)
    tl.store(G + 3 * N * N, tl.load(G + 3 * N * N, mask=mask, other=0.0) + qe * y, mask=mask)
    tl.store(G + 4 * N * N, tl.load(G + 4 * N * N, mask=mask, other=0.0) + qe, mask=mask)
    return tl.sum(qe * (a * y + bb), axis=1), tl.sum(qe * (a * x + cc), axis=0), tl.sum(dF * et * s, axis=0)


@triton.jit
def _gate_drive(hp, W, offs_w, mask, gate, N):
    """Columns of ``hp w`` for one gate block (``w`` is ``[N, 4N]``; ``offs_w`` its column-0 offsets)."""
    return tl.sum(hp[:, None] * tl.load(W + offs_w + gate * N, mask=mask, other=0.0), axis=0)


# --- forward -----------------------------------------------------------------------------------------
@triton.jit(do_not_specialize=["T", "K"])
def plastic_lstm_forward(
    XP, EXT, STARTS, H0, C0, F, E, H, AUX, MS, FCK, ECK,
    W, ALPHA, WM, BM, WF, BF, ETA, CA, CB, CC, CD, CETA, FINIT,
    T, K, B, N, clip,
    RULE: tl.constexpr, MOD: tl.constexpr, EXTERNAL: tl.constexpr, ALPHA_FULL: tl.constexpr,
    HAS_STARTS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr,
):
    """Steps ``0 .. T - 1`` of sequence ``b``. ``F``/``E`` hold the traces entering step 0 and leave
    holding the final ones; the traces entering every K-th step (before its reset) go to
    ``FCK``/``ECK`` slot ``t // K``. Writes ``H``, ``AUX`` (c, i, f, g, o) and the scalar ``MS``."""
    b = tl.program_id(0).to(tl.int64)
    rows = tl.arange(0, BLOCK_N)
    rmask = rows < N
    Fp = F + b * N * N
    Ep = E + b * N * N
    eta = tl.load(ETA)
    hp_prev = tl.zeros([BLOCK_N], dtype=H.dtype.element_ty)
    ms_prev = tl.sum(hp_prev, axis=0)
    for t in range(0, T):
        start = _is_start(STARTS, t, b, B, HAS_STARTS)
        hp = tl.where(start, 0.0, _hidden_entering(H0, H, t, 0, b, B, N, rows))
        for j0 in range(0, BLOCK_N, BLOCK_J):
            cols, cmask, offs, mask = _tile(rows, j0, N, BLOCK_J)
            offs_w = rows[:, None] * (4 * N) + cols[None, :]
            Fb, Eb = _load_traces(Fp, Ep, offs, mask, RULE)
            if t > 0:  # step t-1's update, deferred until M(t-1) was known
                post = _aux(AUX, t - 1, b, B, N, X_G, cols, cmask)
                m = _rates(ms_prev, BF, WF, cols, N, MOD)
                Fb, Eb = _rule_step(Fb, Eb, hp_prev, post, m, eta, clip, CA, CB, CC, CD, CETA, offs, mask, RULE)
            if t % K == 0:
                tl.store(FCK + ((t // K) * B + b) * N * N + offs, Fb, mask=mask)
                if RULE == R_RETRO:
                    tl.store(ECK + ((t // K) * B + b) * N * N + offs, Eb, mask=mask)
            Fb = _restart(Fb, FINIT, offs, mask, start, RULE)
            xrow = XP + (t * B + b) * 4 * N + cols
            zi = tl.load(xrow, mask=cmask, other=0.0).to(Fb.dtype) + _gate_drive(hp, W, offs_w, mask, 0, N)
            zf = tl.load(xrow + N, mask=cmask, other=0.0).to(Fb.dtype) + _gate_drive(hp, W, offs_w, mask, 1, N)
            zg = tl.load(xrow + 2 * N, mask=cmask, other=0.0).to(Fb.dtype) + _gate_drive(hp, W, offs_w, mask, 2, N)
            zo = tl.load(xrow + 3 * N, mask=cmask, other=0.0).to(Fb.dtype) + _gate_drive(hp, W, offs_w, mask, 3, N)
            if ALPHA_FULL:
                zg += tl.sum(hp[:, None] * tl.load(ALPHA + offs, mask=mask, other=0.0) * Fb, axis=0)
            else:
                zg += tl.load(ALPHA + cols, mask=cmask, other=0.0) * tl.sum(hp[:, None] * Fb, axis=0)
            gi, gf, gg, go = _sigmoid(zi), _sigmoid(zf), _tanh(zg), _sigmoid(zo)
            if t == 0:
                cp = tl.load(C0 + b * N + cols, mask=cmask, other=0.0)
            else:
                cp = _aux(AUX, t - 1, b, B, N, X_C, cols, cmask)
            c = gf * tl.where(start, 0.0, cp) + gi * gg
            arow = AUX + (t * B + b) * 5 * N + cols
            tl.store(arow, c, mask=cmask)
            tl.store(arow + N, gi, mask=cmask)
            tl.store(arow + 2 * N, gf, mask=cmask)
            tl.store(arow + 3 * N, gg, mask=cmask)
            tl.store(arow + 4 * N, go, mask=cmask)
            tl.store(H + (t * B + b) * N + cols, go * _tanh(c), mask=cmask)
            tl.store(Fp + offs, Fb, mask=mask)
            if RULE == R_RETRO:
                tl.store(Ep + offs, tl.where(start, 0.0, Eb), mask=mask)
        tl.debug_barrier()  # all of h_t (and g_t) is stored before any thread reads it back
        h = tl.load(H + (t * B + b) * N + rows, mask=rmask, other=0.0)
        ms = _modulator(h, EXT, WM, BM, t, b, B, N, rows, ms_prev, MOD, EXTERNAL)
        if MOD != M_NONE:
            tl.store(MS + t * B + b, ms)
        hp_prev = hp
        ms_prev = ms
    for j0 in range(0, BLOCK_N, BLOCK_J):  # the last step's update
        cols, cmask, offs, mask = _tile(rows, j0, N, BLOCK_J)
        Fb, Eb = _load_traces(Fp, Ep, offs, mask, RULE)
        post = _aux(AUX, T - 1, b, B, N, X_G, cols, cmask)
        m = _rates(ms_prev, BF, WF, cols, N, MOD)
        Fb, Eb = _rule_step(Fb, Eb, hp_prev, post, m, eta, clip, CA, CB, CC, CD, CETA, offs, mask, RULE)
        _store_traces(Fp, Ep, offs, mask, Fb, Eb, RULE)


# --- backward (the traces entering each step come from :mod:`.kernels_replay`) ------------------------
@triton.jit(do_not_specialize=["t_start", "t_end"])
def plastic_lstm_backward(
    STARTS, H0, C0, H, AUX, MS, SEGF, SEGE, GH, DH, DC, DF, DE, DXP, DMS, DM, GETA, GALPHA, GABCD,
    W, ALPHA, WM, WF, BF, ETA, CA, CB, CC, CD, CETA, FINIT,
    t_start, t_end, B, N, clip,
    RULE: tl.constexpr, MOD: tl.constexpr, EXTERNAL: tl.constexpr, ALPHA_FULL: tl.constexpr,
    HAS_STARTS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr,
):
    """Steps ``t_end - 1`` down to ``t_start`` of sequence ``b``, backwards (``SEGF``/``SEGE`` from
    :func:`.kernels_replay.trace_replay`). ``DH``/``DC``/``DF``/``DE`` hold the gradients of the state leaving
    ``t_end - 1`` and are turned in place into those entering ``t_start``. Per step it writes the
    gradient of the four gates' input (``DXP``), of the scalar ``M`` (``DMS``) and of the fan-out
    rates (``DM``); ``d eta``, ``d alpha`` and ABCD's coefficients accumulate per sequence."""
    b = tl.program_id(0).to(tl.int64)
    rows = tl.arange(0, BLOCK_N)
    rmask = rows < N
    eta = tl.load(ETA)
    geta = tl.sum(tl.zeros([BLOCK_N], dtype=H.dtype.element_ty), axis=0)
    for tt in range(0, t_end - t_start):
        t = t_end - 1 - tt
        start, hp, ms = _step_entering(STARTS, H0, H, MS, t, b, B, N, rows, geta * 0.0, HAS_STARTS, MOD)
        slot = ((t - t_start) * B + b) * N * N
        dgrow = DXP + (t * B + b) * 4 * N + 2 * N  # the candidate block; holds the rule's part after pass 1
        # pass 1: the rule (gradients into the traces, h_{t-1}, g_t, M(t), the rates)
        dhp = tl.zeros([BLOCK_N], dtype=H.dtype.element_ty)
        dms = geta * 0.0
        for j0 in range(0, BLOCK_N, BLOCK_J):
            cols, cmask, offs, mask = _tile(rows, j0, N, BLOCK_J)
            dF = tl.load(DF + b * N * N + offs, mask=mask, other=0.0)
            post = _aux(AUX, t, b, B, N, X_G, cols, cmask)
            m = _rates(ms, BF, WF, cols, N, MOD)
            if RULE == R_ABCD:
                dhp_part, dpost, dm = _abcd_backward(dF, hp, post, m, CA, CB, CC, CD, CETA, GABCD, b, N, offs, mask)
            else:
                Fb = tl.where(start, 0.0, tl.load(SEGF + slot + offs, mask=mask, other=0.0))
                Eb = Fb
                dE = dF
                if RULE == R_RETRO:
                    Eb = tl.where(start, 0.0, tl.load(SEGE + slot + offs, mask=mask, other=0.0))
                    dE = tl.load(DE + b * N * N + offs, mask=mask, other=0.0)
                dF, dE, dhp_part, dpost, dm, deta = _trace_step_backward(Fb, Eb, dF, dE, hp, post, m, eta, clip, RULE)
                geta += deta
                tl.store(DF + b * N * N + offs, dF, mask=mask)
                if RULE == R_RETRO:
                    tl.store(DE + b * N * N + offs, tl.where(start, 0.0, dE), mask=mask)
            dhp += dhp_part
            tl.store(dgrow + cols, dpost, mask=cmask)
            dms = _modulation_grad_cols(dms, dm, DM, WF, t, b, B, N, cols, cmask, MOD)
        dz = _modulator_backward(dms, ms, DMS, t, b, B, MOD, EXTERNAL)  # d of the modulator's pre-activation
        tl.debug_barrier()
        # pass 2: the cell (gates, cell state, the slow and plastic drive)
        for j0 in range(0, BLOCK_N, BLOCK_J):
            cols, cmask, offs, mask = _tile(rows, j0, N, BLOCK_J)
            offs_w = rows[:, None] * (4 * N) + cols[None, :]
            dh = tl.load(DH + b * N + cols, mask=cmask, other=0.0)
            dh += tl.load(GH + (t * B + b) * N + cols, mask=cmask, other=0.0)
            if MOD != M_NONE:
                if not EXTERNAL:
                    dh += dz * tl.load(WM + cols, mask=cmask, other=0.0)
            c = _aux(AUX, t, b, B, N, X_C, cols, cmask)
            gi = _aux(AUX, t, b, B, N, X_I, cols, cmask)
            gf = _aux(AUX, t, b, B, N, X_F, cols, cmask)
            gg = _aux(AUX, t, b, B, N, X_G, cols, cmask)
            go = _aux(AUX, t, b, B, N, X_O, cols, cmask)
            if t == 0:
                cp = tl.load(C0 + b * N + cols, mask=cmask, other=0.0)
            else:
                cp = _aux(AUX, t - 1, b, B, N, X_C, cols, cmask)
            cp = tl.where(start, 0.0, cp)
            tc = _tanh(c)
            dcj = tl.load(DC + b * N + cols, mask=cmask, other=0.0) + dh * go * (1.0 - tc * tc)
            da_i = dcj * gg * gi * (1.0 - gi)
            da_f = dcj * cp * gf * (1.0 - gf)
            da_g = (tl.load(dgrow + cols, mask=cmask, other=0.0) + dcj * gi) * (1.0 - gg * gg)
            da_o = dh * tc * go * (1.0 - go)
            xrow = DXP + (t * B + b) * 4 * N + cols
            tl.store(xrow, da_i, mask=cmask)
            tl.store(xrow + N, da_f, mask=cmask)
            tl.store(xrow + 2 * N, da_g, mask=cmask)
            tl.store(xrow + 3 * N, da_o, mask=cmask)
            tl.store(DC + b * N + cols, tl.where(start, 0.0, dcj * gf), mask=cmask)
            dhp += tl.sum(tl.load(W + offs_w, mask=mask, other=0.0) * da_i[None, :], axis=1)
            dhp += tl.sum(tl.load(W + offs_w + N, mask=mask, other=0.0) * da_f[None, :], axis=1)
            dhp += tl.sum(tl.load(W + offs_w + 2 * N, mask=mask, other=0.0) * da_g[None, :], axis=1)
            dhp += tl.sum(tl.load(W + offs_w + 3 * N, mask=mask, other=0.0) * da_o[None, :], axis=1)
            Fb = _restart(tl.load(SEGF + slot + offs, mask=mask, other=0.0), FINIT, offs, mask, start, RULE)
            dF = tl.load(DF + b * N * N + offs, mask=mask, other=0.0)
            if ALPHA_FULL:
                alpha = tl.load(ALPHA + offs, mask=mask, other=0.0)
                dhp += tl.sum(alpha * Fb * da_g[None, :], axis=1)
                hda = hp[:, None] * da_g[None, :]
                dF += alpha * hda
                ga = tl.load(GALPHA + b * N * N + offs, mask=mask, other=0.0)
                tl.store(GALPHA + b * N * N + offs, ga + hda * Fb, mask=mask)
            else:
                alpha_da = tl.load(ALPHA + cols, mask=cmask, other=0.0) * da_g
                dhp += tl.sum(Fb * alpha_da[None, :], axis=1)
                dF += hp[:, None] * alpha_da[None, :]
                ga = tl.load(GALPHA + b * N + cols, mask=cmask, other=0.0)
                tl.store(GALPHA + b * N + cols, ga + tl.sum(hp[:, None] * Fb, axis=0) * da_g, mask=cmask)
            tl.store(DF + b * N * N + offs, tl.where(start, 0.0, dF), mask=mask)
        tl.debug_barrier()  # every column of DH was read before it is overwritten
        tl.store(DH + b * N + rows, tl.where(start, 0.0, dhp), mask=rmask)
        tl.debug_barrier()
    tl.store(GETA + b, tl.load(GETA + b) + geta)
