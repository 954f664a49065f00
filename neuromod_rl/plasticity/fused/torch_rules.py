"""One plastic layer of the torch-op fused path: the drive ``x (alpha ⊙ F)``, the rules' in-place trace
updates (equations in ``neuromod_rl/plasticity/rules``) and their hand-written backward passes.

``x`` is the layer's presynaptic activity ``[B, n_pre]``, ``y`` its postsynaptic activity ``[B, n_post]``,
``m`` the modulation: ``[B]`` (scalar ``M(t)``), ``[B, n_post]`` (fan-out) or ``None``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from neuromod_rl.plasticity.fused.spec import LayerParams, LayerSpec


def _col(m: Tensor) -> Tensor:
    """The modulation shaped to broadcast over ``[B, n_pre, n_post]``."""
    return m.view(m.shape[0], 1, -1)


def _hebb_factors(m: Tensor | None, x: Tensor, y: Tensor, scale: Tensor | None):
    """Column ``u`` and row ``v`` with ``outer(u, v) = m ⊙ scale ⊙ outer(x, y)`` (one ``baddbmm_``)."""
    u, v = x, y
    if scale is not None:
        u = u * scale
    if m is not None:
        if m.dim() == 1:
            u = u * m.unsqueeze(1)
        else:
            v = v * m
    return u.unsqueeze(2), v.unsqueeze(1)


def abcd_term(p: LayerParams, x: Tensor, y: Tensor) -> Tensor:
    """``A x y + B x + C y + D`` per synapse, ``[B, n_pre, n_post]``."""
    xc, yr = x.unsqueeze(2), y.unsqueeze(1)
    return p.A * xc * yr + p.Bc * xc + p.C * yr + p.D


def update_(L: LayerSpec, p: LayerParams, F: Tensor, E: Tensor | None, x: Tensor, y: Tensor, m: Tensor | None) -> None:
    """One step of the layer's rule, in place on ``F`` (and ``E``)."""
    if L.rule == "neuromod":
        F.baddbmm_(*_hebb_factors(m, x, y, None)).clamp_(-L.clip, L.clip)
    elif L.rule == "clipped":
        F.baddbmm_(*_hebb_factors(None, x, y, p.eta)).clamp_(-L.clip, L.clip)
    elif L.rule == "hebbian":
        F.mul_(1 - p.eta).baddbmm_(*_hebb_factors(None, x, y, p.eta))
    elif L.rule == "retroactive":  # F uses the previous E, then E decays towards the new co-activation
        F.addcmul_(E, _col(m)).clamp_(-L.clip, L.clip)
        E.mul_(1 - p.eta).baddbmm_(*_hebb_factors(None, x, y, p.eta))
    elif L.rule == "oja":  # F + eta y (x - F y)
        yr = y.unsqueeze(1)
        F.addcmul_(x.unsqueeze(2) - F * yr, p.eta * yr)
    else:  # abcd: F + m eta (A x y + B x + C y + D), then optionally F / max|F|
        delta = p.etas * abcd_term(p, x, y)
        F.add_(delta if m is None else _col(m) * delta)
        if L.max_norm:
            F.div_(_max_norm_divisor(F))


def _max_norm_divisor(G: Tensor) -> Tensor:
    """ABCD's ``max_norm`` divisor per sequence, ``max(max |G|, 1e-8)``, shaped ``[B, 1, 1]``."""
    return G.abs().amax(dim=(1, 2), keepdim=True).clamp_min(1e-8)


def _max_norm_backward(G: Tensor, dF: Tensor) -> Tensor:
    """Gradient w.r.t. ``G`` of ``G / max(max |G|, 1e-8)`` given the gradient ``dF`` of the result (through
    torch's own ops, so ties at the max share the gradient as the reference's do)."""
    with torch.enable_grad():
        G = G.detach().requires_grad_()
        (dG,) = torch.autograd.grad(G / _max_norm_divisor(G), G, dF)
    return dG


def update_backward(L: LayerSpec, p: LayerParams, g: LayerParams, x, y, m, Fb, Eb, dF, dE, dx, dy, tmp):
    """Backward of :func:`update_`. ``dF``/``dE`` hold the gradients w.r.t. the traces after the update and
    leave holding those w.r.t. the traces before it; adds into ``dx``, ``dy`` and the accumulators ``g``;
    returns the gradient of ``m`` (``[B]`` or ``[B, n_post]``), or ``None``."""
    dm = None
    if L.rule in ("neuromod", "clipped", "retroactive"):
        # gradient of the clip: zero where the pre-clip value left [-c, c] (clamp's own convention)
        P = tmp
        if L.rule == "retroactive":
            torch.addcmul(Fb, Eb, _col(m), out=P)
        else:
            P.copy_(Fb).baddbmm_(*_hebb_factors(m, x, y, p.eta if L.rule == "clipped" else None))
        dF.mul_(P.abs_().le_(L.clip))  # dF is now the gradient of the pre-clip trace
    if L.rule == "neuromod":
        dm = _modulated_hebb_backward(m, x, y, dF, dx, dy)
    elif L.rule in ("clipped", "hebbian"):
        v = torch.bmm(dF, y.unsqueeze(2)).squeeze(2)
        g.eta.add_((x * v).sum() - ((dF * Fb).sum() if L.rule == "hebbian" else 0))
        dx.addcmul_(v, p.eta.expand_as(v))
        dy.addcmul_(torch.bmm(x.unsqueeze(1), dF).squeeze(1), p.eta.expand_as(y))
        if L.rule == "hebbian":
            dF.mul_(1 - p.eta)
    elif L.rule == "retroactive":  # F_t = clip(Fb + m Eb); E_t = (1 - eta_e) Eb + eta_e outer(x, y)
        prod = torch.mul(dF, Eb, out=tmp)
        dm = prod.sum(1) if m.dim() == 2 else prod.sum((1, 2))
        v = torch.bmm(dE, y.unsqueeze(2)).squeeze(2)
        g.eta.add_((x * v).sum() - (dE * Eb).sum())
        dx.addcmul_(v, p.eta.expand_as(v))
        dy.addcmul_(torch.bmm(x.unsqueeze(1), dE).squeeze(1), p.eta.expand_as(y))
        dE.mul_(1 - p.eta).addcmul_(dF, _col(m))
    elif L.rule == "oja":  # F' = F + eta y (x - F y)
        yr, xc = y.unsqueeze(1), x.unsqueeze(2)
        ey = p.eta * yr
        r = xc - Fb * yr
        g.eta.add_((dF * yr * r).sum())
        dx.add_((dF * ey).sum(2))
        dy.add_((dF * (p.eta * r - ey * Fb)).sum(1))
        dF.mul_(1 - ey * yr)
    else:  # abcd
        s = abcd_term(p, x, y)
        if L.max_norm:  # dF becomes the gradient of the trace before the division
            delta = p.etas * s
            dF.copy_(_max_norm_backward(Fb + (delta if m is None else _col(m) * delta), dF))
        q = dF if m is None else dF * _col(m)
        qe = q * p.etas
        xc, yr = x.unsqueeze(2), y.unsqueeze(1)
        g.etas.add_((q * s).sum(0))
        g.A.add_((qe * xc * yr).sum(0))
        g.Bc.add_((qe * xc).sum(0))
        g.C.add_((qe * yr).sum(0))
        g.D.add_(qe.sum(0))
        dx.add_((qe * (p.A * yr + p.Bc)).sum(2))
        dy.add_((qe * (p.A * xc + p.C)).sum(1))
        if m is not None:
            ds = (dF * p.etas * s).sum(1)
            dm = ds if m.dim() == 2 else ds.sum(1)
    return dm


def _modulated_hebb_backward(m: Tensor, x: Tensor, y: Tensor, dP: Tensor, dx: Tensor, dy: Tensor) -> Tensor:
    """Backward of ``m ⊙ outer(x, y)`` given its gradient ``dP``: adds into ``dx`` and ``dy``, returns ``dm``."""
    u = torch.bmm(x.unsqueeze(1), dP).squeeze(1)  # u_j = sum_i x_i dP_ij
    if m.dim() == 1:
        v = torch.bmm(dP, y.unsqueeze(2)).squeeze(2)  # v_i = sum_j dP_ij y_j
        dx.addcmul_(v, m.unsqueeze(1))
        dy.addcmul_(u, m.unsqueeze(1))
        return (x * v).sum(1)
    dx += torch.bmm(dP, (m * y).unsqueeze(2)).squeeze(2)
    dy.addcmul_(u, m)
    return y * u


def plastic_drive(L: LayerSpec, p: LayerParams, x: Tensor, F: Tensor, tmp: Tensor) -> Tensor:
    """The plastic part of the drive, ``x (alpha ⊙ F)``, ``[B, n_post]``."""
    if L.alpha == "full":
        torch.mul(F, p.alpha, out=tmp)
        return torch.bmm(x.unsqueeze(1), tmp).squeeze(1)
    return torch.bmm(x.unsqueeze(1), F).squeeze(1) * p.alpha


def plastic_drive_backward(L: LayerSpec, p: LayerParams, g: LayerParams, x, Fb, da, dx, dF, tmp) -> None:
    """Backward of :func:`plastic_drive` given ``da``: adds into ``dx``, ``dF`` and ``g.alpha``."""
    if L.alpha == "full":
        W = torch.mul(Fb, p.alpha, out=tmp)
        dx += torch.bmm(W, da.unsqueeze(2)).squeeze(2)
        O = torch.mul(x.unsqueeze(2), da.unsqueeze(1), out=tmp)
        dF.addcmul_(O, p.alpha)
        g.alpha.add_(O.mul_(Fb).sum(0))
    else:
        ad = da * p.alpha
        dx += torch.bmm(Fb, ad.unsqueeze(2)).squeeze(2)
        dF.baddbmm_(x.unsqueeze(2), ad.unsqueeze(1))
        u = torch.bmm(x.unsqueeze(1), Fb).squeeze(1) * da
        g.alpha.add_(u.sum(0, keepdim=True) if p.alpha.shape[1] > 1 else u.sum().view(1, 1))
