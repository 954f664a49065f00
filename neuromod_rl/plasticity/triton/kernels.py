"""Triton kernels of the plastic RNN cell: forward, backward, one program per sequence.

Layout (all contiguous, batch ``b`` = the program id): inputs and hidden states ``[T, B, N]``, traces
``F``/``E`` ``[B, N, N]`` with ``F[b, i, j]`` (row ``i`` presynaptic, column ``j`` postsynaptic), trace
checkpoints ``[C, B, N, N]``, scalar modulation ``[T, B]``.

A program walks its sequence through time and, inside each step, over column blocks of its traces:
an ``N x BLOCK_J`` tile of ``F`` (and ``E``) is loaded, updated and written back, so one step moves
each trace through the chip once. The hidden vector crosses blocks through global memory (the output
``H`` itself), fenced by ``tl.debug_barrier()``. Step ``t``'s trace update needs ``M(t)``, known only
once all of ``h_t`` is, so it is applied lazily in step ``t + 1``'s pass (``_trace_step`` on the
tile just loaded), and once more after the last step.

Accumulation is in the traces' dtype (float32, or float64 where the device has it); a bfloat16
input is widened on load. Helpers hold one equation each; the rule and modulation codes come from
:mod:`neuromod_rl.plasticity.fused.spec` (the one table of codes).
"""

from __future__ import annotations

import triton
import triton.language as tl

from neuromod_rl.plasticity.fused.spec import MOD_CODES, RULE_CODES
from neuromod_rl.plasticity.rules import ClippedHebbian, HebbianDecay, Neuromodulated, Oja, Retroactive

R_NEUROMOD = tl.constexpr(RULE_CODES[Neuromodulated][0])
R_CLIPPED = tl.constexpr(RULE_CODES[ClippedHebbian][0])
R_HEBBIAN = tl.constexpr(RULE_CODES[HebbianDecay][0])
R_RETRO = tl.constexpr(RULE_CODES[Retroactive][0])
R_OJA = tl.constexpr(RULE_CODES[Oja][0] if Oja in RULE_CODES else -1)  # -1: the table has no code for it yet
M_NONE = tl.constexpr(MOD_CODES[None][0])
M_SCALAR = tl.constexpr(MOD_CODES["scalar"][0])
M_FANOUT = tl.constexpr(MOD_CODES["fanout"][0])


# --- small equations -------------------------------------------------------------------------------
@triton.jit
def _tanh(a):
    """tanh from one exp, sign-symmetric so it neither overflows nor loses small values' sign."""
    e = tl.exp(-2.0 * tl.abs(a))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(a < 0, -t, t)


@triton.jit
def _clip(x, c):
    return tl.minimum(tl.maximum(x, -c), c)


@triton.jit
def _clip_grad(g, pre, c):
    """Gradient through ``clip(pre, -c, c)``: passes where ``|pre| <= c`` (torch.clamp's convention)."""
    return tl.where(tl.abs(pre) <= c, g, 0.0)


@triton.jit
def _is_start(STARTS, t, b, B, HAS_STARTS: tl.constexpr):
    """Whether sequence ``b`` starts an episode at step ``t`` (its state is reset before the step)."""
    if HAS_STARTS:
        return tl.load(STARTS + t * B + b) != 0
    else:
        return t < 0


@triton.jit
def _hidden_entering(H0, H, t, t_first, b, B, N, offs):
    """``h_{t-1}``: from ``H0`` at the first step of this launch, else from ``H[t - 1]``."""
    if t == t_first:
        ptr = H0 + b * N
    else:
        ptr = H + ((t - 1) * B + b) * N
    return tl.load(ptr + offs, mask=offs < N, other=0.0)


@triton.jit
def _modulation_cols(ms, BF, WF, cols, N, MOD: tl.constexpr):
    """``M(t)`` for the columns ``cols``: the scalar, or its fan-out ``bf + ms * wf`` (one rate per column)."""
    if MOD == M_FANOUT:
        return tl.load(BF + cols, mask=cols < N, other=0.0) + ms * tl.load(WF + cols, mask=cols < N, other=0.0)
    else:
        return ms + 0.0 * cols.to(ms.dtype)


@triton.jit
def _modulator(h, EXT, WM, BM, t, b, B, N, rows, fallback, MOD: tl.constexpr, EXTERNAL: tl.constexpr):
    """The scalar ``M(t)``: ``tanh(wm . h_t + bm)``, or the caller's signal ``EXT[t, b]``."""
    if MOD == M_NONE:
        return fallback
    elif EXTERNAL:
        return tl.load(EXT + t * B + b).to(fallback.dtype)
    else:
        return _tanh(tl.sum(h * tl.load(WM + rows, mask=rows < N, other=0.0), axis=0) + tl.load(BM))


@triton.jit
def _trace_step(Fb, Eb, hp, hcol, m, eta, clip, RULE: tl.constexpr):
    """The rule's update of one ``[rows, cols]`` tile, ``pre = hp`` (rows), ``post = hcol``:
    returns the new ``(F, E)`` (``E`` passes through for rules without an eligibility trace)."""
    hebb = hp[:, None] * hcol[None, :]
    if RULE == R_NEUROMOD:
        F = _clip(Fb + m[None, :] * hebb, clip)
        E = Eb
    elif RULE == R_CLIPPED:
        F = _clip(Fb + eta * hebb, clip)
        E = Eb
    elif RULE == R_HEBBIAN:
        F = (1.0 - eta) * Fb + eta * hebb
        E = Eb
    elif RULE == R_RETRO:  # F takes the previous E, then E decays towards the new co-activation
        F = _clip(Fb + m[None, :] * Eb, clip)
        E = (1.0 - eta) * Eb + eta * hebb
    else:  # oja: F_ij += eta y_j (x_i - F_ij y_j)
        F = Fb + eta * hcol[None, :] * (hp[:, None] - Fb * hcol[None, :])
        E = Eb
    return F, E


@triton.jit
def _drive_cols(hp, Fb, W, ALPHA, offs, mask, cols, N, ALPHA_FULL: tl.constexpr):
    """Columns ``cols`` of ``hp (w + alpha ⊙ F)``."""
    w = tl.load(W + offs, mask=mask, other=0.0)
    if ALPHA_FULL:
        weight = w + tl.load(ALPHA + offs, mask=mask, other=0.0) * Fb
    else:
        weight = w + tl.load(ALPHA + cols, mask=cols < N, other=0.0)[None, :] * Fb
    return tl.sum(hp[:, None] * weight, axis=0)


@triton.jit
def _trace_step_backward(Fb, Eb, dF, dE, hp, hcol, m, eta, clip, RULE: tl.constexpr):
    """Backward of :func:`_trace_step` on one tile. ``dF``/``dE``: gradients of the traces leaving the
    step. Returns the gradients of the traces entering it ``(dF, dE)``, the parts of ``d h_{t-1}``
    (rows) and ``d h_t`` (columns), ``dM`` per column, and the part of ``d eta`` (a scalar)."""
    if RULE == R_NEUROMOD:
        dP = _clip_grad(dF, Fb + m[None, :] * (hp[:, None] * hcol[None, :]), clip)
        u = tl.sum(hp[:, None] * dP, axis=0)
        return dP, dE, tl.sum(dP * (m * hcol)[None, :], axis=1), m * u, hcol * u, 0.0 * tl.sum(u, axis=0)
    elif RULE == R_CLIPPED:
        dP = _clip_grad(dF, Fb + eta * (hp[:, None] * hcol[None, :]), clip)
        u = tl.sum(hp[:, None] * dP, axis=0)
        return dP, dE, eta * tl.sum(dP * hcol[None, :], axis=1), eta * u, 0.0 * u, tl.sum(u * hcol, axis=0)
    elif RULE == R_HEBBIAN:
        u = tl.sum(hp[:, None] * dF, axis=0)
        deta = tl.sum(u * hcol, axis=0) - tl.sum(tl.sum(dF * Fb, axis=1), axis=0)
        return (1.0 - eta) * dF, dE, eta * tl.sum(dF * hcol[None, :], axis=1), eta * u, 0.0 * u, deta
    elif RULE == R_RETRO:  # F = clip(Fb + m E_b); E = (1 - eta) E_b + eta outer(hp, h)
        dP = _clip_grad(dF, Fb + m[None, :] * Eb, clip)
        u = tl.sum(hp[:, None] * dE, axis=0)
        deta = tl.sum(u * hcol, axis=0) - tl.sum(tl.sum(dE * Eb, axis=1), axis=0)
        dE_in = (1.0 - eta) * dE + dP * m[None, :]
        return dP, dE_in, eta * tl.sum(dE * hcol[None, :], axis=1), eta * u, tl.sum(dP * Eb, axis=0), deta
    else:  # oja: F = Fb + eta y (x - Fb y), x = hp (rows), y = h (columns)
        y = hcol[None, :]
        dh = eta * tl.sum(dF * (hp[:, None] - 2.0 * Fb * y), axis=0)
        deta = tl.sum(tl.sum(dF * y * (hp[:, None] - Fb * y), axis=1), axis=0)
        return dF * (1.0 - eta * y * y), dE, eta * tl.sum(dF * y, axis=1), dh, 0.0 * dh, deta


@triton.jit
def _tile(rows, j0, N, BLOCK_J: tl.constexpr):
    """The column tile starting at ``j0``: ``(cols, cmask, offs, mask)``, its columns and their mask, and
    the offsets and mask of its ``rows x BLOCK_J`` entries in an ``[N, N]`` matrix."""
    cols = j0 + tl.arange(0, BLOCK_J)
    cmask = cols < N
    offs = rows[:, None] * N + cols[None, :]
    mask = (rows[:, None] < N) & cmask[None, :]
    return cols, cmask, offs, mask


@triton.jit
def _load_traces(Fp, Ep, offs, mask, RULE: tl.constexpr):
    """A tile of ``F`` and of ``E`` (``E`` is the tile of ``F`` for the rules without an eligibility trace)."""
    Fb = tl.load(Fp + offs, mask=mask, other=0.0)
    Eb = Fb
    if RULE == R_RETRO:
        Eb = tl.load(Ep + offs, mask=mask, other=0.0)
    return Fb, Eb


@triton.jit
def _store_traces(Fp, Ep, offs, mask, Fb, Eb, RULE: tl.constexpr):
    """Writes a tile of ``F`` and, for the rules with an eligibility trace, of ``E``."""
    tl.store(Fp + offs, Fb, mask=mask)
    if RULE == R_RETRO:
        tl.store(Ep + offs, Eb, mask=mask)


@triton.jit
def _modulation_grad_cols(dms, dm, DM, WF, t, b, B, N, cols, cmask, MOD: tl.constexpr):
    """``dms`` plus the gradient of the scalar ``M(t)`` through the columns' rates, whose gradient ``dm``
    (fan-out) is stored in ``DM[t, b]``; without a modulator ``dms`` is returned as it is."""
    if MOD == M_FANOUT:
        tl.store(DM + (t * B + b) * N + cols, dm, mask=cmask)
        dms += tl.sum(dm * tl.load(WF + cols, mask=cmask, other=0.0), axis=0)
    elif MOD == M_SCALAR:
        dms += tl.sum(dm, axis=0)
    return dms


@triton.jit
def _modulator_backward(dms, ms, DMS, t, b, B, MOD: tl.constexpr, EXTERNAL: tl.constexpr):
    """Stores ``d M(t)`` (``dms``) in ``DMS[t, b]``; returns the gradient of the modulator's pre-activation
    (``M = tanh(wm . h + bm)``: hidden source only, zero otherwise)."""
    dz = dms * 0.0
    if MOD != M_NONE:
        tl.store(DMS + t * B + b, dms)
        if not EXTERNAL:
            dz = dms * (1.0 - ms * ms)
    return dz


@triton.jit
def _step_entering(STARTS, H0, H, MS, t, b, B, N, rows, zero, HAS_STARTS: tl.constexpr, MOD: tl.constexpr):
    """What the backward pass of step ``t`` reads first: ``(start, hp, ms)``, whether an episode starts at
    ``t``, ``h_{t-1}`` after the reset, and the scalar ``M(t)`` (``zero`` without a modulator)."""
    start = _is_start(STARTS, t, b, B, HAS_STARTS)
    hp = tl.where(start, 0.0, _hidden_entering(H0, H, t, 0, b, B, N, rows))
    ms = zero
    if MOD != M_NONE:
        ms = tl.load(MS + t * B + b)
    return start, hp, ms


# --- forward -----------------------------------------------------------------------------------------
# step bounds change from launch to launch (backward segments): one compiled variant serves them all
@triton.jit(do_not_specialize=["t_start", "t_end", "K"])
def plastic_rnn_forward(
    XP, EXT, STARTS, H0, F, E, H, MS, FCK, ECK,
    W, ALPHA, WM, BM, WF, BF, ETA,
    t_start, t_end, K, B, N, clip,
    RULE: tl.constexpr, MOD: tl.constexpr, EXTERNAL: tl.constexpr, ALPHA_FULL: tl.constexpr,
    HAS_STARTS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr,
):
    """Steps ``t_start .. t_end - 1`` of sequence ``b``. ``F``/``E`` hold the traces entering
    ``t_start`` and are updated in place; the traces entering every K-th step (before that step's
    reset) are written to ``FCK``/``ECK`` slot ``(t - t_start) // K``."""
    b = tl.program_id(0).to(tl.int64)
    rows = tl.arange(0, BLOCK_N)
    Fp = F + b * N * N
    Ep = E + b * N * N
    eta = tl.load(ETA)
    hp_prev = tl.zeros([BLOCK_N], dtype=H.dtype.element_ty)  # pre-synaptic side of the pending update
    ms_prev = tl.sum(hp_prev, axis=0)  # M of the pending update
    for t in range(t_start, t_end):
        start = _is_start(STARTS, t, b, B, HAS_STARTS)
        hp = tl.where(start, 0.0, _hidden_entering(H0, H, t, t_start, b, B, N, rows))
        slot = (t - t_start) // K
        for j0 in range(0, BLOCK_N, BLOCK_J):
            cols, cmask, offs, mask = _tile(rows, j0, N, BLOCK_J)
            Fb, Eb = _load_traces(Fp, Ep, offs, mask, RULE)
            if t > t_start:  # step t-1's update, deferred until M(t-1) was known
                h_post = tl.load(H + ((t - 1) * B + b) * N + cols, mask=cmask, other=0.0)
                m = _modulation_cols(ms_prev, BF, WF, cols, N, MOD)
                Fb, Eb = _trace_step(Fb, Eb, hp_prev, h_post, m, eta, clip, RULE)
            if (t - t_start) % K == 0:
                tl.store(FCK + (slot * B + b) * N * N + offs, Fb, mask=mask)
                if RULE == R_RETRO:
                    tl.store(ECK + (slot * B + b) * N * N + offs, Eb, mask=mask)
            Fb = tl.where(start, 0.0, Fb)
            a = tl.load(XP + (t * B + b) * N + cols, mask=cmask, other=0.0).to(Fb.dtype)
            a += _drive_cols(hp, Fb, W, ALPHA, offs, mask, cols, N, ALPHA_FULL)
            tl.store(H + (t * B + b) * N + cols, _tanh(a), mask=cmask)
            tl.store(Fp + offs, Fb, mask=mask)
            if RULE == R_RETRO:
                tl.store(Ep + offs, tl.where(start, 0.0, Eb), mask=mask)
        tl.debug_barrier()  # all of h_t is in H before any thread reads it back
        h = tl.load(H + (t * B + b) * N + rows, mask=rows < N, other=0.0)
        ms = _modulator(h, EXT, WM, BM, t, b, B, N, rows, ms_prev, MOD, EXTERNAL)
        if MOD != M_NONE:
            tl.store(MS + t * B + b, ms)
        hp_prev = hp
        ms_prev = ms
    # the last step's update
    for j0 in range(0, BLOCK_N, BLOCK_J):
        cols, cmask, offs, mask = _tile(rows, j0, N, BLOCK_J)
        Fb, Eb = _load_traces(Fp, Ep, offs, mask, RULE)
        h_post = tl.load(H + ((t_end - 1) * B + b) * N + cols, mask=cmask, other=0.0)
        m = _modulation_cols(ms_prev, BF, WF, cols, N, MOD)
        Fb, Eb = _trace_step(Fb, Eb, hp_prev, h_post, m, eta, clip, RULE)
        _store_traces(Fp, Ep, offs, mask, Fb, Eb, RULE)


# --- backward ----------------------------------------------------------------------------------------
@triton.jit(do_not_specialize=["t_start", "t_end"])
def plastic_rnn_backward(
    STARTS, H0, H, MS, SEGF, SEGE, GH, DH, DF, DE, DXP, DMS, DM, GETA, GALPHA,
    W, ALPHA, WM, WF, BF, ETA,
    t_start, t_end, B, N, clip,
    RULE: tl.constexpr, MOD: tl.constexpr, EXTERNAL: tl.constexpr, ALPHA_FULL: tl.constexpr,
    HAS_STARTS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr,
):
    """Steps ``t_end - 1`` down to ``t_start`` of sequence ``b``, backwards. ``SEGF``/``SEGE`` slot
    ``t - t_start`` hold the traces entering step ``t`` (before its reset, as the forward replay
    wrote them). ``DH``/``DF``/``DE`` hold the gradients of the state leaving ``t_end - 1`` and are
    turned in place into those of the state entering ``t_start``. Per step it writes the gradient of
    the drive (``DXP``), of the scalar ``M`` (``DMS``) and of the fan-out rates (``DM``); ``d eta``
    and ``d alpha`` accumulate per sequence into ``GETA[b]`` and ``GALPHA[b]``."""
    b = tl.program_id(0).to(tl.int64)
    rows = tl.arange(0, BLOCK_N)
    eta = tl.load(ETA)
    geta = tl.sum(tl.zeros([BLOCK_N], dtype=H.dtype.element_ty), axis=0)
    for tt in range(0, t_end - t_start):
        t = t_end - 1 - tt
        start, hp, ms = _step_entering(STARTS, H0, H, MS, t, b, B, N, rows, geta * 0.0, HAS_STARTS, MOD)
        slot = (t - t_start) * B + b
        # pass 1: the trace update (gradients into the traces, h_{t-1}, h_t, M(t), eta)
        dhp = tl.zeros([BLOCK_N], dtype=H.dtype.element_ty)
        dms = geta * 0.0
        for j0 in range(0, BLOCK_N, BLOCK_J):
            cols, cmask, offs, mask = _tile(rows, j0, N, BLOCK_J)
            Fb = tl.where(start, 0.0, tl.load(SEGF + slot * N * N + offs, mask=mask, other=0.0))
            dF = tl.load(DF + b * N * N + offs, mask=mask, other=0.0)
            Eb = Fb
            dE = dF
            if RULE == R_RETRO:
                Eb = tl.where(start, 0.0, tl.load(SEGE + slot * N * N + offs, mask=mask, other=0.0))
                dE = tl.load(DE + b * N * N + offs, mask=mask, other=0.0)
            h_post = tl.load(H + (t * B + b) * N + cols, mask=cmask, other=0.0)
            m = _modulation_cols(ms, BF, WF, cols, N, MOD)
            dF, dE, dhp_part, dh_part, dm, deta = _trace_step_backward(Fb, Eb, dF, dE, hp, h_post, m, eta, clip, RULE)
            dhp += dhp_part
            geta += deta
            dh = tl.load(DH + b * N + cols, mask=cmask, other=0.0) + dh_part
            dh += tl.load(GH + (t * B + b) * N + cols, mask=cmask, other=0.0)
            tl.store(DH + b * N + cols, dh, mask=cmask)
            tl.store(DF + b * N * N + offs, dF, mask=mask)
            if RULE == R_RETRO:
                tl.store(DE + b * N * N + offs, tl.where(start, 0.0, dE), mask=mask)
            dms = _modulation_grad_cols(dms, dm, DM, WF, t, b, B, N, cols, cmask, MOD)
        dz = _modulator_backward(dms, ms, DMS, t, b, B, MOD, EXTERNAL)  # d of the modulator's pre-activation
        tl.debug_barrier()
        # pass 2: h_t = tanh(xp_t + hp (w + alpha ⊙ Fb))
        for j0 in range(0, BLOCK_N, BLOCK_J):
            cols, cmask, offs, mask = _tile(rows, j0, N, BLOCK_J)
            dh = tl.load(DH + b * N + cols, mask=cmask, other=0.0)
            if MOD != M_NONE:
                if not EXTERNAL:
                    dh += dz * tl.load(WM + cols, mask=cmask, other=0.0)
            h_post = tl.load(H + (t * B + b) * N + cols, mask=cmask, other=0.0)
            da = dh * (1.0 - h_post * h_post)
            tl.store(DXP + (t * B + b) * N + cols, da, mask=cmask)
            Fb = tl.where(start, 0.0, tl.load(SEGF + slot * N * N + offs, mask=mask, other=0.0))
            w = tl.load(W + offs, mask=mask, other=0.0)
            dF = tl.load(DF + b * N * N + offs, mask=mask, other=0.0)
            if ALPHA_FULL:
                alpha = tl.load(ALPHA + offs, mask=mask, other=0.0)
                dhp += tl.sum((w + alpha * Fb) * da[None, :], axis=1)
                hda = hp[:, None] * da[None, :]
                dF += alpha * hda
                ga = tl.load(GALPHA + b * N * N + offs, mask=mask, other=0.0)
                tl.store(GALPHA + b * N * N + offs, ga + hda * Fb, mask=mask)
            else:
                alpha_da = tl.load(ALPHA + cols, mask=cmask, other=0.0) * da
                dhp += tl.sum(w * da[None, :] + Fb * alpha_da[None, :], axis=1)
                dF += hp[:, None] * alpha_da[None, :]
                ga = tl.load(GALPHA + b * N + cols, mask=cmask, other=0.0)
                tl.store(GALPHA + b * N + cols, ga + tl.sum(hp[:, None] * Fb, axis=0) * da, mask=cmask)
            tl.store(DF + b * N * N + offs, tl.where(start, 0.0, dF), mask=mask)
        tl.debug_barrier()  # every column of DH was read before it is overwritten
        tl.store(DH + b * N + rows, tl.where(start, 0.0, dhp), mask=rows < N)
        tl.debug_barrier()
    tl.store(GETA + b, tl.load(GETA + b) + geta)
