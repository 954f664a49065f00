"""One step of a cell without autograd, for rollouts and ``predict``.

``cell.step`` is the specification, written one equation per line; a rollout calls it once per env
step on a handful of sequences, where each tensor op and each line of Python costs more than its
arithmetic. This step computes the same equation in one call of the C kernel's forward pass (``T = 1``:
every sequence and layer, the trace update included), or, on CUDA or without a compiler, with the
torch-op path's fused ops. :func:`neuromod_rl.plasticity.cell_step` picks it under ``torch.no_grad``;
``tests/plasticity/test_fused.py`` holds it to ``cell.step``.
"""

from __future__ import annotations

import weakref

import torch
from torch import Tensor

from neuromod_rl.plasticity.cells import PlasticCell
from neuromod_rl.plasticity.fused import cpu
from neuromod_rl.plasticity.fused.spec import (
    FusedConfig,
    LayerParams,
    ModParams,
    config_for,
    layer_params,
    side_by_side,
    split_traces,
    trace_fields,
)
from neuromod_rl.plasticity.fused.torch_rules import plastic_drive, update_
from neuromod_rl.plasticity.state import PlasticState

_ACT = {"tanh": torch.tanh_, "relu": torch.relu_, "identity": lambda a: a}


def _modulation(cfg: FusedConfig, mp: ModParams, h: Tensor, external: Tensor | None):
    """``M(t)`` as the rule takes it (``[B]``, or ``[B, N]`` fan-out), or ``None``."""
    if cfg.modulation is None:
        return None
    ms = external.reshape(h.shape[0]) if cfg.external else torch.addmm(mp.bm, h, mp.wm.t()).tanh_().squeeze(1)
    return ms if cfg.modulation == "scalar" else torch.addmm(mp.bf, ms.unsqueeze(1), mp.wf.t())


#: cell -> its cached one-step kernel config (CPU)
_STEP_KERNELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def inference_step(
    cell: PlasticCell, xp: Tensor, state: PlasticState, modulation: Tensor | None = None
) -> tuple[Tensor, Tensor | None, PlasticState]:
    """``cell.step(xp, state, modulation)``: ``(y_t, M(t) or None, next state)``. Call it under
    ``torch.no_grad``: it builds no graph."""
    cfg = config_for(cell, 1)
    mp, lps = layer_params(cell, xp)
    if xp.device.type == "cpu" and cpu.available():
        return _kernel_step(cell, cfg, mp, lps, xp, state, modulation)
    return _torch_step(cfg, mp, lps, xp, state, modulation)


def _kernel_step(cell, cfg: FusedConfig, mp: ModParams, lps: list[LayerParams], xp: Tensor, state: PlasticState,
                 modulation: Tensor | None):
    """One step of the C kernel's forward (T = 1): a single call for all sequences and layers."""
    B, X = xp.shape
    kernel = _STEP_KERNELS.get(cell)
    if kernel is None or kernel.cfg != cfg or kernel.dtype != xp.dtype or not kernel.matches(mp, lps, B, X):
        kernel = _STEP_KERNELS[cell] = cpu.StepKernel(cfg, mp, lps, B, X, xp.dtype)
    F0, E0 = side_by_side(cfg, state, B)
    h0 = state.h if cfg.cell != "mlp" else None
    c0 = state.c if cfg.cell == "lstm" else None
    ext = modulation.reshape(B) if cfg.external else None
    H, AUX, MS, MF, F, E = kernel(mp, lps, xp, ext, h0, c0, F0, E0)
    new = split_traces(cfg, F, E, B)
    h = H[0]
    if h0 is not None:
        new["h"] = h
    if c0 is not None:
        new["c"] = AUX[0, :, : cfg.hidden]
    m = None if cfg.modulation is None else (MF[0] if MF is not None else MS[0])
    return h, m, state.replace(**new)


def _torch_step(cfg: FusedConfig, mp: ModParams, lps: list[LayerParams], xp: Tensor, state: PlasticState,
                modulation: Tensor | None):
    """The same step as torch ops (CUDA tensors, or no C compiler)."""
    fields = trace_fields(cfg)
    F = [state[f] for f, _ in fields]
    E = [state[e] if e is not None else None for _, e in fields]
    posts = []
    if cfg.cell == "mlp":
        x, pres = xp, []
        for L, p, Fl in zip(cfg.layers, lps, F):
            a = plastic_drive(L, p, x, Fl, Fl.new_empty(Fl.shape) if L.alpha == "full" else None)
            if p.w is not None:
                a = a.addmm_(x, p.w)
            if p.b is not None:
                a = a.add_(p.b)
            pres.append(x)
            x = _ACT[L.activation](a)
            posts.append(x)
        h = x
        new = {}
    else:
        L, p, N = cfg.layers[0], lps[0], cfg.hidden
        hp = state.h
        pres = [hp]
        z = torch.addmm(xp, hp, p.w)
        tmp = F[0].new_empty(F[0].shape) if L.alpha == "full" else None
        if cfg.cell == "rnn":
            h = z.add_(plastic_drive(L, p, hp, F[0], tmp)).tanh_()
            posts.append(h)
            new = {"h": h}
        else:  # LSTM: gate blocks i, f, g, o; the candidate's recurrent matrix is plastic
            z[:, 2 * N : 3 * N] += plastic_drive(L, p, hp, F[0], tmp)
            i, f, o = (torch.sigmoid(z[:, k * N : (k + 1) * N]) for k in (0, 1, 3))
            g = torch.tanh(z[:, 2 * N : 3 * N])
            c = torch.addcmul(f * state.c, i, g)
            h = o * torch.tanh(c)
            posts.append(g)
            new = {"h": h, "c": c}
    m = _modulation(cfg, mp, h, modulation)
    for L, p, (f, e), Fl, El, x, y in zip(cfg.layers, lps, fields, F, E, pres, posts):
        Fl, El = Fl.clone(), None if El is None else El.clone()
        update_(L, p, Fl, El, x, y, m)
        new[f] = Fl
        if e is not None:
            new[e] = El
    return h, m, state.replace(**new)
