"""The C kernel behind the ``fused`` backend on CPU tensors (``fused_kernel.c``, ``fused_kernel_backward.c``,
``fused_kernel.h``).

The kernel is plain C (no torch headers), so it compiles in about a second with the system C
compiler the first time it is needed, and is cached under ``$NEUROMOD_RL_CACHE`` (default
``~/.cache/neuromod_rl``), keyed by the source, the flags and the CPU. Where no compiler works the
``fused`` backend falls back to its torch-op path (exact, slower) and says so once. Set
``NEUROMOD_RL_FUSED_KERNEL=torch`` to force that path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch import Tensor

_HERE = Path(__file__).parent
_SOURCES = [_HERE / "fused_kernel.c", _HERE / "fused_kernel_backward.c"]
_HEADER = _HERE / "fused_kernel.h"
# -ffp-contract=off: the backward replay must round exactly as the forward did (clip masks agree).
_FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fopenmp-simd", "-pthread"]
_FLAGS += ["-shared", "-fPIC", "-std=c99"]
_RULE_CODES = {"neuromod": 0, "clipped": 1, "hebbian": 2, "retroactive": 3}
_MOD_CODES = {None: 0, "scalar": 1, "fanout": 2}
_lock = threading.Lock()
_libs: dict[torch.dtype, ctypes.CDLL] | None = None
_failure: str | None = None


def _cache_dir() -> Path:
    return Path(os.environ.get("NEUROMOD_RL_CACHE", Path.home() / ".cache" / "neuromod_rl"))


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), platform.processor())
    except OSError:
        return platform.processor() + platform.machine()


def _compile(real: str, out: Path) -> None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler found (install gcc, or set CC)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        target = Path(tmp) / out.name
        # float uses the kernel's own vectorisable tanh (3e-7 abs error); double keeps libm's.
        precision = ["-DREAL=float", "-DFAST_TANH"] if real == "float" else ["-DREAL=double", "-DTANH=tanh"]
        cmd = [cc, *_FLAGS, *precision, *map(str, _SOURCES), "-o", str(target), "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"compiling the fused kernel failed: {proc.stderr.strip()[:500]}")
        os.replace(target, out)  # atomic: concurrent processes never load a half-written library


def _built(real: str, key: str) -> Path:
    """The compiled library, built on first use in the cache (or, if that is not writable, in a
    per-user temporary folder)."""
    name = f"fused_kernel_{real}_{key}.so"
    candidates = [_cache_dir(), Path(tempfile.gettempdir()) / f"neuromod_rl-{os.getuid()}"]
    for folder in candidates:
        if (folder / name).exists():
            return folder / name
    errors = []
    for folder in candidates:
        try:
            _compile(real, folder / name)
            return folder / name
        except OSError as err:  # read-only or missing home: try the next folder
            errors.append(f"{folder}: {err}")
    raise RuntimeError("no writable folder for the compiled kernel (" + "; ".join(errors) + ")")


def _load() -> dict[torch.dtype, ctypes.CDLL] | None:
    global _libs, _failure
    if _libs is not None or _failure is not None:
        return _libs
    with _lock:
        if _libs is not None or _failure is not None:
            return _libs
        if os.environ.get("NEUROMOD_RL_FUSED_KERNEL", "").lower() == "torch":
            _failure = "disabled by NEUROMOD_RL_FUSED_KERNEL=torch"
            return None
        code = b"".join(p.read_bytes() for p in [*_SOURCES, _HEADER])
        key = hashlib.sha256(code + " ".join(_FLAGS).encode() + _cpu_id().encode()).hexdigest()[:16]
        try:
            libs = {}
            for dtype, real in ((torch.float32, "float"), (torch.float64, "double")):
                libs[dtype] = ctypes.CDLL(str(_built(real, key)))
            _libs = libs
        except (OSError, RuntimeError) as err:
            _failure = str(err)
            warnings.warn(
                f"neuromod_rl: the fused CPU kernel is unavailable ({_failure}); the fused backend uses its "
                "slower torch-op path. Install a C compiler (gcc) for full speed.",
                RuntimeWarning,
                stacklevel=3,
            )
    return _libs


def available() -> bool:
    """True when the C kernel compiled and loaded (it is compiled on the first call)."""
    return _load() is not None


def _ptr(t: Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(None if t is None else t.data_ptr())


def _scalar(dtype: torch.dtype, value: float):
    return (ctypes.c_float if dtype == torch.float32 else ctypes.c_double)(value)


class FusedPlasticRNNCPU(torch.autograd.Function):
    """Same contract as the torch-op ``_FusedPlasticRNN`` in ``fused.py``; the loops run in C.

    ``alpha`` arrives as given by the rule (``[N, N]``, ``[1, N]`` or ``[1, 1]``); the kernel takes a
    full matrix or a per-postsynaptic vector.
    """

    @staticmethod
    def forward(ctx, cfg, starts, xp, ext, h0, F0, E0, w, alpha, wm, bm, wf, bf, eta):
        lib = _load()[xp.dtype]
        T, B, N = xp.shape
        K = cfg.segment
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
        args = _common_args(cfg, xp.dtype, T, B, N, full, K, nthreads, eta, bm, w_k, alpha_k, wm_k, wf_k, bf_k)
        status = lib.plastic_rnn_forward(
            *args, _ptr(xp), _ptr(starts_u8), _ptr(ext), _ptr(h0), _ptr(F), _ptr(E), _ptr(H), _ptr(MS), _ptr(MF),
            _ptr(F_ck), _ptr(E_ck)
        )
        _check_status(status, "forward", B, N, K)
        ctx.cfg, ctx.nthreads, ctx.full = cfg, nthreads, full
        ctx.save_for_backward(starts_u8, h0, H, MS, F_ck, E_ck, w_k, alpha_k, wm_k, bm, wf_k, bf_k, eta, alpha)
        M = MF if MF is not None else MS
        ctx.mark_non_differentiable(*([M] if M is not None else []))
        hT = H[-1].clone()
        empty = xp.new_empty(0)
        return H, hT, F, E if E is not None else empty, M if M is not None else empty

    @staticmethod
    def backward(ctx, gH, ghT, gFT, gET, _gM):
        cfg, nthreads, full = ctx.cfg, ctx.nthreads, ctx.full
        starts_u8, h0, H, MS, F_ck, E_ck, w_k, alpha_k, wm_k, bm, wf_k, bf_k, eta, alpha = ctx.saved_tensors
        lib = _load()[H.dtype]
        T, B, N = H.shape
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
        args = _common_args(cfg, H.dtype, T, B, N, full, cfg.segment, nthreads, eta, bm, w_k, alpha_k, wm_k, wf_k, bf_k)
        status = lib.plastic_rnn_backward(
            *args, _ptr(starts_u8), _ptr(h0), _ptr(H), _ptr(MS), _ptr(F_ck), _ptr(E_ck), _ptr(gH_k), _ptr(dh),
            _ptr(dF), _ptr(dE), _ptr(gxp), _ptr(gms), _ptr(gmf), _ptr(galpha), _ptr(geta)
        )
        _check_status(status, "backward", B, N, cfg.segment)
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
            g_wm = (gms.reshape(1, -1) @ H.reshape(-1, N))
            g_bm = gms.sum().reshape(1)
        if cfg.modulation == "fanout":
            g_wf = (MS.reshape(1, -1) @ gmf.reshape(-1, N)).t()
            g_bf = gmf.sum((0, 1))
        g_ext = gms if cfg.external else None
        g_eta = geta.sum() if eta is not None else None
        return None, None, gxp, g_ext, dh, dF, dE, g_w, g_alpha, g_wm, g_bm, g_wf, g_bf, g_eta


def allocate_outputs(xp: Tensor, cfg, with_eligibility: bool):
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


def _check_status(status: int, phase: str, B: int, N: int, K: int) -> None:
    if status:
        need = K * N * N * 8 / 2**20
        raise MemoryError(
            f"fused plastic RNN {phase}: could not allocate the kernel's scratch memory (about {need:.0f} MiB per "
            f"thread for N={N}); use a smaller batch or hidden size, or free memory"
        )


def _reduce_vector_alpha(g: Tensor, alpha: Tensor) -> Tensor:
    return g.reshape(1, -1) if alpha.shape[-1] > 1 else g.sum().reshape(1, 1)


def _common_args(cfg, dtype, T, B, N, full, K, nthreads, eta, bm, w, alpha, wm, wf, bf):
    ints = [T, B, N, _RULE_CODES[cfg.rule], int(full), _MOD_CODES[cfg.modulation], int(cfg.external), K, nthreads]
    clip = cfg.clip if cfg.clip != float("inf") else 0.0
    return [
        *(ctypes.c_int(i) for i in ints),
        _scalar(dtype, clip),
        _scalar(dtype, 0.0 if eta is None else float(eta)),
        _scalar(dtype, 0.0 if bm is None else float(bm)),
        _ptr(w),
        _ptr(alpha),
        _ptr(wm),
        _ptr(wf),
        _ptr(bf),
    ]
