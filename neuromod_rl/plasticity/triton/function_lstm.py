"""The ``autograd.Function`` around the plastic LSTM's Triton kernels (:mod:`.kernels_lstm`).

Importing this module imports Triton. The forward pass runs :func:`~.kernels_lstm.plastic_lstm_forward`
over the whole sequence, saving the per-step activity (``H``; ``AUX``: the cell state and the four
gates), the scalar modulation, and the traces entering every K-th step (K ≈ √T). The backward pass
walks the K-step segments in reverse: :func:`~.kernels_replay.trace_replay` recovers the traces
entering each step of a segment from its checkpoint by replaying the rule alone (its inputs were
saved; the cell is not recomputed), then :func:`~.kernels_lstm.plastic_lstm_backward` walks the
segment backwards. Gradients summed over sequences and steps are formed afterwards as matrix products
(``w``) or reductions of per-sequence partial sums, never by atomics (as :mod:`.function`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from neuromod_rl.plasticity.triton import kernels_lstm, kernels_replay
from neuromod_rl.plasticity.triton.config import LSTMParams, TritonConfig
from neuromod_rl.plasticity.triton.function import (
    LaunchOptions,
    _backward_buffers,
    _checked,
    _forward_buffers,
    _kernel_params,
    _launch_config,
    _modulation_output,
    _param_grads,
    _replay_consts,
    _step_inputs,
    _traces,
    blocks,
    num_warps,
)

#: trace elements each thread holds per tile: the cell adds four gate tiles of ``w`` to the RNN's
#: work, and ptxas (sm_90, N=128) then takes 186-255 registers a thread at the RNN's 8 and 120-200,
#: without spilling more than 16 bytes, at 4 (``compile_check --cells lstm``); which is faster on a
#: GPU is for a GPU run to measure (``tile_width``)
ELEMENTS_PER_THREAD = 4


def lstm_blocks(N: int, block_j: int | None = None) -> tuple[int, int]:
    """``(BLOCK_N, BLOCK_J)`` of the LSTM kernels: :func:`.function.blocks` with their own default tile."""
    if block_j is None:
        block_n = blocks(N)[0]
        block_j = max(4, min(block_n, ELEMENTS_PER_THREAD * 32 * num_warps(block_n) // block_n))
    return blocks(N, block_j)


def _options(opts: LaunchOptions, N: int) -> LaunchOptions:
    return opts._replace(block_j=lstm_blocks(N, opts.block_j)[1])


def _lstm_params(p: LSTMParams, N: int, like: Tensor, dtype: torch.dtype, device: torch.device) -> dict:
    """The parameters as the kernels read them: those of :func:`.function._kernel_params` with ``w [N, 4N]``,
    plus ABCD's ``[N, N]`` tensors; a missing one is replaced by ``like`` (never read: its code path is
    compiled out)."""
    out = _kernel_params(p, N, like, dtype, device, w_cols=4 * N)
    for key, name, t in (("CA", "A", p.A), ("CB", "B", p.Bc), ("CC", "C", p.C), ("CD", "D", p.D),
                         ("CETA", "eta (abcd)", p.etas), ("FINIT", "F0 (abcd)", p.F_init)):
        out[key] = like if t is None else _checked(name, t, (N, N), dtype, device)
    return out


class TritonPlasticLSTM(torch.autograd.Function):
    """Inputs: ``(cfg, opts, starts, xp, ext, h0, c0, F0, E0, *LSTMParams)``; outputs
    ``(H, h_T, c_T, F_T, E_T, M)`` as the fused engine's (``M`` is not differentiable)."""

    @staticmethod
    def forward(ctx, cfg: TritonConfig, opts: LaunchOptions, starts, xp, ext, h0, c0, F0, E0, *flat):
        p = LSTMParams(*flat)
        T, B, X = xp.shape
        N = X // 4
        dtype, device = h0.dtype, h0.device
        retro = E0 is not None
        opts = _options(opts, N)
        launch = _launch_config(cfg, B, N, starts is not None, opts)
        xin, starts8, ext_k = _step_inputs(opts, starts, xp, ext, (T, B, 4 * N), dtype, device)
        h0 = _checked("h0", h0, (B, N), dtype, device)
        c0 = _checked("c0", c0, (B, N), dtype, device)
        F, E = _traces(F0, E0, B, N, dtype, device)
        H, MS, F_ck, E_ck = _forward_buffers(cfg, xp, h0, retro)
        AUX = xp.new_empty(T, B, 5 * N, dtype=dtype)
        k = _lstm_params(p, N, h0, dtype, device)
        kernels_lstm.plastic_lstm_forward[launch.grid](
            xin, h0 if ext_k is None else ext_k, h0 if starts8 is None else starts8, h0, c0, F, E, H, AUX, MS,
            F_ck, E_ck, k["W"], k["ALPHA"], k["WM"], k["BM"], k["WF"], k["BF"], k["ETA"],
            k["CA"], k["CB"], k["CC"], k["CD"], k["CETA"], k["FINIT"],
            T, cfg.segment, B, N, launch.clip, **launch.consts,
        )
        M = _modulation_output(ctx, cfg, MS, k)
        ctx.cfg, ctx.opts, ctx.retro = cfg, opts, retro
        ctx.save_for_backward(starts8, h0, c0, H, AUX, MS if cfg.modulation else None, F_ck,
                              E_ck if retro else None, *flat)
        empty = xp.new_empty(0)
        return H, H[-1].clone(), AUX[-1, :, :N].clone(), F, E if retro else empty, M if M is not None else empty

    @staticmethod
    def backward(ctx, gH, ghT, gcT, gFT, gET, _gM):
        cfg: TritonConfig = ctx.cfg
        starts8, h0, c0, H, AUX, MS, F_ck, E_ck, *flat = ctx.saved_tensors
        p = LSTMParams(*flat)
        T, B, N = H.shape
        dtype, device = H.dtype, H.device
        retro, K = ctx.retro, cfg.segment
        launch = _launch_config(cfg, B, N, starts8 is not None, ctx.opts)
        k = _lstm_params(p, N, h0, dtype, device)
        dummy = h0

        def grad_or_zeros(name, g, shape):
            if g is None or not g.numel():
                return torch.zeros(shape, dtype=dtype, device=device)
            return _checked(name, g, shape, dtype, device).clone()

        gH = grad_or_zeros("grad of H", gH, (T, B, N))
        DH = grad_or_zeros("grad of h_T", ghT, (B, N))
        DC = grad_or_zeros("grad of c_T", gcT, (B, N))
        DF = grad_or_zeros("grad of F_T", gFT, (B, N, N))
        DE = grad_or_zeros("grad of E_T", gET, (B, N, N)) if retro else DF
        DXP = torch.empty(T, B, 4 * N, dtype=dtype, device=device)
        buf = _backward_buffers(cfg, T, B, N, retro, dummy)
        abcd = p.A is not None
        GABCD = torch.zeros(B, 5, N, N, dtype=dtype, device=device) if abcd else dummy
        starts_k = dummy if starts8 is None else starts8
        MS_k = dummy if MS is None else MS
        rule_args = (k["CA"], k["CB"], k["CC"], k["CD"], k["CETA"], k["FINIT"])
        replay_consts = _replay_consts(launch)
        for s in reversed(range(0, T, K)):
            e = min(s + K, T)
            E_in = E_ck[s // K] if retro else F_ck[s // K]
            kernels_replay.trace_replay[launch.grid](
                starts_k, h0, H, AUX, MS_k, F_ck[s // K], E_in, buf.seg_F, buf.seg_E,
                k["ETA"], k["WF"], k["BF"], *rule_args,
                s, e, B, N, 5 * N, 3 * N, launch.clip, **replay_consts,
            )
            kernels_lstm.plastic_lstm_backward[launch.grid](
                starts_k, h0, c0, H, AUX, MS_k, buf.seg_F, buf.seg_E, gH, DH, DC, DF, DE, DXP, buf.DMS, buf.DM,
                buf.GETA, buf.GALPHA, GABCD,
                k["W"], k["ALPHA"], k["WM"], k["WF"], k["BF"], k["ETA"], *rule_args,
                s, e, B, N, launch.clip, **launch.consts,
            )
        gext, grads = _param_grads(cfg, p, starts8, h0, H, MS, DXP, buf)
        gabcd = [None] * 5
        if abcd:
            g = GABCD.sum(0)
            gabcd = [g[1], g[2], g[3], g[4], g[0]]  # accumulated as eta, A, B, C, D
        # in the order of forward's inputs
        return (None, None, None, DXP, gext, DH, DC, DF, DE if retro else None, *grads, *gabcd, None)
