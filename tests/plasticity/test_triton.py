"""The triton backend against the reference (values and gradients), its selection, and its errors.

Every parity case runs on the CPU in Triton's interpreter (set by ``conftest.py``), and on CUDA with
compiled kernels in a process started with ``TRITON_INTERPRET=0`` (``make gpu-check``); each device
skips, saying why, where it cannot run. Tolerances: float64 -- 1e-10 absolute on values, 1e-9
relative (to each gradient's max magnitude, at least 1) on gradients; float32 -- 1e-4 and 1e-3
(the kernels' tanh is written with one exp, and sums run in another order than torch's). The helpers
shared with ``test_triton_lstm.py`` are in ``triton_parity.py``.
"""

import pytest
import torch

pytest.importorskip("triton", reason="the triton backend needs the 'triton' package (pip install triton)")

from triton_parity import (  # noqa: E402
    CUDA,
    DEVICES,
    amplified,
    assert_chunks_chain,
    assert_grads_close,
    assert_kernels_fit,
    assert_match,
    clip_engaged,
    inputs,
    python,
    require,
    run,
)

from neuromod_rl.plasticity import PlasticLSTMCell, PlasticRNNCell, default_backend, scan  # noqa: E402
from neuromod_rl.plasticity.fused.spec import RULE_CODES  # noqa: E402
from neuromod_rl.plasticity.rules import Neuromodulated, Oja  # noqa: E402
from neuromod_rl.plasticity.triton import bf16_inputs, function, tile_width  # noqa: E402

#: every rule, both modulation modes and sources, every alpha shape, each at least once
CONFIGS = [
    ("neuromod", "scalar", "hidden", "full"),
    ("neuromod", "scalar", "external", "neuron"),
    ("neuromod", "fanout", "hidden", "scalar"),
    ("neuromod", "fanout", "external", "full"),
    ("retroactive", "scalar", "hidden", "neuron"),
    ("retroactive", "scalar", "external", "full"),
    ("retroactive", "fanout", "hidden", "full"),
    ("retroactive", "fanout", "external", "scalar"),
    ("clipped", None, "hidden", "full"),
    ("clipped", None, "hidden", "neuron"),
    ("hebbian", None, "hidden", "full"),
    ("hebbian", None, "hidden", "scalar"),
    pytest.param("oja", None, "hidden", "neuron", marks=pytest.mark.skipif(
        Oja not in RULE_CODES, reason="the fused engine's rule-code table has no code for oja yet")),
]


def _cell(rule, mod, src, alpha, dtype, device, N, I=5, scale=3.0, seed=0):
    torch.manual_seed(seed)
    cell = PlasticRNNCell(I, N, rule=rule, modulation=mod, modulation_source=src, alpha_shape=alpha)
    return amplified(cell, scale, dtype, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rule,mod,src,alpha", CONFIGS)
def test_matches_reference_float64_with_resets_and_clipping(device, rule, mod, src, alpha):
    require(device)
    cell = _cell(rule, mod, src, alpha, torch.float64, device, N=6)
    x, starts, ext, state = inputs(cell, T=10, B=2, dtype=torch.float64, device=device, reset_rate=0.15)
    assert_match(cell, x, state, starts, ext, torch.float64)
    if cell.rule.clip is not None:
        assert clip_engaged(cell, x, state, starts, ext), "the case must exercise the clip"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rule,mod,src,alpha", [CONFIGS[3], CONFIGS[7], CONFIGS[11]])
def test_matches_reference_over_several_column_tiles(device, rule, mod, src, alpha):
    """N=20 padded to 32 and walked in 8-column tiles: the masked tail and the cross-tile hidden state."""
    require(device)
    cell = _cell(rule, mod, src, alpha, torch.float64, device, N=20, scale=1.5)
    x, starts, ext, state = inputs(cell, T=4, B=1, dtype=torch.float64, device=device, reset_rate=0.15)
    with tile_width(8):
        assert_match(cell, x, state, starts, ext, torch.float64)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rule,mod,src,alpha", [CONFIGS[0], CONFIGS[6]])
def test_matches_reference_float32(device, rule, mod, src, alpha):
    require(device)
    cell = _cell(rule, mod, src, alpha, torch.float32, device, N=16, scale=1.0)
    x, starts, ext, state = inputs(cell, T=8, B=2, dtype=torch.float32, device=device, reset_rate=0.15)
    assert_match(cell, x, state, starts, ext, torch.float32)


@pytest.mark.parametrize("device", DEVICES)
def test_gradient_flows_through_chained_chunks(device):
    """Truncated-BPTT users chain chunks without detaching: gradients cross the chunk boundary."""
    require(device)
    cell = _cell("neuromod", "scalar", "hidden", "full", torch.float64, device, N=4, scale=1.0)
    assert_chunks_chain(cell, torch.randn(8, 2, 5, dtype=torch.float64, device=device))


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_inputs_round_only_the_projected_input(device):
    """With bf16 inputs the kernels compute exactly what float32 does on the input drive rounded to
    bfloat16; the gradient passes the rounding straight through."""
    require(device)
    cell = _cell("neuromod", "fanout", "hidden", "neuron", torch.float32, device, N=16, scale=1.0)
    x, starts, _, state = inputs(cell, T=6, B=2, dtype=torch.float32, device=device, reset_rate=0.15)
    with bf16_inputs():
        y16, s16, _ = scan(cell, x, state, starts, backend="triton")
    y32, _, _ = scan(cell, x, state, starts, backend="triton")
    project = cell.project_input
    cell.project_input = lambda x: project(x).to(torch.bfloat16).float()  # the rounding, in the reference
    try:
        y_ref, s_ref, _ = scan(cell, x, state, starts, backend="reference")
    finally:
        del cell.project_input
    torch.testing.assert_close(y16, y_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(s16.F, s_ref.F, atol=1e-5, rtol=0)
    assert (y16 - y32).abs().max() > 1e-5, "the option must change what the kernels read"
    assert y16.dtype == s16.F.dtype == torch.float32


def test_default_choice_is_triton_on_cuda_and_fused_on_cpu(monkeypatch):
    monkeypatch.delenv("NEUROMOD_RL_BACKEND", raising=False)
    cell = PlasticRNNCell(3, 4, rule="retroactive")
    assert default_backend(cell, "cuda") == "triton"
    assert default_backend(cell, "cpu") == "fused"
    assert default_backend(PlasticLSTMCell(3, 4), "cuda") == "triton"  # test_triton_lstm.py holds its parity

    class MyRule(Neuromodulated):  # a user's subclass may change the equation: the kernels cannot know
        pass

    assert default_backend(PlasticRNNCell(3, 4, rule=MyRule(4, 4)), "cuda") == "reference"
    monkeypatch.setenv("NEUROMOD_RL_BACKEND", "triton")
    assert default_backend(cell, "cpu") == "triton"


def test_environment_variable_forces_triton(monkeypatch):
    if not function.interpreted():
        pytest.skip("this process compiles the kernels (TRITON_INTERPRET=0): CPU tensors need the interpreter")
    monkeypatch.setenv("NEUROMOD_RL_BACKEND", "triton")
    result = scan(PlasticRNNCell(3, 4), torch.randn(3, 2, 3))
    assert result.backend == "triton"


def test_cpu_tensors_without_the_interpreter_raise_a_clear_error():
    code = (
        "import torch\nfrom neuromod_rl.plasticity import PlasticRNNCell, scan\n"
        "scan(PlasticRNNCell(3, 4), torch.randn(2, 1, 3), backend='triton')\n"
    )
    proc = python(code, TRITON_INTERPRET=None)
    assert proc.returncode != 0
    assert "RuntimeError: the triton backend runs CPU tensors only in Triton's interpreter" in proc.stderr
    assert "TRITON_INTERPRET=1" in proc.stderr


def test_an_interpreter_too_old_for_the_kernels_is_named(monkeypatch):
    """Triton 3.6's interpreter fails inside the kernels with an obscure error: the backend says which
    versions work instead (compiled on CUDA, 3.6 runs them: checked on an H200)."""
    if not function.interpreted():
        pytest.skip("this process compiles the kernels (TRITON_INTERPRET=0): CPU tensors need the interpreter")
    monkeypatch.setattr(function.triton, "__version__", "3.6.0")
    with pytest.raises(RuntimeError, match=r"Triton 3.6.0's interpreter cannot run these kernels.*upgrade triton"):
        scan(PlasticRNNCell(3, 4), torch.randn(2, 1, 3), backend="triton")


def test_importing_the_package_does_not_import_triton():
    code = (
        "import sys, torch\nimport neuromod_rl\nfrom neuromod_rl.plasticity import PlasticRNNCell, scan\n"
        "r = scan(PlasticRNNCell(3, 4), torch.randn(2, 1, 3))\n"
        "assert 'triton' not in sys.modules, 'triton was imported'\nprint(r.backend)\n"
    )
    proc = python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "fused"


def test_kernels_compile_for_an_h100_class_gpu_and_fit_in_registers():
    """The GPU compiler is stricter than the interpreter: compile for sm_90 (no GPU needed) and read
    ptxas's resource report (registers per thread; spill stack at most a few bytes)."""
    assert_kernels_fit("rnn", ((128, "neuromod", True), (256, "retroactive", False)), max_registers=192)


@pytest.mark.skipif(not CUDA, reason="no CUDA device here")
@pytest.mark.parametrize("rule,mod,src,alpha", [CONFIGS[0], CONFIGS[7], CONFIGS[9]])
def test_fused_torch_ops_on_cuda_match_reference(rule, mod, src, alpha):
    """On CUDA tensors the fused backend runs its exact torch-op path."""
    cell = _cell(rule, mod, src, alpha, torch.float64, "cuda", N=6)
    x, starts, ext, state = inputs(cell, T=10, B=2, dtype=torch.float64, device="cuda", reset_rate=0.15)
    ref, g_ref = run(cell, x, state, starts, ext, "reference")
    fus, g_fus = run(cell, x, state, starts, ext, "fused")
    assert fus.backend == "fused"
    torch.testing.assert_close(fus.y.detach(), ref.y.detach(), atol=1e-10, rtol=0)
    assert_grads_close(g_fus, g_ref, 1e-9)
