"""The triton backend's plastic LSTM kernels against the reference (values and gradients), and its choice.

As ``test_triton.py``: on the CPU in Triton's interpreter (``conftest.py`` sets it), on CUDA with
compiled kernels in a process started with ``TRITON_INTERPRET=0`` (``make gpu-check``); each device
skips, saying why, where it cannot run. Sizes are tiny (the interpreter is slow). Tolerances: float64
-- 1e-10 absolute on values, 1e-9 relative (to each gradient's max magnitude, at least 1) on
gradients; float32 -- 1e-4 and 1e-3.
"""

import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton", reason="the triton backend needs the 'triton' package (pip install triton)")

from neuromod_rl.plasticity import PlasticLSTMCell, PlasticMLPCell, default_backend, scan  # noqa: E402
from neuromod_rl.plasticity.triton import function, interpreter_supported, tile_width  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA device here"))]

#: every rule, both modulation modes and sources, every alpha shape, each at least once
CONFIGS = [
    ("neuromod", "scalar", "hidden", "full"),
    ("neuromod", "scalar", "external", "neuron"),
    ("neuromod", "fanout", "hidden", "neuron"),
    ("neuromod", "fanout", "external", "scalar"),
    ("retroactive", "scalar", "hidden", "full"),
    ("retroactive", "fanout", "external", "neuron"),
    ("clipped", None, "hidden", "neuron"),
    ("hebbian", None, "hidden", "full"),
    ("oja", None, "hidden", "scalar"),
    ("abcd", None, "hidden", "none"),
    ("abcd", "scalar", "hidden", "full"),
    ("abcd", "fanout", "external", "neuron"),
]


def _require(device: str) -> None:
    if device == "cpu" and not function.interpreted():
        pytest.skip("this process compiles the kernels (TRITON_INTERPRET=0): CPU tensors need the interpreter")
    if device == "cpu" and not interpreter_supported(function.triton.__version__):
        pytest.skip(f"Triton {function.triton.__version__}'s interpreter cannot run the kernels (pip install "
                    "'triton>=3.9' for the CPU cases)")
    if device == "cuda" and function.interpreted():
        pytest.skip("this process interprets the kernels (TRITON_INTERPRET=1); `make gpu-check` runs them compiled")


def _cell(rule, mod, src, alpha, dtype, device, N, I=3, scale=2.0, seed=0, **kwargs):
    torch.manual_seed(seed)
    cell = PlasticLSTMCell(I, N, rule=rule, modulation=mod, modulation_source=src, alpha_shape=alpha, **kwargs)
    with torch.no_grad():  # large weights and rates so that the clip is active
        for p in cell.parameters():
            p.mul_(scale)
        for rate in ("eta", "eta_e"):
            if rule != "abcd" and hasattr(cell.rule, rate):
                getattr(cell.rule, rate).fill_(0.5)
        if rule == "abcd":
            cell.rule.eta.uniform_(0.2, 0.8)  # per-synapse rates, each its own value
    return cell.to(device=device, dtype=dtype)


def _inputs(cell, T, B, dtype, device, seed=1):
    g = torch.Generator().manual_seed(seed)
    N, I = cell.hidden_size, cell.input_size
    x = torch.randn(T, B, I, generator=g, dtype=dtype)
    starts = torch.zeros(T, B, dtype=torch.bool)
    starts[T // 2, 0] = True  # an episode starts inside the sequence
    ext = torch.randn(T, B, generator=g, dtype=dtype) if cell.external_modulation else None
    fields = {"h": 0.5 * torch.randn(B, N, generator=g, dtype=dtype), "c": torch.randn(B, N, generator=g, dtype=dtype)}
    for k in cell.rule.trace_names:
        fields[k] = 0.3 * torch.randn(B, N, N, generator=g, dtype=dtype)
    state = cell.initial_state(B, dtype=dtype).replace(**fields)
    to = lambda t: None if t is None else t.to(device)  # noqa: E731
    return to(x), to(starts), to(ext), state.to(device)


def _run(cell, x, state, starts, ext, backend):
    """Outputs, final state and every gradient of a loss touching all outputs."""
    cell.zero_grad()
    leaves = {k: v.detach().clone().requires_grad_() for k, v in state.items()}
    ext = None if ext is None else ext.detach().clone().requires_grad_()
    result = scan(cell, x, state.replace(**leaves), starts, ext, backend=backend)
    y, final = result.y, result.state
    weights = torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype, device=y.device)
    loss = (y * weights).sum() + 0.1 * (final.F**2).sum() + final.h.sum() + 0.7 * final.c.sum()
    if "E" in final:
        loss = loss + 0.3 * final.E.sum()
    loss.backward()
    grads = {f"param.{n}": p.grad.clone() for n, p in cell.named_parameters()}
    grads.update({f"state.{k}": v.grad.clone() for k, v in leaves.items()})
    if ext is not None:
        grads["modulation"] = ext.grad.clone()
    return result, grads


def _assert_match(cell, x, state, starts, ext, dtype):
    ref, g_ref = _run(cell, x, state, starts, ext, "reference")
    tri, g_tri = _run(cell, x, state, starts, ext, "triton")
    assert tri.backend == "triton"
    atol, grad_rtol = (1e-10, 1e-9) if dtype == torch.float64 else (1e-4, 1e-3)
    torch.testing.assert_close(tri.y.detach(), ref.y.detach(), atol=atol, rtol=0)
    assert set(tri.state.keys()) == set(ref.state.keys())
    for k in ref.state:
        torch.testing.assert_close(tri.state[k].detach(), ref.state[k].detach(), atol=atol, rtol=0)
    if ref.modulation is not None:
        torch.testing.assert_close(tri.modulation, ref.modulation.detach(), atol=atol, rtol=0)
    assert g_ref.keys() == g_tri.keys()
    for k in g_ref:
        assert g_ref[k].abs().max() > 0, f"gradient {k} is zero: the case tests nothing"
        err = (g_tri[k] - g_ref[k]).abs().max() / g_ref[k].abs().max().clamp_min(1.0)
        assert err < grad_rtol, f"gradient {k}: relative error {err:.2e}"


def _clip_engaged(cell, x, state, starts, ext) -> bool:
    """Whether some trace entry sits at the clip bound after some step (reference backend)."""
    with torch.no_grad():
        for t in range(x.shape[0]):
            m = None if ext is None else ext[t : t + 1]
            _, state, _ = scan(cell, x[t : t + 1], state, starts[t : t + 1], m, backend="reference")
            if (state.F.abs() == cell.rule.clip).any():
                return True
    return False


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rule,mod,src,alpha", CONFIGS)
def test_lstm_matches_reference_float64_with_resets(device, rule, mod, src, alpha):
    _require(device)
    clip = {"clip": 0.5} if rule in ("neuromod", "retroactive", "clipped") else {}
    cell = _cell(rule, mod, src, alpha, torch.float64, device, N=5, **clip)
    x, starts, ext, state = _inputs(cell, T=4, B=2, dtype=torch.float64, device=device)
    _assert_match(cell, x, state, starts, ext, torch.float64)
    if cell.rule.clip is not None:
        assert _clip_engaged(cell, x, state, starts, ext), "the case must exercise the clip"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rule,mod,src,alpha", [CONFIGS[2], CONFIGS[5], CONFIGS[11]])
def test_lstm_matches_reference_over_several_column_tiles(device, rule, mod, src, alpha):
    """N=6 padded to 16 and walked in 4-column tiles: the masked tail and the cross-tile hidden state."""
    _require(device)
    cell = _cell(rule, mod, src, alpha, torch.float64, device, N=6, scale=1.5)
    x, starts, ext, state = _inputs(cell, T=4, B=2, dtype=torch.float64, device=device)
    with tile_width(4):
        _assert_match(cell, x, state, starts, ext, torch.float64)


@pytest.mark.parametrize("device", DEVICES)
def test_lstm_matches_reference_float32(device):
    _require(device)
    cell = _cell("neuromod", "fanout", "hidden", "neuron", torch.float32, device, N=6, scale=1.0, clip=2.0)
    x, starts, ext, state = _inputs(cell, T=4, B=3, dtype=torch.float32, device=device)
    _assert_match(cell, x, state, starts, ext, torch.float32)


@pytest.mark.parametrize("device", DEVICES)
def test_lstm_gradient_flows_through_chained_chunks(device):
    """Truncated-BPTT users chain chunks without detaching: gradients cross the chunk boundary,
    including through the cell state ``c``."""
    _require(device)
    cell = _cell("neuromod", "scalar", "hidden", "full", torch.float64, device, N=4, scale=1.0)
    x = torch.randn(4, 2, 3, dtype=torch.float64, device=device)
    grads = {}
    for backend in ("reference", "triton"):
        cell.zero_grad()
        y1, s1, _ = scan(cell, x[:2], backend=backend)
        y2, _, _ = scan(cell, x[2:], s1, backend=backend)
        (y1.sum() + y2.sum()).backward()
        grads[backend] = cell.w.grad.clone()
    torch.testing.assert_close(grads["triton"], grads["reference"], atol=1e-10, rtol=0)


def test_default_choice_takes_the_lstm_on_cuda(monkeypatch):
    monkeypatch.delenv("NEUROMOD_RL_BACKEND", raising=False)
    assert default_backend(PlasticLSTMCell(3, 4), "cuda") == "triton"
    assert default_backend(PlasticLSTMCell(3, 4, rule="abcd"), "cuda") == "triton"
    assert default_backend(PlasticLSTMCell(3, 4), "cpu") == "fused"
    # ABCD's max_norm divides by the largest |F| of the whole matrix: the fused engine runs it
    assert default_backend(PlasticLSTMCell(3, 4, rule="abcd", max_norm=True), "cuda") == "fused"
    assert default_backend(PlasticLSTMCell(3, 4, soft_clip=True), "cuda") == "reference"
    assert default_backend(PlasticMLPCell(3, 4), "cuda") != "triton"


def test_forcing_triton_on_an_unsupported_lstm_names_the_problem():
    cell = PlasticLSTMCell(3, 4, rule="abcd", max_norm=True)
    with pytest.raises(ValueError, match="triton"):
        scan(cell, torch.randn(2, 1, 3), backend="triton")


def test_lstm_kernels_compile_for_an_h100_class_gpu_and_fit_in_registers():
    """As test_triton.py's check for the RNN: compile for sm_90 (no GPU needed) and read ptxas's report."""
    code = (
        "from neuromod_rl.plasticity.triton.compile_check import compile_kernels\n"
        "for n, rule, full in ((128, 'neuromod', True), (128, 'abcd', False)):\n"
        "    for name, r in compile_kernels(n, rule, full, cell='lstm').items():\n"
        "        assert r['stack_bytes'] <= 16 and r['registers'] <= 224, (n, rule, name, r)\n"
        "print('ok')\n"
    )
    environ = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    environ.update(TRITON_INTERPRET="0", TRITON_DEFAULT_FP_FUSION="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
