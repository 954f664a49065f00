"""The ``autograd.Function`` around the Triton kernels: checks, launches, and the weight gradients.

Importing this module imports Triton (the backend's ``__init__`` imports it only when a scan runs).
The forward pass runs :func:`~.kernels.plastic_rnn_forward` over the whole sequence, keeping the traces
entering every K-th step (K ≈ √T). The backward pass walks the K-step segments in reverse: it recovers
the traces entering each step of a segment from its checkpoint by replaying the rule alone on the saved
``h`` and ``M`` (:func:`~.kernels_replay.trace_replay`, into a K-slot buffer), then runs
:func:`~.kernels.plastic_rnn_backward` down the segment. Gradients that sum over sequences and
steps are formed afterwards as matrix products (``w``) or reductions of per-sequence partial sums
(``alpha``, ``eta``, the modulator head), never by atomics.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
from torch import Tensor

from neuromod_rl.plasticity.triton import kernels, kernels_replay
from neuromod_rl.plasticity.triton.config import CellParams, TritonConfig

#: trace elements each thread holds per tile: ptxas (sm_90) keeps the kernels near 128 registers a
#: thread without spilling at 8; at 16 they take 230-255 registers, at 32 they spill
ELEMENTS_PER_THREAD = 8


class LaunchOptions(NamedTuple):
    """What a call needs besides the config: the input precision and the column tile width."""

    bf16_input: bool = False
    block_j: int | None = None  # None: ELEMENTS_PER_THREAD * threads // N_pad


def interpreted() -> bool:
    """Whether the kernels were built for Triton's interpreter (``TRITON_INTERPRET=1`` at import)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(kernels.plastic_rnn_forward, InterpretedFunction)


def num_warps(block_n: int) -> int:
    return 8 if block_n >= 128 else 4


def blocks(N: int, block_j: int | None = None) -> tuple[int, int]:
    """``(BLOCK_N, BLOCK_J)``: the padded size (a power of two >= 16) and the column tile width."""
    block_n = max(16, triton.next_power_of_2(N))
    if block_j is None:
        block_j = max(4, min(block_n, ELEMENTS_PER_THREAD * 32 * num_warps(block_n) // block_n))
    if block_j < 1 or block_j & (block_j - 1) or block_j > block_n:
        raise ValueError(f"block_j must be a power of two in [1, {block_n}], got {block_j}")
    return block_n, block_j


def _checked(name: str, t: Tensor, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """Every tensor whose pointer a kernel takes: exact shape, dtype, device, and contiguous memory."""
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"triton backend: {name} must have shape {list(shape)}, got {list(t.shape)}")
    if t.dtype != dtype:
        raise ValueError(f"triton backend: {name} must be {dtype}, got {t.dtype}")
    if t.device != device:
        raise ValueError(f"triton backend: {name} is on {t.device}, the inputs on {device}")
    return t.contiguous()


class _Launch(NamedTuple):
    """The kernels' non-tensor arguments for one call."""

    grid: tuple[int]
    B: int
    N: int
    clip: float
    consts: dict


def _launch_config(cfg: TritonConfig, B: int, N: int, has_starts: bool, opts: LaunchOptions) -> _Launch:
    block_n, block_j = blocks(N, opts.block_j)
    consts = dict(
        RULE=cfg.rule_code,
        MOD=cfg.mod_code,
        EXTERNAL=cfg.external,
        ALPHA_FULL=cfg.alpha_full,
        HAS_STARTS=has_starts,
        BLOCK_N=block_n,
        BLOCK_J=block_j,
    )
    if not interpreted():
        consts["num_warps"] = num_warps(block_n)
    return _Launch((B,), B, N, cfg.clip, consts)


def _kernel_params(p: CellParams, N: int, like: Tensor, dtype: torch.dtype, device: torch.device,
                   w_cols: int | None = None) -> dict:
    """The parameters as the kernels read them: ``w [N, w_cols]`` (``w_cols``: ``N`` unless given), ``alpha
    [N, N]`` or one value per column ``[N]``, ``wm [N]``, ``bm [1]``, ``wf [N]``, ``bf [N]``, ``eta [1]``; a
    missing one is replaced by ``like`` (never read: its code path is compiled out). ``p``: any parameter
    tuple with these fields (the LSTM's too)."""
    full = p.alpha.shape == (N, N)
    alpha = p.alpha if full else p.alpha.reshape(-1).expand(N)
    out = {
        "W": _checked("w", p.w, (N, N if w_cols is None else w_cols), dtype, device),
        "ALPHA": _checked("alpha", alpha, (N, N) if full else (N,), dtype, device),
    }
    for key, t, shape in (("WM", p.wm, (N,)), ("BM", p.bm, (1,)), ("WF", p.wf, (N,)), ("BF", p.bf, (N,)),
                          ("ETA", p.eta, (1,))):
        out[key] = like if t is None else _checked(key.lower(), t.reshape(shape), shape, dtype, device)
    return out


# --- the glue both cells' autograd functions share (the LSTM's in :mod:`.function_lstm`) ----------------
def _step_inputs(opts: LaunchOptions, starts, xp: Tensor, ext, shape: tuple[int, ...], dtype: torch.dtype,
                 device: torch.device) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``(xin, starts8, ext)`` as the kernels read them: the drive ``xp`` of ``shape`` (bfloat16 where
    ``opts`` asks), the episode starts as int8 and the external modulation (``None`` where absent)."""
    xin = xp.to(torch.bfloat16) if opts.bf16_input else xp
    xin = _checked("xp", xin, shape, torch.bfloat16 if opts.bf16_input else dtype, device)
    T, B = shape[:2]
    starts8 = None if starts is None else _checked("episode_starts", starts, (T, B), torch.bool, device).view(
        torch.int8
    )
    ext_k = None if ext is None else _checked("modulation", ext, (T, B), dtype, device)
    return xin, starts8, ext_k


def _traces(F0: Tensor, E0, B: int, N: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """Copies of the entering traces the forward kernel updates in place; ``E`` is ``F`` without ``E0``."""
    F = _checked("F0", F0, (B, N, N), dtype, device).clone()
    E = _checked("E0", E0, (B, N, N), dtype, device).clone() if E0 is not None else F
    return F, E


def _forward_buffers(cfg: TritonConfig, xp: Tensor, h0: Tensor, retro: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(H, MS, F_ck, E_ck)``: the hidden states, the scalar modulation (``h0`` without a modulator) and
    the trace checkpoints of every K-th step (``E_ck`` is ``F_ck`` without an eligibility trace)."""
    T, B = xp.shape[:2]
    N, dtype, K = h0.shape[1], h0.dtype, cfg.segment
    n_ck = (T + K - 1) // K
    H = xp.new_empty(T, B, N, dtype=dtype)
    MS = xp.new_empty(T, B, dtype=dtype) if cfg.modulation else h0
    F_ck = xp.new_empty(n_ck, B, N, N, dtype=dtype)
    E_ck = xp.new_empty(n_ck, B, N, N, dtype=dtype) if retro else F_ck
    return H, MS, F_ck, E_ck


def _modulation_output(ctx, cfg: TritonConfig, MS: Tensor, params: dict) -> Tensor | None:
    """The modulation output ``M`` (the scalar, or its fan-out ``bf + ms * wf``), marked non-differentiable."""
    M = None
    if cfg.modulation == "fanout":
        M = torch.addcmul(params["BF"], MS.unsqueeze(-1), params["WF"])
    elif cfg.modulation == "scalar":
        M = MS
    if M is not None:
        ctx.mark_non_differentiable(M)
    return M


class _BackwardBuffers(NamedTuple):
    """The backward kernels' per-step outputs, per-sequence accumulators and segment trace buffers."""

    DMS: Tensor
    DM: Tensor
    GETA: Tensor
    GALPHA: Tensor
    seg_F: Tensor
    seg_E: Tensor


def _backward_buffers(cfg: TritonConfig, T: int, B: int, N: int, retro: bool, dummy: Tensor) -> _BackwardBuffers:
    """Allocate :class:`_BackwardBuffers` (``dummy`` stands for those the configuration never writes)."""
    dtype, device, K = dummy.dtype, dummy.device, cfg.segment
    seg_F = torch.empty(K, B, N, N, dtype=dtype, device=device)
    return _BackwardBuffers(
        DMS=torch.empty(T, B, dtype=dtype, device=device) if cfg.modulation else dummy,
        DM=torch.empty(T, B, N, dtype=dtype, device=device) if cfg.modulation == "fanout" else dummy,
        GETA=torch.zeros(B, dtype=dtype, device=device),
        GALPHA=torch.zeros(B, N, *((N,) if cfg.alpha_full else ()), dtype=dtype, device=device),
        seg_F=seg_F,
        seg_E=torch.empty_like(seg_F) if retro else seg_F,
    )


def _replay_consts(launch: _Launch) -> dict:
    """The constants :func:`.kernels_replay.trace_replay` takes, from the cell kernels' ones."""
    consts = {key: launch.consts[key] for key in ("RULE", "MOD", "HAS_STARTS", "BLOCK_N", "BLOCK_J")}
    if "num_warps" in launch.consts:
        consts["num_warps"] = launch.consts["num_warps"]
    return consts


def _param_grads(cfg: TritonConfig, p: CellParams, starts8, h0: Tensor, H: Tensor, MS, DXP: Tensor,
                 buf: _BackwardBuffers) -> tuple[Tensor | None, tuple]:
    """``(d ext, (d w, d alpha, d wm, d bm, d wf, d bf, d eta))``: the gradients summed over sequences and
    steps, as matrix products (``w``, whose columns are ``DXP``'s) or reductions of the kernels' partial sums."""
    T, B, N = H.shape
    hp = torch.cat([h0.unsqueeze(0), H[:-1]])
    if starts8 is not None:
        hp = hp.masked_fill(starts8.bool().unsqueeze(-1), 0.0)
    gw = hp.reshape(-1, N).t() @ DXP.reshape(-1, DXP.shape[-1])
    galpha = buf.GALPHA.sum(0)
    galpha = galpha.reshape(p.alpha.shape) if galpha.numel() == p.alpha.numel() else galpha.sum().reshape(p.alpha.shape)
    gwm = gbm = gwf = gbf = gext = None
    if cfg.modulation is not None:
        if cfg.modulation == "fanout":
            gwf = (buf.DM * MS.unsqueeze(-1)).sum((0, 1)).reshape(p.wf.shape)
            gbf = buf.DM.sum((0, 1)).reshape(p.bf.shape)
        if cfg.external:
            gext = buf.DMS
        else:
            dz = buf.DMS * (1 - MS * MS)
            gwm = (dz.unsqueeze(-1) * H).sum((0, 1)).reshape(p.wm.shape)
            gbm = dz.sum().reshape(p.bm.shape)
    geta = None if p.eta is None else buf.GETA.sum().reshape(p.eta.shape)
    return gext, (gw, galpha, gwm, gbm, gwf, gbf, geta)


class TritonPlasticRNN(torch.autograd.Function):
    """Inputs: ``(cfg, opts, starts, xp, ext, h0, F0, E0, *CellParams)``; outputs ``(H, h_T, F_T, E_T, M)``
    as the fused engine's (``M`` is not differentiable)."""

    @staticmethod
    def forward(ctx, cfg: TritonConfig, opts: LaunchOptions, starts, xp, ext, h0, F0, E0,
                w, alpha, wm, bm, wf, bf, eta):
        p = CellParams(w, alpha, wm, bm, wf, bf, eta)
        T, B, N = xp.shape
        dtype, device = h0.dtype, h0.device
        retro = E0 is not None
        launch = _launch_config(cfg, B, N, starts is not None, opts)
        xin, starts8, ext_k = _step_inputs(opts, starts, xp, ext, (T, B, N), dtype, device)
        h0 = _checked("h0", h0, (B, N), dtype, device)
        F, E = _traces(F0, E0, B, N, dtype, device)
        H, MS, F_ck, E_ck = _forward_buffers(cfg, xp, h0, retro)
        params = _kernel_params(p, N, h0, dtype, device)
        kernels.plastic_rnn_forward[launch.grid](
            xin, h0 if ext_k is None else ext_k, h0 if starts8 is None else starts8, h0, F, E, H, MS, F_ck, E_ck,
            params["W"], params["ALPHA"], params["WM"], params["BM"], params["WF"], params["BF"], params["ETA"],
            0, T, cfg.segment, B, N, launch.clip, **launch.consts,
        )
        M = _modulation_output(ctx, cfg, MS, params)
        ctx.cfg, ctx.opts, ctx.retro = cfg, opts, retro
        ctx.save_for_backward(starts8, h0, H, MS if cfg.modulation else None, F_ck, E_ck if retro else None,
                              w, alpha, wm, bm, wf, bf, eta)
        return H, H[-1].clone(), F, E if retro else xp.new_empty(0), M if M is not None else xp.new_empty(0)

    @staticmethod
    def backward(ctx, gH, ghT, gFT, gET, _gM):
        cfg: TritonConfig = ctx.cfg
        starts8, h0, H, MS, F_ck, E_ck, w, alpha, wm, bm, wf, bf, eta = ctx.saved_tensors
        p = CellParams(w, alpha, wm, bm, wf, bf, eta)
        T, B, N = H.shape
        dtype, device = H.dtype, H.device
        retro, K = ctx.retro, cfg.segment
        launch = _launch_config(cfg, B, N, starts8 is not None, ctx.opts)
        params = _kernel_params(p, N, h0, dtype, device)
        dummy = h0
        gH = _checked("grad of H", gH, (T, B, N), dtype, device)
        DH = _checked("grad of h_T", ghT, (B, N), dtype, device).clone()
        DF = _checked("grad of F_T", gFT, (B, N, N), dtype, device).clone()
        DE = _checked("grad of E_T", gET, (B, N, N), dtype, device).clone() if retro and gET.numel() else None
        if retro and DE is None:
            DE = torch.zeros_like(DF)
        DXP = torch.empty_like(H)
        buf = _backward_buffers(cfg, T, B, N, retro, dummy)
        starts_k = dummy if starts8 is None else starts8
        MS_k = dummy if MS is None else MS
        replay_consts = _replay_consts(launch)
        for s in reversed(range(0, T, K)):
            e = min(s + K, T)
            kernels_replay.trace_replay[launch.grid](
                starts_k, h0, H, H, MS_k, F_ck[s // K], E_ck[s // K] if retro else F_ck[s // K], buf.seg_F,
                buf.seg_E, params["ETA"], params["WF"], params["BF"], *(dummy,) * 6,
                s, e, B, N, N, 0, launch.clip, **replay_consts,
            )
            kernels.plastic_rnn_backward[launch.grid](
                starts_k, h0, H, MS_k, buf.seg_F, buf.seg_E, gH, DH, DF, DE if retro else DF,
                DXP, buf.DMS, buf.DM, buf.GETA, buf.GALPHA,
                params["W"], params["ALPHA"], params["WM"], params["WF"], params["BF"], params["ETA"],
                s, e, B, N, launch.clip, **launch.consts,
            )
        gext, grads = _param_grads(cfg, p, starts8, h0, H, MS, DXP, buf)
        # in the order of forward's inputs
        return (None, None, None, DXP, gext, DH, DF, DE, *grads)
