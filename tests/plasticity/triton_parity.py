"""What the triton backend's parity tests share (``test_triton.py``: the RNN kernels, ``test_triton_lstm.py``:
the LSTM's): the device gate, the cells' scaling, the inputs, one backend's run with every gradient, the
comparison with the reference, the clip check, the chained-chunk check and the sm_90 compile check.

Import it after ``pytest.importorskip("triton")``: it imports the backend's Triton module.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from neuromod_rl.plasticity import scan
from neuromod_rl.plasticity.rules import ABCD
from neuromod_rl.plasticity.triton import function, interpreter_supported

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA device here"))]


def require(device: str) -> None:
    """Skip, saying why, where this process cannot run the kernels on ``device``."""
    if device == "cpu" and not function.interpreted():
        pytest.skip("this process compiles the kernels (TRITON_INTERPRET=0): CPU tensors need the interpreter")
    if device == "cpu" and not interpreter_supported(function.triton.__version__):
        pytest.skip(f"Triton {function.triton.__version__}'s interpreter cannot run the kernels (pip install "
                    "'triton>=3.9' for the CPU cases)")
    if device == "cuda" and function.interpreted():
        pytest.skip("this process interprets the kernels (TRITON_INTERPRET=1); `make gpu-check` runs them compiled")


def amplified(cell, scale: float, dtype: torch.dtype, device: str):
    """``cell`` on ``device`` in ``dtype`` with its parameters times ``scale`` and large rates (0.5; ABCD:
    per-synapse rates in [0.2, 0.8], each its own value), so that the clip is active."""
    with torch.no_grad():
        for p in cell.parameters():
            p.mul_(scale)
        if isinstance(cell.rule, ABCD):
            cell.rule.eta.uniform_(0.2, 0.8)
        else:
            for rate in ("eta", "eta_e"):
                if hasattr(cell.rule, rate):
                    getattr(cell.rule, rate).fill_(0.5)
    return cell.to(device=device, dtype=dtype)


def inputs(cell, T: int, B: int, dtype: torch.dtype, device: str, seed: int = 1, reset_rate: float = 0.0):
    """``(x, starts, ext, state)`` for ``cell``: random inputs, episode starts (one inside the sequence, plus
    each step with probability ``reset_rate``), the external modulation where the cell takes one, and a
    random entering state (``h``, the LSTM's ``c`` and every trace)."""
    g = torch.Generator().manual_seed(seed)
    N, I = cell.hidden_size, cell.input_size
    x = torch.randn(T, B, I, generator=g, dtype=dtype)
    starts = torch.rand(T, B, generator=g) < reset_rate if reset_rate else torch.zeros(T, B, dtype=torch.bool)
    starts[T // 2, 0] = True  # an episode starts inside the sequence
    ext = torch.randn(T, B, generator=g, dtype=dtype) if cell.external_modulation else None
    state = cell.initial_state(B, dtype=dtype)
    fields = {"h": 0.5 * torch.randn(B, N, generator=g, dtype=dtype)}
    if "c" in state:
        fields["c"] = torch.randn(B, N, generator=g, dtype=dtype)
    for k in cell.rule.trace_names:
        fields[k] = 0.3 * torch.randn(B, N, N, generator=g, dtype=dtype)
    state = state.replace(**fields)
    to = lambda t: None if t is None else t.to(device)  # noqa: E731
    return to(x), to(starts), to(ext), state.to(device)


def run(cell, x, state, starts, ext, backend: str):
    """Outputs, final state and every gradient of a loss touching all outputs."""
    cell.zero_grad()
    leaves = {k: v.detach().clone().requires_grad_() for k, v in state.items()}
    ext = None if ext is None else ext.detach().clone().requires_grad_()
    result = scan(cell, x, state.replace(**leaves), starts, ext, backend=backend)
    y, final = result.y, result.state
    weights = torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype, device=y.device)
    loss = (y * weights).sum() + 0.1 * (final.F**2).sum() + final.h.sum()
    if "c" in final:
        loss = loss + 0.7 * final.c.sum()
    if "E" in final:
        loss = loss + 0.3 * final.E.sum()
    loss.backward()
    grads = {f"param.{n}": p.grad.clone() for n, p in cell.named_parameters()}
    grads.update({f"state.{k}": v.grad.clone() for k, v in leaves.items()})
    if ext is not None:
        grads["modulation"] = ext.grad.clone()
    return result, grads


def assert_grads_close(got: dict, ref: dict, rtol: float, nonzero: bool = False) -> None:
    """Every gradient of ``got`` within ``rtol`` of ``ref``'s, relative to its max magnitude (at least 1);
    ``nonzero``: each reference gradient must also be nonzero somewhere (else the case tests nothing)."""
    assert ref.keys() == got.keys()
    for k in ref:
        if nonzero:
            assert ref[k].abs().max() > 0, f"gradient {k} is zero: the case tests nothing"
        err = (got[k] - ref[k]).abs().max() / ref[k].abs().max().clamp_min(1.0)
        assert err < rtol, f"gradient {k}: relative error {err:.2e}"


def assert_match(cell, x, state, starts, ext, dtype: torch.dtype, nonzero_grads: bool = False) -> None:
    """The triton backend's outputs, final state, modulation and gradients match the reference's
    (tolerances in the test files' docstrings); ``nonzero_grads`` as :func:`assert_grads_close`'s."""
    ref, g_ref = run(cell, x, state, starts, ext, "reference")
    tri, g_tri = run(cell, x, state, starts, ext, "triton")
    assert tri.backend == "triton"
    atol, grad_rtol = (1e-10, 1e-9) if dtype == torch.float64 else (1e-4, 1e-3)
    torch.testing.assert_close(tri.y.detach(), ref.y.detach(), atol=atol, rtol=0)
    assert set(tri.state.keys()) == set(ref.state.keys())
    for k in ref.state:
        torch.testing.assert_close(tri.state[k].detach(), ref.state[k].detach(), atol=atol, rtol=0)
    if ref.modulation is not None:
        torch.testing.assert_close(tri.modulation, ref.modulation.detach(), atol=atol, rtol=0)
    assert_grads_close(g_tri, g_ref, grad_rtol, nonzero=nonzero_grads)


def clip_engaged(cell, x, state, starts, ext) -> bool:
    """Whether some trace entry sits at the clip bound after some step (reference backend)."""
    with torch.no_grad():
        for t in range(x.shape[0]):
            m = None if ext is None else ext[t : t + 1]
            _, state, _ = scan(cell, x[t : t + 1], state, starts[t : t + 1], m, backend="reference")
            if (state.F.abs() == cell.rule.clip).any():
                return True
    return False


def assert_chunks_chain(cell, x) -> None:
    """Scanning ``x`` as two chunks, the second from the first's final state without detaching, gives the
    triton backend the reference's gradient of ``w``."""
    half = x.shape[0] // 2
    grads = {}
    for backend in ("reference", "triton"):
        cell.zero_grad()
        y1, s1, _ = scan(cell, x[:half], backend=backend)
        y2, _, _ = scan(cell, x[half:], s1, backend=backend)
        (y1.sum() + y2.sum()).backward()
        grads[backend] = cell.w.grad.clone()
    torch.testing.assert_close(grads["triton"], grads["reference"], atol=1e-10, rtol=0)


def python(code: str, **env) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; ``env`` sets variables (``None``: removes one)."""
    environ = {k: v for k, v in os.environ.items() if k not in env}
    environ.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=300)


def assert_kernels_fit(cell: str, cases: tuple, max_registers: int) -> None:
    """Compile ``cell``'s kernels for sm_90 in a process with compiled kernels (no GPU needed) for each
    ``(N, rule, alpha_full)`` of ``cases``; ptxas's report must show at most ``max_registers`` registers
    per thread and a spill stack of at most 16 bytes."""
    code = (
        "from neuromod_rl.plasticity.triton.compile_check import compile_kernels\n"
        f"for n, rule, full in {cases!r}:\n"
        f"    for name, r in compile_kernels(n, rule, full, cell={cell!r}).items():\n"
        f"        assert r['stack_bytes'] <= 16 and r['registers'] <= {max_registers}, (n, rule, name, r)\n"
        "print('ok')\n"
    )
    proc = python(code, TRITON_INTERPRET="0", TRITON_DEFAULT_FP_FUSION="1")
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
