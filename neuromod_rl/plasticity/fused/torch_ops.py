"""The fused engine as exact torch ops (CUDA tensors, and CPU without a C compiler).

One ``autograd.Function`` whose forward runs the time loop under ``no_grad`` with in-place trace
updates (``baddbmm_``, ``addcmul_``, ``clamp_``) and whose backward is written by hand: it saves the
per-step activity (``H``, and ``AUX``: the LSTM's cell state and gates, the MLP's inner layers) and the
modulation, plus the traces every K-th step, and replays each K-step segment from its checkpoint to
walk it in reverse. Same contract and same algorithm as the C kernel
(:mod:`neuromod_rl.plasticity.fused.cpu`); one layer's rule math is in :mod:`.torch_rules`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from neuromod_rl.plasticity.fused.spec import N_LAYER_PARAMS, FusedConfig, LayerParams, ModParams
from neuromod_rl.plasticity.fused.torch_rules import (
    plastic_drive,
    plastic_drive_backward,
    update_,
    update_backward,
)

_ACT = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda a: a}


def _slope(act: str, y: Tensor) -> Tensor:
    """d act / d a from the activation's output."""
    if act == "tanh":
        return 1 - y * y
    return (y > 0).to(y.dtype) if act == "relu" else torch.ones_like(y)


class _Run:
    """What one call reads: config, parameters, inputs and the saved per-step activity."""

    def __init__(self, cfg: FusedConfig, starts, xp, ext, h0, c0, H, AUX, MS, mp: ModParams, lps: list[LayerParams]):
        self.cfg, self.starts, self.xp, self.ext, self.h0, self.c0 = cfg, starts, xp, ext, h0, c0
        self.H, self.AUX, self.MS, self.mp, self.lps = H, AUX, MS, mp, lps
        self.N = cfg.hidden
        self.offsets = cfg.trace_offsets()

    def views(self, flat: Tensor | None) -> list[Tensor | None]:
        """Each layer's ``[B, n_pre, n_post]`` view of a ``[B, S]`` trace block."""
        if flat is None:
            return [None] * len(self.cfg.layers)
        return [flat[:, o : o + L.size].view(-1, L.n_pre, L.n_post) for o, L in zip(self.offsets, self.cfg.layers)]

    def start(self, t: int) -> Tensor | None:
        return self.starts[t] if self.starts is not None and bool(self.starts[t].any()) else None

    def pre(self, l: int, t: int) -> Tensor:
        """Presynaptic activity of layer l at step t (the recurrent cells' h_{t-1}, zero at an episode start)."""
        if self.cfg.cell == "mlp":
            return self.xp[t] if l == 0 else self.AUX[t, :, (l - 1) * self.N : l * self.N]
        hp = self.h0 if t == 0 else self.H[t - 1]
        s = self.start(t)
        return hp if s is None else hp.masked_fill(s.unsqueeze(1), 0.0)

    def post(self, l: int, t: int) -> Tensor:
        N = self.N
        if self.cfg.cell == "lstm":
            return self.AUX[t, :, 3 * N : 4 * N]
        if self.cfg.cell == "mlp" and l < len(self.cfg.layers) - 1:
            return self.AUX[t, :, l * N : (l + 1) * N]
        return self.H[t]

    def prev_c(self, t: int) -> Tensor:
        cp = self.c0 if t == 0 else self.AUX[t - 1, :, : self.N]
        s = self.start(t)
        return cp if s is None else cp.masked_fill(s.unsqueeze(1), 0.0)

    def modulation(self, t: int) -> tuple[Tensor | None, Tensor | None]:
        """``(scalar M(t) [B], effective modulation [B] or [B, N])`` from the saved ``MS``, or ``(None, None)``."""
        if self.cfg.modulation is None:
            return None, None
        ms = self.MS[t]
        return ms, ms if self.cfg.modulation == "scalar" else torch.addmm(self.mp.bf, ms.unsqueeze(1), self.mp.wf.t())

    def reset_(self, t: int, F: Tensor, E: Tensor | None, F_init: Tensor | None) -> None:
        s = self.start(t)
        if s is None:
            return
        rows = s.unsqueeze(1)
        F.copy_(torch.where(rows, F_init, F) if F_init is not None else F.masked_fill(rows, 0.0))
        if E is not None:
            E.masked_fill_(rows, 0.0)

    def update_all_(self, t: int, Fv, Ev, m) -> None:
        for l, (L, p) in enumerate(zip(self.cfg.layers, self.lps)):
            update_(L, p, Fv[l], Ev[l], self.pre(l, t), self.post(l, t), m)


def _step_forward(run: _Run, t: int, Fv, tmps) -> None:
    """Step t's activity at the traces ``Fv``: writes ``H[t]`` (and ``AUX[t]``)."""
    cfg, N, xp = run.cfg, run.N, run.xp
    if cfg.cell == "mlp":
        x = xp[t]
        for l, (L, p) in enumerate(zip(cfg.layers, run.lps)):
            a = plastic_drive(L, p, x, Fv[l], tmps[l])
            if p.w is not None:
                a = a.addmm_(x, p.w)
            if p.b is not None:
                a = a.add_(p.b)
            x = _ACT[L.activation](a)
            run.post(l, t).copy_(x)
        return
    L, p = cfg.layers[0], run.lps[0]
    hp = run.pre(0, t)
    z = torch.addmm(xp[t], hp, p.w)
    if cfg.cell == "rnn":
        run.H[t] = torch.tanh(z.add_(plastic_drive(L, p, hp, Fv[0], tmps[0])))
        return
    z[:, 2 * N : 3 * N] += plastic_drive(L, p, hp, Fv[0], tmps[0])
    i, f, g, o = torch.sigmoid(z[:, :N]), torch.sigmoid(z[:, N : 2 * N]), torch.tanh(z[:, 2 * N : 3 * N]), \
        torch.sigmoid(z[:, 3 * N :])
    c = f * run.prev_c(t) + i * g
    run.AUX[t] = torch.cat([c, i, f, g, o], dim=1)
    run.H[t] = o * torch.tanh(c)


def _modulate(run: _Run, t: int) -> tuple[Tensor | None, Tensor | None]:
    """M(t) from the head on h_t (or the caller), and its effective form."""
    cfg, mp = run.cfg, run.mp
    if cfg.modulation is None:
        return None, None
    ms = run.ext[t] if cfg.external else torch.tanh(torch.addmm(mp.bm, run.H[t], mp.wm.t())).squeeze(1)
    return ms, ms if cfg.modulation == "scalar" else torch.addmm(mp.bf, ms.unsqueeze(1), mp.wf.t())


class FusedPlasticTorch(torch.autograd.Function):
    """Inputs ``(cfg, starts, xp, ext, h0, c0, F0, E0, F_init, wm, bm, wf, bf, *layer params)``;
    outputs ``(H, h_T, c_T, F_T, E_T, M)`` (empty tensors for what the cell does not have)."""

    @staticmethod
    def forward(ctx, cfg, starts, xp, ext, h0, c0, F0, E0, F_init, wm, bm, wf, bf, *flat):
        T, B = xp.shape[:2]
        K = cfg.segment
        H, AUX, MS, MF, F_ck, E_ck = allocate_outputs(xp, cfg, with_eligibility=E0 is not None)
        run = _Run(cfg, starts, xp, ext, h0, c0, H, AUX, MS, ModParams(wm, bm, wf, bf), _layer_params(flat))
        F, E = F0.clone(), None if E0 is None else E0.clone()
        Fv, Ev = run.views(F), run.views(E)
        tmps = [xp.new_empty(B, L.n_pre, L.n_post) for L in cfg.layers]
        for t in range(T):
            run.reset_(t, F, E, F_init)
            if t % K == 0:
                F_ck[t // K].copy_(F)
                if E is not None:
                    E_ck[t // K].copy_(E)
            _step_forward(run, t, Fv, tmps)
            ms, m = _modulate(run, t)
            run.update_all_(t, Fv, Ev, m)
            if ms is not None:
                MS[t] = ms
                if MF is not None:
                    MF[t] = m
        ctx.cfg = cfg
        ctx.save_for_backward(starts, xp, ext, h0, c0, H, AUX, MS, F_ck, E_ck, F_init, wm, bm, wf, bf, *flat)
        return forward_outputs(ctx, cfg, xp, H, AUX, MS, MF, F, E)

    @staticmethod
    def backward(ctx, gH, ghT, gcT, gFT, gET, _gM):
        cfg: FusedConfig = ctx.cfg
        starts, xp, ext, h0, c0, H, AUX, MS, F_ck, E_ck, F_init, wm, bm, wf, bf, *flat = ctx.saved_tensors
        run = _Run(cfg, starts, xp, ext, h0, c0, H, AUX, MS, ModParams(wm, bm, wf, bf), _layer_params(flat))
        T, B, N = H.shape
        K, S = cfg.segment, cfg.trace_size

        def start_from(g, shape):
            return g.clone() if g is not None and g.numel() else H.new_zeros(shape)

        grads = _Grads(run)
        dh = start_from(ghT, (B, N)) if cfg.cell != "mlp" else None
        dc = start_from(gcT, (B, N)) if cfg.cell == "lstm" else None
        dF = start_from(gFT, (B, S))
        dE = start_from(gET, (B, S)) if E_ck is not None else None
        dFv, dEv = run.views(dF), run.views(dE)
        seg_F = H.new_empty(K, B, S)
        seg_E = H.new_empty(K, B, S) if dE is not None else None
        tmps = [H.new_empty(B, L.n_pre, L.n_post) for L in cfg.layers]
        for s in reversed(range(0, T, K)):
            e = min(s + K, T)
            # Replay the segment forward from its checkpoint, keeping the traces entering each step.
            F = F_ck[s // K].clone()
            E = E_ck[s // K].clone() if dE is not None else None
            Fv, Ev = run.views(F), run.views(E)
            for t in range(s, e):
                run.reset_(t, F, E, F_init)
                seg_F[t - s].copy_(F)
                if E is not None:
                    seg_E[t - s].copy_(E)
                if t + 1 < e:
                    run.update_all_(t, Fv, Ev, run.modulation(t)[1])
            for t in reversed(range(s, e)):
                if gH is not None and dh is not None:
                    dh += gH[t]
                dh, dc = _step_backward(run, grads, t, run.views(seg_F[t - s]),
                                        run.views(None if seg_E is None else seg_E[t - s]),
                                        gH, dh, dc, dF, dE, dFv, dEv, tmps)
        return (None, None, grads.xp, grads.ext, dh, dc, dF, dE, None, *grads.mod, *grads.flat())


def _step_backward(run: _Run, g, t, Fb, Eb, gH, dh, dc, dF, dE, dFv, dEv, tmps):
    """Backward of step t (mirrors ``cell_backward`` in kernel/cells.h); returns the new ``(dh, dc)``."""
    cfg, N, lps = run.cfg, run.N, run.lps
    ms, m = run.modulation(t)
    nl = len(cfg.layers)
    if cfg.cell == "mlp":
        dY = [torch.zeros_like(run.H[t]) for _ in range(nl)]
        dx0 = torch.zeros_like(run.xp[t])
        if gH is not None:
            dY[-1] += gH[t]
        dm = None
        for l, (L, p) in enumerate(zip(cfg.layers, lps)):
            dml = update_backward(L, p, g.layers[l], run.pre(l, t), run.post(l, t), m, Fb[l], Eb[l], dFv[l], dEv[l],
                                  dY[l - 1] if l else dx0, dY[l], tmps[l])
            dm = dml if dm is None else (dm + dml if dml is not None else dm)
        _modulator_backward(run, g, t, ms, dm, dY[-1])
        for l in reversed(range(nl)):
            L, p, x = cfg.layers[l], lps[l], run.pre(l, t)
            da = dY[l] * _slope(L.activation, run.post(l, t))
            if p.w is not None:
                g.layers[l].w.addmm_(x.t(), da)
                (dY[l - 1] if l else dx0).addmm_(da, p.w.t())
            if p.b is not None:
                g.layers[l].b.add_(da.sum(0))
            plastic_drive_backward(L, p, g.layers[l], x, Fb[l], da, dY[l - 1] if l else dx0, dFv[l], tmps[l])
        g.xp[t] = dx0
        _zero_at_start(run, t, dF, dE)
        return None, None
    L, p, gl = cfg.layers[0], lps[0], g.layers[0]
    hp, h = run.pre(0, t), run.H[t]
    dhp = torch.zeros_like(hp)
    if cfg.cell == "rnn":
        dm = update_backward(L, p, gl, hp, h, m, Fb[0], Eb[0], dFv[0], dEv[0], dhp, dh, tmps[0])
        _modulator_backward(run, g, t, ms, dm, dh)
        da = dh.mul_(1 - h * h)
        da_g = da
    else:
        aux = run.AUX[t]
        c, i, f, gg, o = (aux[:, k * N : (k + 1) * N] for k in range(5))
        dg = torch.zeros_like(h)
        dm = update_backward(L, p, gl, hp, gg, m, Fb[0], Eb[0], dFv[0], dEv[0], dhp, dg, tmps[0])
        _modulator_backward(run, g, t, ms, dm, dh)
        tc = torch.tanh(c)
        dcj = dc + dh * o * (1 - tc * tc)
        da = torch.cat([dcj * gg * i * (1 - i), dcj * run.prev_c(t) * f * (1 - f),
                        (dg + dcj * i) * (1 - gg * gg), dh * tc * o * (1 - o)], dim=1)
        dc = dcj * f
        da_g = da[:, 2 * N : 3 * N]
    g.xp[t] = da
    gl.w.addmm_(hp.t(), da)
    dhp.addmm_(da, p.w.t())
    plastic_drive_backward(L, p, gl, hp, Fb[0], da_g, dhp, dFv[0], tmps[0])
    s = _zero_at_start(run, t, dF, dE)
    if s is not None:
        dhp.masked_fill_(s.unsqueeze(1), 0.0)
        if dc is not None:
            dc = dc.masked_fill(s.unsqueeze(1), 0.0)
    return dhp, dc


def _zero_at_start(run: _Run, t: int, dF: Tensor, dE: Tensor | None) -> Tensor | None:
    """Nothing flows back through traces that were reset before step t."""
    s = run.start(t)
    if s is not None:
        dF.masked_fill_(s.unsqueeze(1), 0.0)
        if dE is not None:
            dE.masked_fill_(s.unsqueeze(1), 0.0)
    return s


def _modulator_backward(run: _Run, g, t: int, ms, dm, dh: Tensor) -> None:
    cfg, mp = run.cfg, run.mp
    if cfg.modulation is None:
        return
    if dm is None:
        dms = torch.zeros_like(ms)
    elif cfg.modulation == "fanout":  # m = bf + ms * wf
        g.wf += (dm * ms.unsqueeze(1)).sum(0).unsqueeze(1)
        g.bf += dm.sum(0)
        dms = dm @ mp.wf.squeeze(1)
    else:
        dms = dm if dm.dim() == 1 else dm.sum(1)
    if cfg.external:
        g.ext[t] = dms
    else:  # ms = tanh(h wm^T + bm)
        dz = dms * (1 - ms * ms)
        g.wm += (dz.unsqueeze(1) * run.H[t]).sum(0, keepdim=True)
        g.bm += dz.sum()
        dh.addcmul_(dz.unsqueeze(1), mp.wm)


class _Grads:
    """Accumulators for the gradients (summed over batch and time as they come)."""

    def __init__(self, run: _Run):
        def like(t):
            return None if t is None else torch.zeros_like(t)

        self.xp = torch.empty_like(run.xp)
        self.ext = None if run.ext is None else torch.empty_like(run.ext)
        self.wm, self.bm, self.wf, self.bf = (like(t) for t in run.mp)
        self.layers = [LayerParams(*(like(t) for t in p)) for p in run.lps]

    @property
    def mod(self):
        return self.wm, self.bm, self.wf, self.bf

    def flat(self):
        return [t for p in self.layers for t in p]


def _layer_params(flat) -> list[LayerParams]:
    return [LayerParams(*flat[k : k + N_LAYER_PARAMS]) for k in range(0, len(flat), N_LAYER_PARAMS)]


def allocate_outputs(xp: Tensor, cfg: FusedConfig, with_eligibility: bool, checkpoints: bool = True):
    """What a fused forward writes: ``H [T, B, N]``, ``AUX [T, B, aux]`` (LSTM: c, i, f, g, o; MLP: the
    layers below the last; ``None`` for the RNN), the scalar modulation ``MS [T, B]`` and its fan-out
    ``MF [T, B, N]`` (when used), and the trace checkpoints ``[ceil(T/K), B, S]`` (``F`` and, for the
    eligibility rule, ``E``) taken before steps 0, K, 2K, ... (``None`` without ``checkpoints``)."""
    T, B = xp.shape[:2]
    N = cfg.hidden
    nck = (T + cfg.segment - 1) // cfg.segment
    aux = {"lstm": 5 * N, "mlp": (len(cfg.layers) - 1) * N}.get(cfg.cell, 0)
    return (
        xp.new_empty(T, B, N),
        xp.new_empty(T, B, aux) if aux else None,
        xp.new_empty(T, B) if cfg.modulation else None,
        xp.new_empty(T, B, N) if cfg.modulation == "fanout" else None,
        xp.new_empty(nck, B, cfg.trace_size) if checkpoints else None,
        xp.new_empty(nck, B, cfg.trace_size) if with_eligibility and checkpoints else None,
    )


def forward_outputs(ctx, cfg: FusedConfig, xp: Tensor, H: Tensor, AUX, MS, MF, F: Tensor, E):
    """What a fused forward returns, ``(H, h_T, c_T, F_T, E_T, M)`` (empty tensors for what the cell does
    not have), ``M`` (the fan-out when used, else the scalar modulation) marked non-differentiable."""
    M = MF if MF is not None else MS
    ctx.mark_non_differentiable(*([M] if M is not None else []))
    empty = xp.new_empty(0)
    hT = H[-1].clone() if cfg.cell != "mlp" else empty
    cT = AUX[-1, :, : cfg.hidden].clone() if cfg.cell == "lstm" else empty
    return H, hT, cT, F, E if E is not None else empty, M if M is not None else empty
