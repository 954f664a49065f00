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
from neuromod_rl.plasticity.triton.function import LaunchOptions, _checked, _launch_config, blocks, num_warps

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


def _kernel_params(p: LSTMParams, N: int, like: Tensor, dtype: torch.dtype, device: torch.device) -> dict:
    """The parameters as the kernels read them: ``w [N, 4N]``, ``alpha [N, N]`` or one per column ``[N]``,
    ``wm [N]``, ``bm [1]``, ``wf [N]``, ``bf [N]``, ``eta [1]``, ABCD's ``[N, N]`` tensors; a missing
    one is replaced by ``like`` (never read: its code path is compiled out)."""
    full = p.alpha.shape == (N, N)
    alpha = p.alpha if full else p.alpha.reshape(-1).expand(N)
    out = {
        "W": _checked("w", p.w, (N, 4 * N), dtype, device),
        "ALPHA": _checked("alpha", alpha, (N, N) if full else (N,), dtype, device),
    }
    shapes = {"WM": (N,), "BM": (1,), "WF": (N,), "BF": (N,), "ETA": (1,)}
    for key, t in zip(("WM", "BM", "WF", "BF", "ETA"), (p.wm, p.bm, p.wf, p.bf, p.eta)):
        out[key] = like if t is None else _checked(key.lower(), t.reshape(shapes[key]), shapes[key], dtype, device)
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
        xin = xp.to(torch.bfloat16) if opts.bf16_input else xp
        xin = _checked("xp", xin, (T, B, 4 * N), torch.bfloat16 if opts.bf16_input else dtype, device)
        starts8 = None if starts is None else _checked("episode_starts", starts, (T, B), torch.bool, device).view(
            torch.int8
        )
        ext_k = None if ext is None else _checked("modulation", ext, (T, B), dtype, device)
        h0 = _checked("h0", h0, (B, N), dtype, device)
        c0 = _checked("c0", c0, (B, N), dtype, device)
        F = _checked("F0", F0, (B, N, N), dtype, device).clone()
        E = _checked("E0", E0, (B, N, N), dtype, device).clone() if retro else F
        K = cfg.segment
        n_ck = (T + K - 1) // K
        H = xp.new_empty(T, B, N, dtype=dtype)
        AUX = xp.new_empty(T, B, 5 * N, dtype=dtype)
        MS = xp.new_empty(T, B, dtype=dtype) if cfg.modulation else h0
        F_ck = xp.new_empty(n_ck, B, N, N, dtype=dtype)
        E_ck = xp.new_empty(n_ck, B, N, N, dtype=dtype) if retro else F_ck
        k = _kernel_params(p, N, h0, dtype, device)
        kernels_lstm.plastic_lstm_forward[launch.grid](
            xin, h0 if ext_k is None else ext_k, h0 if starts8 is None else starts8, h0, c0, F, E, H, AUX, MS,
            F_ck, E_ck, k["W"], k["ALPHA"], k["WM"], k["BM"], k["WF"], k["BF"], k["ETA"],
            k["CA"], k["CB"], k["CC"], k["CD"], k["CETA"], k["FINIT"],
            T, K, B, N, launch.clip, **launch.consts,
        )
        M = None
        if cfg.modulation == "fanout":
            M = torch.addcmul(k["BF"], MS.unsqueeze(-1), k["WF"])
        elif cfg.modulation == "scalar":
            M = MS
        ctx.cfg, ctx.opts, ctx.retro = cfg, opts, retro
        ctx.save_for_backward(starts8, h0, c0, H, AUX, MS if cfg.modulation else None, F_ck,
                              E_ck if retro else None, *flat)
        if M is not None:
            ctx.mark_non_differentiable(M)
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
        k = _kernel_params(p, N, h0, dtype, device)
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
        DMS = torch.empty(T, B, dtype=dtype, device=device) if cfg.modulation else dummy
        DM = torch.empty_like(H) if cfg.modulation == "fanout" else dummy
        GETA = torch.zeros(B, dtype=dtype, device=device)
        GALPHA = torch.zeros(B, N, *((N,) if cfg.alpha_full else ()), dtype=dtype, device=device)
        abcd = p.A is not None
        GABCD = torch.zeros(B, 5, N, N, dtype=dtype, device=device) if abcd else dummy
        seg_F = torch.empty(K, B, N, N, dtype=dtype, device=device)
        seg_E = torch.empty_like(seg_F) if retro else seg_F
        starts_k = dummy if starts8 is None else starts8
        MS_k = dummy if MS is None else MS
        rule_args = (k["CA"], k["CB"], k["CC"], k["CD"], k["CETA"], k["FINIT"])
        consts = launch.consts
        replay_consts = {key: consts[key] for key in ("RULE", "MOD", "HAS_STARTS", "BLOCK_N", "BLOCK_J")}
        if "num_warps" in consts:
            replay_consts["num_warps"] = consts["num_warps"]
        for s in reversed(range(0, T, K)):
            e = min(s + K, T)
            E_in = E_ck[s // K] if retro else F_ck[s // K]
            kernels_replay.trace_replay[launch.grid](
                starts_k, h0, H, AUX, MS_k, F_ck[s // K], E_in, seg_F, seg_E,
                k["ETA"], k["WF"], k["BF"], *rule_args,
                s, e, B, N, 5 * N, 3 * N, launch.clip, **replay_consts,
            )
            kernels_lstm.plastic_lstm_backward[launch.grid](
                starts_k, h0, c0, H, AUX, MS_k, seg_F, seg_E, gH, DH, DC, DF, DE, DXP, DMS, DM, GETA, GALPHA, GABCD,
                k["W"], k["ALPHA"], k["WM"], k["WF"], k["BF"], k["ETA"], *rule_args,
                s, e, B, N, launch.clip, **consts,
            )
        return _assemble(cfg, p, starts8, h0, H, MS, DXP, DMS, DM, GETA, GALPHA, GABCD, DH, DC, DF,
                         DE if retro else None)


def _assemble(cfg: TritonConfig, p: LSTMParams, starts8, h0, H, MS, DXP, DMS, DM, GETA, GALPHA, GABCD,
              DH, DC, DF, DE):
    """The gradients in the order of :meth:`TritonPlasticLSTM.forward`'s inputs."""
    T, B, N = H.shape
    hp = torch.cat([h0.unsqueeze(0), H[:-1]])
    if starts8 is not None:
        hp = hp.masked_fill(starts8.bool().unsqueeze(-1), 0.0)
    gw = hp.reshape(-1, N).t() @ DXP.reshape(-1, 4 * N)
    galpha = GALPHA.sum(0)
    galpha = galpha.reshape(p.alpha.shape) if galpha.numel() == p.alpha.numel() else galpha.sum().reshape(p.alpha.shape)
    gwm = gbm = gwf = gbf = gext = None
    if cfg.modulation is not None:
        if cfg.modulation == "fanout":
            gwf = (DM * MS.unsqueeze(-1)).sum((0, 1)).reshape(p.wf.shape)
            gbf = DM.sum((0, 1)).reshape(p.bf.shape)
        if cfg.external:
            gext = DMS
        else:
            dz = DMS * (1 - MS * MS)
            gwm = (dz.unsqueeze(-1) * H).sum((0, 1)).reshape(p.wm.shape)
            gbm = dz.sum().reshape(p.bm.shape)
    geta = None if p.eta is None else GETA.sum().reshape(p.eta.shape)
    gabcd = [None] * 5
    if p.A is not None:
        g = GABCD.sum(0)
        gabcd = [g[1], g[2], g[3], g[4], g[0]]  # accumulated as eta, A, B, C, D
    return (None, None, None, DXP, gext, DH, DC, DF, DE, gw, galpha, gwm, gbm, gwf, gbf, geta, *gabcd, None)
