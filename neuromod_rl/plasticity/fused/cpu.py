"""The fused engine on CPU tensors: the C kernel behind one ``autograd.Function``.

The C interface is declared once, in ``kernel/fused_kernel.h`` (``layer``, ``config``, ``fwd_io``,
``bwd_io``), and mirrored here once as ctypes Structures. Every tensor is checked (dtype, device,
shape, contiguity) by :func:`_pointer` before its address is taken: compiled code trusts the layout it
is given, so a mismatch must be an error here, never a wrong read there.
"""

from __future__ import annotations

import ctypes
from functools import cache

import torch
from torch import Tensor

from neuromod_rl.plasticity.fused import build
from neuromod_rl.plasticity.fused.spec import (
    ACTIVATION_CODES,
    MOD_CODES,
    N_LAYER_PARAMS,
    FusedConfig,
    LayerParams,
    ModParams,
)
from neuromod_rl.plasticity.fused.torch_ops import allocate_outputs, forward_outputs

available = build.available


@cache
def _interface(dtype: torch.dtype):
    """``(lib, Layer, Config, FwdIO, BwdIO)``: ctypes Structures for ``real`` = the C type of ``dtype``."""
    real = ctypes.c_float if dtype == torch.float32 else ctypes.c_double
    ptr, i64 = ctypes.c_void_p, ctypes.c_int64

    class Layer(ctypes.Structure):
        _fields_ = [
            *((name, ctypes.c_int) for name in ("n_pre", "n_post", "rule", "alpha_full", "act", "max_norm")),
            *((name, real) for name in ("clip", "eta")),
            *((name, i64) for name in ("f_off", "g_off", "w_cols")),
            *((name, ptr) for name in ("w", "b", "alpha", "A", "Bc", "C", "D", "etas")),
        ]

    class Config(ctypes.Structure):
        _fields_ = [
            *((name, ctypes.c_int) for name in ("T", "B", "N", "X", "cell", "mod", "external", "K", "nthreads",
                                                "n_layers")),
            *((name, i64) for name in ("S", "G")),
            ("bm", real),
            *((name, ptr) for name in ("wm", "wf", "bf", "F_init")),
            ("layers", ctypes.POINTER(Layer)),
        ]

    class FwdIO(ctypes.Structure):
        _fields_ = [
            (name, ptr)
            for name in ("xp", "ext", "h0", "c0", "starts", "F", "E", "H", "AUX", "MS", "MF", "F_ck", "E_ck")
        ]

    class BwdIO(ctypes.Structure):
        _fields_ = [
            (name, ptr)
            for name in ("starts", "xp", "h0", "c0", "H", "AUX", "MS", "F_ck", "E_ck", "gH", "dh", "dc", "dF", "dE",
                         "gxp", "gA", "gms", "gmf", "grad")
        ]

    lib = build.load()[dtype]
    lib.plastic_forward.argtypes = [ctypes.POINTER(Config), ctypes.POINTER(FwdIO)]
    lib.plastic_backward.argtypes = [ctypes.POINTER(Config), ctypes.POINTER(BwdIO)]
    lib.plastic_forward.restype = lib.plastic_backward.restype = ctypes.c_int
    return lib, Layer, Config, FwdIO, BwdIO


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


def grad_layout(cfg: FusedConfig) -> tuple[list[int], int]:
    """Where each layer's gradients start in a thread's block of ``G`` numbers, and ``G``: alpha (full
    matrix or per-neuron vector), the scalar rate, then ABCD's A, B, C, D, eta (the order of rules.h)."""
    offsets, at = [], 0
    for L in cfg.layers:
        offsets.append(at)
        at += (L.size if L.alpha == "full" else L.n_post) + 1 + (5 * L.size if L.rule == "abcd" else 0)
    return offsets, at


def _kernel_config(cfg: FusedConfig, T: int, B: int, X: int, nthreads: int, mp: ModParams, lps: list[LayerParams],
                   F_init: Tensor | None, dtype: torch.dtype):
    """The ``config`` struct and the tensors its pointers refer to (keep them alive while it is used)."""
    _, Layer, Config, _, _ = _interface(dtype)
    N = cfg.hidden
    keep: list[Tensor] = []

    def ptr(name, t, shape):
        if t is None:
            return None
        t = t.contiguous()
        keep.append(t)
        return _pointer(name, t, dtype, shape)

    g_offsets, G = grad_layout(cfg)
    layers = (Layer * len(cfg.layers))()
    for k, (L, p, f_off, g_off) in enumerate(zip(cfg.layers, lps, cfg.trace_offsets(), g_offsets)):
        shape = (L.n_pre, L.n_post)
        full = L.alpha == "full"
        alpha = p.alpha if full else p.alpha.reshape(-1).expand(L.n_post)
        w_cols = 0 if p.w is None else p.w.shape[1]
        layers[k] = Layer(
            L.n_pre, L.n_post, L.rule_code, int(full), ACTIVATION_CODES[L.activation][0], int(L.max_norm),
            L.clip if L.clip != float("inf") else 0.0,
            0.0 if p.eta is None else float(p.eta),
            f_off, g_off, w_cols,
            ptr(f"layer {k} w", p.w, (L.n_pre, w_cols)),
            ptr(f"layer {k} bias", p.b, (L.n_post,)),
            ptr(f"layer {k} alpha", alpha, shape if full else (L.n_post,)),
            *(ptr(f"layer {k} ABCD {name}", getattr(p, name), shape) for name in ("A", "Bc", "C", "D", "etas")),
        )
    config = Config(
        T, B, N, X, cfg.cell_code, MOD_CODES[cfg.modulation][0], int(cfg.external), cfg.segment, nthreads,
        len(cfg.layers), cfg.trace_size, G,
        0.0 if mp.bm is None else float(mp.bm),
        ptr("modulator weight", None if mp.wm is None else mp.wm.reshape(-1), (N,)),
        ptr("fan-out weight", None if mp.wf is None else mp.wf.reshape(-1), (N,)),
        ptr("fan-out bias", mp.bf, (N,)),
        ptr("initial traces", F_init, (cfg.trace_size,)),
        layers,
    )
    keep.append(layers)
    return config, keep


def run_forward(cfg: FusedConfig, starts, xp, ext, h0, c0, F0, E0, F_init, mp: ModParams, lps: list[LayerParams]):
    """The forward kernel over ``xp [T, B, X]``: ``(H, AUX, MS, MF, F_ck, E_ck, F_T, E_T, starts_u8, nthreads)``
    (``None`` for what the cell does not have). No autograd: :class:`FusedPlasticCPU` wraps it for training,
    :func:`neuromod_rl.plasticity.fused.step.inference_step` calls it with ``T = 1`` for rollouts."""
    dtype = xp.dtype
    lib, _, _, FwdIO, _ = _interface(dtype)
    T, B, X = xp.shape
    N, S = cfg.hidden, cfg.trace_size
    xp = xp.contiguous()
    h0 = None if h0 is None else h0.contiguous()
    c0 = None if c0 is None else c0.contiguous()
    starts_u8 = None if starts is None else starts.to(torch.uint8).contiguous()
    ext = None if ext is None else ext.contiguous()
    F = F0.detach().clone(memory_format=torch.contiguous_format)
    E = None if E0 is None else E0.detach().clone(memory_format=torch.contiguous_format)
    H, AUX, MS, MF, F_ck, E_ck = allocate_outputs(xp, cfg, with_eligibility=E is not None)
    nthreads = max(1, min(torch.get_num_threads(), B))
    config, keep = _kernel_config(cfg, T, B, X, nthreads, mp, lps, F_init, dtype)
    nck, A = F_ck.shape[0], 0 if AUX is None else AUX.shape[2]
    io = FwdIO(
        _pointer("xp", xp, dtype, (T, B, cfg.input_width)),
        _pointer("modulation", ext, dtype, (T, B)),
        _pointer("state.h", h0, dtype, (B, N)),
        _pointer("state.c", c0, dtype, (B, N)),
        _pointer("episode_starts", starts_u8, torch.uint8, (T, B)),
        _pointer("traces F", F, dtype, (B, S)),
        _pointer("traces E", E, dtype, (B, S)),
        _pointer("H", H, dtype, (T, B, N)),
        _pointer("AUX", AUX, dtype, (T, B, A)),
        _pointer("M", MS, dtype, (T, B)),
        _pointer("M fan-out", MF, dtype, (T, B, N)),
        _pointer("F checkpoints", F_ck, dtype, (nck, B, S)),
        _pointer("E checkpoints", E_ck, dtype, (nck, B, S)),
    )
    _check_status(lib.plastic_forward(ctypes.byref(config), ctypes.byref(io)), "forward", S, cfg.segment)
    del keep
    return H, AUX, MS, MF, F_ck, E_ck, F, E, starts_u8, nthreads


def _step_key(mp: ModParams, lps: list[LayerParams], B: int, X: int) -> tuple:
    """What a cached step config depends on: every parameter's storage, dtype and shape, and the sizes."""
    tensors = [t for t in (*mp, *(t for p in lps for t in p)) if t is not None]
    return B, X, *((t.data_ptr(), t.dtype, t.shape) for t in tensors)


class StepKernel:
    """The forward kernel for one step (``T = 1``) of one cell, its ``config`` struct built once.

    Rollouts and ``predict`` run a cell one step at a time, where building the struct (and checking every
    parameter's pointer) would cost more than the step itself. The struct points at the parameters'
    storage, so it stays right while they are updated in place (optimizer steps, ``load_state_dict``);
    :func:`neuromod_rl.plasticity.fused.step.inference_step` rebuilds it when a parameter is replaced (a new
    storage, dtype or shape: :meth:`matches`). What the struct holds by value -- the scalar rates, the
    modulator bias, a scalar ``alpha`` expanded per neuron -- is re-read on every call.
    """

    def __init__(self, cfg: FusedConfig, mp: ModParams, lps: list[LayerParams], B: int, X: int, dtype: torch.dtype):
        self.cfg, self.dtype, self.B, self.X = cfg, dtype, B, X
        self.key = _step_key(mp, lps, B, X)
        # a scalar alpha is expanded per neuron into a tensor owned here (refreshed each call)
        self.expanded = {
            k: p.alpha.reshape(-1).expand(L.n_post).clone()
            for k, (L, p) in enumerate(zip(cfg.layers, lps))
            if L.alpha != "full" and p.alpha.numel() == 1 and L.n_post > 1
        }
        lps = [p._replace(alpha=self.expanded[k]) if k in self.expanded else p for k, p in enumerate(lps)]
        self.config, self.keep = _kernel_config(cfg, 1, B, X, 1, mp, lps, None, dtype)

    def matches(self, mp: ModParams, lps: list[LayerParams], B: int, X: int) -> bool:
        return self.key == _step_key(mp, lps, B, X)

    def __call__(self, mp: ModParams, lps: list[LayerParams], xp: Tensor, ext, h0, c0, F0: Tensor, E0):
        """One step: ``(H [1, B, N], AUX, MS, MF, F, E)`` from ``xp [B, X]`` and the state before it."""
        cfg, dtype, B = self.cfg, self.dtype, self.B
        lib, _, _, FwdIO, _ = _interface(dtype)
        N, S = cfg.hidden, cfg.trace_size
        for k, p in enumerate(lps):  # the values the struct holds by value
            if p.eta is not None:
                self.config.layers[k].eta = float(p.eta)
            if k in self.expanded:
                self.expanded[k].copy_(p.alpha.reshape(-1).expand_as(self.expanded[k]))
        if mp.bm is not None:
            self.config.bm = float(mp.bm)
        xp = xp.contiguous()
        h0 = None if h0 is None else h0.contiguous()
        c0 = None if c0 is None else c0.contiguous()
        ext = None if ext is None else ext.contiguous()
        F = F0.detach().clone(memory_format=torch.contiguous_format)
        E = None if E0 is None else E0.detach().clone(memory_format=torch.contiguous_format)
        H, AUX, MS, MF, _, _ = allocate_outputs(xp.unsqueeze(0), cfg, with_eligibility=False, checkpoints=False)
        A = 0 if AUX is None else AUX.shape[2]
        io = FwdIO(
            _pointer("xp", xp, dtype, (B, self.X)),
            _pointer("modulation", ext, dtype, (B,)),
            _pointer("state.h", h0, dtype, (B, N)),
            _pointer("state.c", c0, dtype, (B, N)),
            None,
            _pointer("traces F", F, dtype, (B, S)),
            _pointer("traces E", E, dtype, (B, S)),
            _pointer("H", H, dtype, (1, B, N)),
            _pointer("AUX", AUX, dtype, (1, B, A)),
            _pointer("M", MS, dtype, (1, B)),
            _pointer("M fan-out", MF, dtype, (1, B, N)),
            None,
            None,
        )
        _check_status(lib.plastic_forward(ctypes.byref(self.config), ctypes.byref(io)), "step", S, 1)
        return H, AUX, MS, MF, F, E


class FusedPlasticCPU(torch.autograd.Function):
    """Same contract as :class:`~neuromod_rl.plasticity.fused.torch_ops.FusedPlasticTorch`; the loops run
    in C. Inputs ``(cfg, starts, xp, ext, h0, c0, F0, E0, F_init, wm, bm, wf, bf, *layer params)``;
    outputs ``(H, h_T, c_T, F_T, E_T, M)`` (empty tensors for what the cell does not have)."""

    @staticmethod
    def forward(ctx, cfg, starts, xp, ext, h0, c0, F0, E0, F_init, wm, bm, wf, bf, *flat):
        H, AUX, MS, MF, F_ck, E_ck, F, E, starts_u8, nthreads = run_forward(
            cfg, starts, xp, ext, h0, c0, F0, E0, F_init, ModParams(wm, bm, wf, bf), _layer_params(flat)
        )
        ctx.cfg, ctx.nthreads = cfg, nthreads
        h0, c0 = (None if t is None else t.contiguous() for t in (h0, c0))
        ctx.save_for_backward(starts_u8, xp.contiguous() if cfg.cell == "mlp" else None, h0, c0, H, AUX, MS, F_ck,
                              E_ck, F_init, wm, bm, wf, bf, *flat)
        return forward_outputs(ctx, cfg, xp, H, AUX, MS, MF, F, E)

    @staticmethod
    def backward(ctx, gH, ghT, gcT, gFT, gET, _gM):
        cfg, nthreads = ctx.cfg, ctx.nthreads
        starts_u8, xp, h0, c0, H, AUX, MS, F_ck, E_ck, F_init, wm, bm, wf, bf, *flat = ctx.saved_tensors
        mp, lps = ModParams(wm, bm, wf, bf), _layer_params(flat)
        dtype = H.dtype
        lib, _, _, _, BwdIO = _interface(dtype)
        T, B, N = H.shape
        S, X, L = cfg.trace_size, cfg.input_width, len(cfg.layers)
        recurrent, lstm = cfg.cell != "mlp", cfg.cell == "lstm"

        def start_from(g, shape):
            return g.contiguous().clone() if g is not None and g.numel() else H.new_zeros(shape)

        dh = start_from(ghT, (B, N)) if recurrent else None
        dc = start_from(gcT, (B, N)) if lstm else None
        dF = start_from(gFT, (B, S))
        dE = start_from(gET, (B, S)) if E_ck is not None else None
        gxp = H.new_empty(T, B, X)
        gA = H.new_empty(T, B, L * N) if not recurrent else None
        gms = H.new_zeros(T, B) if cfg.modulation else None
        gmf = H.new_zeros(T, B, N) if cfg.modulation == "fanout" else None
        config, keep = _kernel_config(cfg, T, B, X, nthreads, mp, lps, F_init, dtype)
        grad = H.new_zeros(nthreads, config.G)
        nck, A = F_ck.shape[0], 0 if AUX is None else AUX.shape[2]
        gH_k = None if gH is None else gH.contiguous()
        io = BwdIO(
            _pointer("episode_starts", starts_u8, torch.uint8, (T, B)),
            _pointer("xp", xp, dtype, (T, B, X)),
            _pointer("state.h", h0, dtype, (B, N)),
            _pointer("state.c", c0, dtype, (B, N)),
            _pointer("H", H, dtype, (T, B, N)),
            _pointer("AUX", AUX, dtype, (T, B, A)),
            _pointer("M", MS, dtype, (T, B)),
            _pointer("F checkpoints", F_ck, dtype, (nck, B, S)),
            _pointer("E checkpoints", E_ck, dtype, (nck, B, S)),
            _pointer("grad H", gH_k, dtype, (T, B, N)),
            _pointer("grad h", dh, dtype, (B, N)),
            _pointer("grad c", dc, dtype, (B, N)),
            _pointer("grad F", dF, dtype, (B, S)),
            _pointer("grad E", dE, dtype, (B, S)),
            _pointer("grad xp", gxp, dtype, (T, B, X)),
            _pointer("grad pre-activations", gA, dtype, (T, B, L * N)),
            _pointer("grad M", gms, dtype, (T, B)),
            _pointer("grad M fan-out", gmf, dtype, (T, B, N)),
            _pointer("grad rule parameters", grad, dtype, (nthreads, config.G)),
        )
        _check_status(lib.plastic_backward(ctypes.byref(config), ctypes.byref(io)), "backward", S, cfg.segment)
        del keep
        grad = grad.sum(0)
        g_offsets, _ = grad_layout(cfg)
        layer_grads = []
        for k, (Lspec, p, at) in enumerate(zip(cfg.layers, lps, g_offsets)):
            if recurrent:
                g_w, g_b = _recurrent_weight_grad(starts_u8, h0, H, gxp), None
            else:  # layer k reads the input (k = 0) or the layer below; da: its pre-activation gradient
                pre = xp if k == 0 else AUX[:, :, (k - 1) * N : k * N]
                da = gA[:, :, k * N : (k + 1) * N]
                g_w = None if p.w is None else pre.reshape(-1, pre.shape[-1]).t() @ da.reshape(-1, N)
                g_b = None if p.b is None else da.sum((0, 1))
            layer_grads.append(_rule_grads(Lspec, p, grad, at, g_w, g_b))
        g_wm = g_bm = g_wf = g_bf = None
        if cfg.modulation and not cfg.external:
            g_wm = gms.reshape(1, -1) @ H.reshape(-1, N)
            g_bm = gms.sum().reshape(1)
        if cfg.modulation == "fanout":
            g_wf = (MS.reshape(1, -1) @ gmf.reshape(-1, N)).t()
            g_bf = gmf.sum((0, 1))
        g_ext = gms if cfg.external else None
        flat_grads = [g for lg in layer_grads for g in lg]
        return (None, None, gxp, g_ext, dh, dc, dF, dE, None, g_wm, g_bm, g_wf, g_bf, *flat_grads)


def _layer_params(flat) -> list[LayerParams]:
    return [LayerParams(*flat[k : k + N_LAYER_PARAMS]) for k in range(0, len(flat), N_LAYER_PARAMS)]


def _recurrent_weight_grad(starts_u8, h0: Tensor, H: Tensor, gxp: Tensor) -> Tensor:
    """``sum_t pre_t^T da_t`` for a recurrent cell: the presynaptic activity of step t is h_{t-1} (h0 at t=0),
    zero where an episode starts: sum over all steps, then take back the few (t, b) that started one."""
    N = H.shape[2]
    g_w = torch.addmm(h0.t() @ gxp[0], H[:-1].reshape(-1, N).t(), gxp[1:].reshape(-1, gxp.shape[2]))
    if starts_u8 is not None:
        t_idx, b_idx = starts_u8.nonzero(as_tuple=True)
        if len(t_idx):
            pre = torch.where((t_idx == 0).unsqueeze(1), h0[b_idx], H[(t_idx - 1).clamp_min(0), b_idx])
            g_w -= pre.t() @ gxp[t_idx, b_idx]
    return g_w


def _rule_grads(L, p: LayerParams, grad: Tensor, at: int, g_w, g_b) -> LayerParams:
    """One layer's gradients from the reduced block (layout: :func:`grad_layout`)."""
    NA = L.size if L.alpha == "full" else L.n_post
    g_alpha = grad[at : at + NA]
    if L.alpha == "full":
        g_alpha = g_alpha.reshape(L.n_pre, L.n_post)
    else:
        g_alpha = g_alpha.reshape(1, -1) if p.alpha.shape[-1] > 1 else g_alpha.sum().reshape(1, 1)
    g_eta = None if p.eta is None else grad[at + NA].reshape(p.eta.shape)
    abcd = [None] * 5
    if L.rule == "abcd":
        base = at + NA + 1
        abcd = [grad[base + k * L.size : base + (k + 1) * L.size].reshape(L.n_pre, L.n_post) for k in range(5)]
    return LayerParams(g_w, g_b, g_alpha, g_eta, *abcd)


def _check_status(status: int, phase: str, S: int, K: int) -> None:
    if status:
        need = 2 * K * S * 8 / 2**20
        raise MemoryError(
            f"fused plastic scan {phase}: could not allocate the kernel's scratch memory (about {need:.0f} MiB per "
            f"thread for {S} trace entries per sequence); use a smaller batch or hidden size, or free memory"
        )
