"""The fused engine on CPU tensors: the C kernel behind one ``autograd.Function``.

The C interface is declared once, in ``kernel/fused_kernel.h`` (``config``, ``fwd_io``, ``bwd_io``), and
mirrored here once as ctypes Structures. Every tensor is checked (dtype, device, shape, contiguity)
by :func:`_pointer` before its address is taken: compiled code trusts the layout it is given, so a
mismatch must be an error here, never a wrong read there.
"""

from __future__ import annotations

import ctypes
from functools import cache

import torch
from torch import Tensor

from neuromod_rl.plasticity.fused import build
from neuromod_rl.plasticity.fused.spec import MOD_CODES, FusedConfig
from neuromod_rl.plasticity.fused.torch_ops import allocate_outputs

available = build.available


@cache
def _interface(dtype: torch.dtype):
    """``(Config, FwdIO, BwdIO)`` ctypes Structures for ``real`` = the C type of ``dtype``."""
    real = ctypes.c_float if dtype == torch.float32 else ctypes.c_double
    ptr = ctypes.c_void_p

    ints = ("T", "B", "N", "rule", "alpha_full", "mod", "external", "K", "nthreads")

    class Config(ctypes.Structure):
        _fields_ = [
            *((name, ctypes.c_int) for name in ints),
            *((name, real) for name in ("clip", "eta", "bm")),
            *((name, ptr) for name in ("w", "alpha", "wm", "wf", "bf")),
        ]

    class FwdIO(ctypes.Structure):
        _fields_ = [(name, ptr) for name in ("xp", "ext", "h0", "starts", "F", "E", "H", "MS", "MF", "F_ck", "E_ck")]

    class BwdIO(ctypes.Structure):
        _fields_ = [
            (name, ptr)
            for name in ("starts", "h0", "H", "MS", "F_ck", "E_ck", "gH", "dh", "dF", "dE", "gxp", "gms", "gmf",
                         "galpha", "geta")
        ]

    lib = build.load()[dtype]
    lib.plastic_rnn_forward.argtypes = [ctypes.POINTER(Config), ctypes.POINTER(FwdIO)]
    lib.plastic_rnn_backward.argtypes = [ctypes.POINTER(Config), ctypes.POINTER(BwdIO)]
    lib.plastic_rnn_forward.restype = lib.plastic_rnn_backward.restype = ctypes.c_int
    return lib, Config, FwdIO, BwdIO


def _pointer(name: str, t: Tensor | None, dtype: torch.dtype, shape: tuple[int, ...]) -> int | None:
    """The address of ``t`` after checking that it is exactly what the kernel will read."""
    if t is None:
        return None
    if t.device.type != "cpu":
        raise ValueError(f"fused CPU kernel: {name} is on {t.device}, expected a CPU tensor")
    if t.dtype != dtype:
        raise ValueError(f"fused CPU kernel: {name} is {t.dtype}, expected {dtype}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"fused CPU kernel: {name} has shape {tuple(t.shape)}, expected {tuple(shape)}")
    if not t.is_contiguous():
        raise ValueError(f"fused CPU kernel: {name} is not contiguous")
    return t.data_ptr()


def _config(cfg: FusedConfig, dtype, T, B, N, nthreads, eta, bm, w, alpha, wm, wf, bf):
    _, Config, _, _ = _interface(dtype)
    full = cfg.alpha == "full"
    return Config(
        T, B, N, cfg.rule_code, int(full), MOD_CODES[cfg.modulation][0], int(cfg.external), cfg.segment, nthreads,
        cfg.clip if cfg.clip != float("inf") else 0.0,
        0.0 if eta is None else float(eta),
        0.0 if bm is None else float(bm),
        _pointer("w", w, dtype, (N, N)),
        _pointer("alpha", alpha, dtype, (N, N) if full else (N,)),
        _pointer("modulator weight", wm, dtype, (N,)),
        _pointer("fan-out weight", wf, dtype, (N,)),
        _pointer("fan-out bias", bf, dtype, (N,)),
    )


class FusedPlasticRNNCPU(torch.autograd.Function):
    """Same contract as :class:`~neuromod_rl.plasticity.fused.torch_ops.FusedPlasticRNNTorch`; the loops
    run in C. ``alpha`` arrives as given by the rule (``[N, N]``, ``[1, N]`` or ``[1, 1]``); the kernel
    takes a full matrix or a per-postsynaptic vector."""

    @staticmethod
    def forward(ctx, cfg, starts, xp, ext, h0, F0, E0, w, alpha, wm, bm, wf, bf, eta):
        dtype = xp.dtype
        lib, _, FwdIO, _ = _interface(dtype)
        T, B, N = xp.shape
        full = cfg.alpha == "full"
        alpha_k = alpha.contiguous() if full else alpha.reshape(-1).expand(N).contiguous()
        xp, h0 = xp.contiguous(), h0.contiguous()
        starts_u8 = None if starts is None else starts.to(torch.uint8).contiguous()
        ext = None if ext is None else ext.contiguous()
        F = F0.detach().clone(memory_format=torch.contiguous_format)
        E = None if E0 is None else E0.detach().clone(memory_format=torch.contiguous_format)
        H, MS, MF, F_ck, E_ck = allocate_outputs(xp, cfg, with_eligibility=E is not None)
        wm_k = None if wm is None else wm.reshape(-1).contiguous()
        wf_k = None if wf is None else wf.reshape(-1).contiguous()
        bf_k = None if bf is None else bf.contiguous()
        w_k = w.contiguous()
        nthreads = max(1, min(torch.get_num_threads(), B))
        config = _config(cfg, dtype, T, B, N, nthreads, eta, bm, w_k, alpha_k, wm_k, wf_k, bf_k)
        nck = F_ck.shape[0]
        io = FwdIO(
            _pointer("xp", xp, dtype, (T, B, N)),
            _pointer("modulation", ext, dtype, (T, B)),
            _pointer("state.h", h0, dtype, (B, N)),
            _pointer("episode_starts", starts_u8, torch.uint8, (T, B)),
            _pointer("state.F", F, dtype, (B, N, N)),
            _pointer("state.E", E, dtype, (B, N, N)),
            _pointer("H", H, dtype, (T, B, N)),
            _pointer("M", MS, dtype, (T, B)),
            _pointer("M fan-out", MF, dtype, (T, B, N)),
            _pointer("F checkpoints", F_ck, dtype, (nck, B, N, N)),
            _pointer("E checkpoints", E_ck, dtype, (nck, B, N, N)),
        )
        _check_status(lib.plastic_rnn_forward(ctypes.byref(config), ctypes.byref(io)), "forward", N, cfg.segment)
        ctx.cfg, ctx.nthreads = cfg, nthreads
        ctx.save_for_backward(starts_u8, h0, H, MS, F_ck, E_ck, w_k, alpha_k, wm_k, bm, wf_k, bf_k, eta, alpha)
        M = MF if MF is not None else MS
        ctx.mark_non_differentiable(*([M] if M is not None else []))
        empty = xp.new_empty(0)
        return H, H[-1].clone(), F, E if E is not None else empty, M if M is not None else empty

    @staticmethod
    def backward(ctx, gH, ghT, gFT, gET, _gM):
        cfg, nthreads = ctx.cfg, ctx.nthreads
        starts_u8, h0, H, MS, F_ck, E_ck, w_k, alpha_k, wm_k, bm, wf_k, bf_k, eta, alpha = ctx.saved_tensors
        dtype = H.dtype
        lib, _, _, BwdIO = _interface(dtype)
        T, B, N = H.shape
        full = cfg.alpha == "full"
        retro = E_ck is not None
        dh = ghT.contiguous().clone() if ghT is not None else H.new_zeros(B, N)
        dF = gFT.contiguous().clone() if gFT is not None else H.new_zeros(B, N, N)
        dE = None
        if retro:
            dE = gET.contiguous().clone() if gET is not None and gET.numel() else H.new_zeros(B, N, N)
        gxp = H.new_empty(T, B, N)
        gms = H.new_zeros(T, B) if cfg.modulation else None
        gmf = H.new_zeros(T, B, N) if cfg.modulation == "fanout" else None
        galpha = H.new_zeros(nthreads, N * N if full else N)
        geta = H.new_zeros(B)
        gH_k = None if gH is None else gH.contiguous()
        config = _config(cfg, dtype, T, B, N, nthreads, eta, bm, w_k, alpha_k, wm_k, wf_k, bf_k)
        nck = F_ck.shape[0]
        io = BwdIO(
            _pointer("episode_starts", starts_u8, torch.uint8, (T, B)),
            _pointer("state.h", h0, dtype, (B, N)),
            _pointer("H", H, dtype, (T, B, N)),
            _pointer("M", MS, dtype, (T, B)),
            _pointer("F checkpoints", F_ck, dtype, (nck, B, N, N)),
            _pointer("E checkpoints", E_ck, dtype, (nck, B, N, N)),
            _pointer("grad H", gH_k, dtype, (T, B, N)),
            _pointer("grad h", dh, dtype, (B, N)),
            _pointer("grad F", dF, dtype, (B, N, N)),
            _pointer("grad E", dE, dtype, (B, N, N)),
            _pointer("grad xp", gxp, dtype, (T, B, N)),
            _pointer("grad M", gms, dtype, (T, B)),
            _pointer("grad M fan-out", gmf, dtype, (T, B, N)),
            _pointer("grad alpha", galpha, dtype, (nthreads, N * N if full else N)),
            _pointer("grad eta", geta, dtype, (B,)),
        )
        _check_status(lib.plastic_rnn_backward(ctypes.byref(config), ctypes.byref(io)), "backward", N, cfg.segment)
        # Parameter gradients that are sums over (t, b) of per-step vectors: one matmul each.
        # the presynaptic activity of step t is h_{t-1} (h0 at t=0), zero where an episode starts: sum
        # over all steps, then take back the few (t, b) that started an episode
        g_w = torch.addmm(h0.t() @ gxp[0], H[:-1].reshape(-1, N).t(), gxp[1:].reshape(-1, N))
        if starts_u8 is not None:
            t_idx, b_idx = starts_u8.nonzero(as_tuple=True)
            if len(t_idx):
                pre = torch.where((t_idx == 0).unsqueeze(1), h0[b_idx], H[(t_idx - 1).clamp_min(0), b_idx])
                g_w -= pre.t() @ gxp[t_idx, b_idx]
        g_alpha = galpha.sum(0).reshape(N, N) if full else _reduce_vector_alpha(galpha.sum(0), alpha)
        g_wm = g_bm = g_wf = g_bf = None
        if cfg.modulation and not cfg.external:
            g_wm = gms.reshape(1, -1) @ H.reshape(-1, N)
            g_bm = gms.sum().reshape(1)
        if cfg.modulation == "fanout":
            g_wf = (MS.reshape(1, -1) @ gmf.reshape(-1, N)).t()
            g_bf = gmf.sum((0, 1))
        g_ext = gms if cfg.external else None
        g_eta = geta.sum() if eta is not None else None
        return None, None, gxp, g_ext, dh, dF, dE, g_w, g_alpha, g_wm, g_bm, g_wf, g_bf, g_eta


def _check_status(status: int, phase: str, N: int, K: int) -> None:
    if status:
        need = K * N * N * 8 / 2**20
        raise MemoryError(
            f"fused plastic RNN {phase}: could not allocate the kernel's scratch memory (about {need:.0f} MiB per "
            f"thread for N={N}); use a smaller batch or hidden size, or free memory"
        )


def _reduce_vector_alpha(g: Tensor, alpha: Tensor) -> Tensor:
    return g.reshape(1, -1) if alpha.shape[-1] > 1 else g.sum().reshape(1, 1)
