"""The fused engine as exact torch ops (CUDA tensors, and CPU without a C compiler).

One ``autograd.Function`` whose forward runs the time loop under ``no_grad`` with in-place trace
updates (``baddbmm_``, ``addcmul_``, ``clamp_``) and whose backward is written by hand: it saves the
hidden states and the scalar modulation per step plus the traces every K-th step, and replays each
K-step segment from its checkpoint to walk it in reverse. Same contract and same floats as the C
kernel (:mod:`neuromod_rl.plasticity.fused.cpu`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from neuromod_rl.plasticity.fused.spec import FusedConfig, RuleParams


# --- one forward step, shared by the forward pass and the backward replay (same floats) -----------
def _modulation(cfg: FusedConfig, p: RuleParams, h: Tensor, ext_t: Tensor | None):
    """``(scalar M(t) [B], effective modulation [B] or [B, N])``, or ``(None, None)``."""
    if cfg.modulation is None:
        return None, None
    ms = ext_t if cfg.external else torch.tanh(torch.addmm(p.bm, h, p.wm.t())).squeeze(1)
    if cfg.modulation == "scalar":
        return ms, ms
    return ms, torch.addmm(p.bf, ms.unsqueeze(1), p.wf.t())


def _drive(cfg: FusedConfig, p: RuleParams, xp_t: Tensor, hp: Tensor, F: Tensor, tmp: Tensor) -> Tensor:
    """Pre-activation ``xp_t + hp (w + alpha ⊙ F)``."""
    a = torch.addmm(xp_t, hp, p.w)
    if cfg.alpha == "full":
        torch.mul(F, p.alpha, out=tmp)
        return torch.baddbmm(a.unsqueeze(1), hp.unsqueeze(1), tmp).squeeze(1)
    return a.addcmul_(torch.bmm(hp.unsqueeze(1), F).squeeze(1), p.alpha)


def _hebb_factors(m: Tensor | None, hp: Tensor, h: Tensor, scale: Tensor | None):
    """Column ``u`` and row ``v`` with ``outer(u, v) = m ⊙ scale ⊙ outer(hp, h)`` (one ``baddbmm_``)."""
    u, v = hp, h
    if scale is not None:
        u = u * scale
    if m is not None:
        if m.dim() == 1:
            u = u * m.unsqueeze(1)
        else:
            v = v * m
    return u.unsqueeze(2), v.unsqueeze(1)


def _update(
    cfg: FusedConfig, p: RuleParams, F: Tensor, E: Tensor | None, hp: Tensor, h: Tensor, m: Tensor | None
) -> None:
    """The rule's trace update, in place (equations in ``neuromod_rl/plasticity/rules``)."""
    if cfg.rule == "neuromod":
        F.baddbmm_(*_hebb_factors(m, hp, h, None)).clamp_(-cfg.clip, cfg.clip)
    elif cfg.rule == "clipped":
        F.baddbmm_(*_hebb_factors(None, hp, h, p.eta)).clamp_(-cfg.clip, cfg.clip)
    elif cfg.rule == "hebbian":
        F.mul_(1 - p.eta).baddbmm_(*_hebb_factors(None, hp, h, p.eta))
    else:  # retroactive: F uses the previous E, then E decays towards the new co-activation
        F.addcmul_(E, m.view(m.shape[0], 1, -1)).clamp_(-cfg.clip, cfg.clip)
        E.mul_(1 - p.eta).baddbmm_(*_hebb_factors(None, hp, h, p.eta))


def _reset_(starts_t: Tensor, *tensors: Tensor | None) -> None:
    for t in tensors:
        if t is not None:
            t.masked_fill_(starts_t.view(-1, *([1] * (t.dim() - 1))), 0.0)


class FusedPlasticRNNTorch(torch.autograd.Function):
    """Inputs: ``(cfg, starts, xp, ext, h0, F0, E0, *RuleParams)``; outputs ``(H, h_T, F_T, E_T, M)``."""

    @staticmethod
    def forward(ctx, cfg: FusedConfig, starts, xp, ext, h0, F0, E0, w, alpha, wm, bm, wf, bf, eta):
        p = RuleParams(w, alpha, wm, bm, wf, bf, eta)
        T, B, N = xp.shape
        K = cfg.segment
        H, MS, MF, F_ck, E_ck = allocate_outputs(xp, cfg, with_eligibility=E0 is not None)
        M = MF if MF is not None else MS
        F, E = F0.clone(), None if E0 is None else E0.clone()
        h = h0
        tmp = xp.new_empty(B, N, N) if cfg.alpha == "full" else None
        for t in range(T):
            if t % K == 0:
                F_ck[t // K].copy_(F)
                if E is not None:
                    E_ck[t // K].copy_(E)
            hp = h
            if starts is not None and starts[t].any():
                hp = hp.masked_fill(starts[t].unsqueeze(1), 0.0)
                _reset_(starts[t], F, E)
            h = torch.tanh(_drive(cfg, p, xp[t], hp, F, tmp))
            ms, m = _modulation(cfg, p, h, None if ext is None else ext[t])
            _update(cfg, p, F, E, hp, h, m)
            H[t] = h
            if ms is not None:
                MS[t] = ms
                if cfg.modulation == "fanout":
                    M[t] = m
        ctx.cfg = cfg
        ctx.save_for_backward(starts, xp, ext, h0, H, MS, F_ck, E_ck, w, alpha, wm, bm, wf, bf, eta)
        ctx.mark_non_differentiable(*([M] if M is not None else []))
        outs = (H, h.clone(), F, E if E is not None else xp.new_empty(0), M if M is not None else xp.new_empty(0))
        return outs

    @staticmethod
    def backward(ctx, gH, ghT, gFT, gET, _gM):
        cfg: FusedConfig = ctx.cfg
        starts, xp, ext, h0, H, MS, F_ck, E_ck, w, alpha, wm, bm, wf, bf, eta = ctx.saved_tensors
        p = RuleParams(w, alpha, wm, bm, wf, bf, eta)
        T, B, N = xp.shape
        K = cfg.segment
        retro = E_ck is not None
        grads = _Grads(p, xp, ext, retro)
        dh = ghT.clone() if ghT is not None else xp.new_zeros(B, N)
        dF = gFT.clone() if gFT is not None else xp.new_zeros(B, N, N)
        dE = (gET.clone() if gET is not None and gET.numel() else xp.new_zeros(B, N, N)) if retro else None
        seg_F = xp.new_empty(K, B, N, N)
        seg_E = xp.new_empty(K, B, N, N) if retro else None
        tmp = xp.new_empty(B, N, N)
        for s in reversed(range(0, T, K)):
            e = min(s + K, T)
            # Replay the segment forward from its checkpoint, keeping the traces entering each step.
            F = F_ck[s // K].clone()
            E = E_ck[s // K].clone() if retro else None
            for t in range(s, e):
                hp = _pre(t, H, h0, starts)
                if starts is not None and starts[t].any():
                    _reset_(starts[t], F, E)
                seg_F[t - s].copy_(F)
                if retro:
                    seg_E[t - s].copy_(E)
                if t + 1 < e:
                    m = _effective_m(cfg, p, MS, t)
                    _update(cfg, p, F, E, hp, H[t], m)
            for t in reversed(range(s, e)):
                if gH is not None:
                    dh += gH[t]
                hp = _pre(t, H, h0, starts)
                dhp = _step_backward(cfg, p, grads, t, xp, ext, hp, H[t], MS, seg_F[t - s],
                                     None if seg_E is None else seg_E[t - s], dh, dF, dE, tmp)
                if starts is not None and starts[t].any():
                    _reset_(starts[t], dhp, dF, dE)
                dh = dhp
        return (None, None, grads.xp, grads.ext, dh, dF, dE, *grads.params())


def _pre(t: int, H: Tensor, h0: Tensor, starts: Tensor | None) -> Tensor:
    hp = h0 if t == 0 else H[t - 1]
    if starts is not None and starts[t].any():
        hp = hp.masked_fill(starts[t].unsqueeze(1), 0.0)
    return hp


def _effective_m(cfg: FusedConfig, p: RuleParams, MS: Tensor | None, t: int) -> Tensor | None:
    if cfg.modulation is None:
        return None
    ms = MS[t]
    return ms if cfg.modulation == "scalar" else torch.addmm(p.bf, ms.unsqueeze(1), p.wf.t())


class _Grads:
    """Accumulators for the parameter gradients (summed over batch and time as they come)."""

    def __init__(self, p: RuleParams, xp: Tensor, ext: Tensor | None, retro: bool):
        self.xp = torch.empty_like(xp)
        self.ext = None if ext is None else torch.empty_like(ext)
        self.w = torch.zeros_like(p.w)
        self.alpha = torch.zeros_like(p.alpha)
        self.wm = None if p.wm is None else torch.zeros_like(p.wm)
        self.bm = None if p.bm is None else torch.zeros_like(p.bm)
        self.wf = None if p.wf is None else torch.zeros_like(p.wf)
        self.bf = None if p.bf is None else torch.zeros_like(p.bf)
        self.eta = None if p.eta is None else torch.zeros_like(p.eta)

    def params(self):
        return self.w, self.alpha, self.wm, self.bm, self.wf, self.bf, self.eta


def _step_backward(cfg, p, g: _Grads, t, xp, ext, hp, h, MS, Fb, Eb, dh, dF, dE, tmp) -> Tensor:
    """Backward of one step. ``dh``/``dF``/``dE`` hold the gradients w.r.t. this step's outputs and
    are updated in place to those w.r.t. the traces entering it; returns the gradient of ``h_{t-1}``."""
    dhp = torch.zeros_like(hp)
    ms = None if MS is None else MS[t]
    m = _effective_m(cfg, p, MS, t)
    # -- trace update ----------------------------------------------------------------------------
    dm = None
    if cfg.rule in ("neuromod", "clipped", "retroactive"):
        # gradient of the clip: zero where the pre-clip value left [-c, c] (clamp's own convention)
        P = tmp
        if cfg.rule == "retroactive":
            torch.addcmul(Fb, Eb, m.view(m.shape[0], 1, -1), out=P)
        else:
            P.copy_(Fb).baddbmm_(*_hebb_factors(m, hp, h, p.eta if cfg.rule == "clipped" else None))
        dF.mul_(P.abs_().le_(cfg.clip))  # dF is now dP, the gradient of the pre-clip trace
    if cfg.rule == "neuromod":
        dm = _modulated_hebb_backward(m, hp, h, dF, dhp, dh)
    elif cfg.rule == "clipped":
        v = torch.bmm(dF, h.unsqueeze(2)).squeeze(2)
        g.eta += (hp * v).sum()
        dhp.addcmul_(v, p.eta.expand_as(v))
        dh.addcmul_(torch.bmm(hp.unsqueeze(1), dF).squeeze(1), p.eta.expand_as(h))
    elif cfg.rule == "hebbian":
        v = torch.bmm(dF, h.unsqueeze(2)).squeeze(2)
        g.eta += (hp * v).sum() - (dF * Fb).sum()
        dhp.addcmul_(v, p.eta.expand_as(v))
        dh.addcmul_(torch.bmm(hp.unsqueeze(1), dF).squeeze(1), p.eta.expand_as(h))
        dF.mul_(1 - p.eta)
    elif cfg.rule == "retroactive":
        # F_t = clip(Fb + m ⊙ Eb); E_t = (1 - eta_e) Eb + eta_e outer(hp, h)
        prod = torch.mul(dF, Eb, out=tmp)
        dm = prod.sum(1) if m.dim() == 2 else prod.sum((1, 2))
        v = torch.bmm(dE, h.unsqueeze(2)).squeeze(2)
        g.eta += (hp * v).sum() - (dE * Eb).sum()
        dhp.addcmul_(v, p.eta.expand_as(v))
        dh.addcmul_(torch.bmm(hp.unsqueeze(1), dE).squeeze(1), p.eta.expand_as(h))
        dE.mul_(1 - p.eta).addcmul_(dF, m.view(m.shape[0], 1, -1))
    # -- modulator head ----------------------------------------------------------------------------
    if dm is not None:
        if cfg.modulation == "fanout":  # m = bf + ms * wf
            g.wf += (dm * ms.unsqueeze(1)).sum(0).unsqueeze(1)
            g.bf += dm.sum(0)
            dms = dm @ p.wf.squeeze(1)
        else:
            dms = dm
        if cfg.external:
            g.ext[t] = dms
        else:  # ms = tanh(h wm^T + bm)
            dz = dms * (1 - ms * ms)
            g.wm += (dz.unsqueeze(1) * h).sum(0, keepdim=True)
            g.bm += dz.sum()
            dh.addcmul_(dz.unsqueeze(1), p.wm)
    elif cfg.external:
        g.ext[t] = 0.0
    # -- h = tanh(xp + hp (w + alpha ⊙ Fb)) -----------------------------------------------------------
    da = dh.mul_(1 - h * h)
    g.xp[t] = da
    g.w.addmm_(hp.t(), da)
    dhp.addmm_(da, p.w.t())
    if cfg.alpha == "full":
        W = torch.mul(Fb, p.alpha, out=tmp)
        dhp += torch.bmm(W, da.unsqueeze(2)).squeeze(2)
        O = torch.mul(hp.unsqueeze(2), da.unsqueeze(1), out=tmp)
        dF.addcmul_(O, p.alpha)
        g.alpha += O.mul_(Fb).sum(0)
    else:
        ad = da * p.alpha
        dhp += torch.bmm(Fb, ad.unsqueeze(2)).squeeze(2)
        dF.baddbmm_(hp.unsqueeze(2), ad.unsqueeze(1))
        u = torch.bmm(hp.unsqueeze(1), Fb).squeeze(1) * da
        g.alpha += u.sum(0, keepdim=True) if p.alpha.shape[1] > 1 else u.sum().view(1, 1)
    return dhp


def _modulated_hebb_backward(m: Tensor, hp: Tensor, h: Tensor, dP: Tensor, dhp: Tensor, dh: Tensor) -> Tensor:
    """Backward of ``m ⊙ outer(hp, h)`` given its gradient ``dP``: adds into ``dhp`` and ``dh``, returns ``dm``."""
    u = torch.bmm(hp.unsqueeze(1), dP).squeeze(1)  # u_j = sum_i hp_i dP_ij
    if m.dim() == 1:
        v = torch.bmm(dP, h.unsqueeze(2)).squeeze(2)  # v_i = sum_j dP_ij h_j
        dhp.addcmul_(v, m.unsqueeze(1))
        dh.addcmul_(u, m.unsqueeze(1))
        return (hp * v).sum(1)
    dhp += torch.bmm(dP, (m * h).unsqueeze(2)).squeeze(2)
    dh.addcmul_(u, m)
    return h * u


def allocate_outputs(xp: Tensor, cfg: FusedConfig, with_eligibility: bool):
    """What a fused forward writes: hidden states ``H [T, B, N]``, the scalar modulation ``MS [T, B]``
    and its fan-out ``MF [T, B, N]`` (when used), and the trace checkpoints ``[ceil(T/K), B, N, N]``
    (``F`` and, for the eligibility rule, ``E``) taken before steps 0, K, 2K, ..."""
    T, B, N = xp.shape
    nck = (T + cfg.segment - 1) // cfg.segment
    return (
        xp.new_empty(T, B, N),
        xp.new_empty(T, B) if cfg.modulation else None,
        xp.new_empty(T, B, N) if cfg.modulation == "fanout" else None,
        xp.new_empty(nck, B, N, N),
        xp.new_empty(nck, B, N, N) if with_eligibility else None,
    )
