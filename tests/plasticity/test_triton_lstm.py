"""The triton backend's plastic LSTM kernels against the reference (values and gradients), and its choice.

As ``test_triton.py``, with its helpers (``triton_parity.py``): on the CPU in Triton's interpreter
(``conftest.py`` sets it), on CUDA with compiled kernels in a process started with ``TRITON_INTERPRET=0``
(``make gpu-check``); each device skips, saying why, where it cannot run. Sizes are tiny (the interpreter
is slow). Tolerances: float64 -- 1e-10 absolute on values, 1e-9 relative (to each gradient's max
magnitude, at least 1) on gradients; float32 -- 1e-4 and 1e-3.
"""

import pytest
import torch

pytest.importorskip("triton", reason="the triton backend needs the 'triton' package (pip install triton)")

from triton_parity import (  # noqa: E402
    DEVICES,
    amplified,
    assert_chunks_chain,
    assert_kernels_fit,
    assert_match,
    clip_engaged,
    inputs,
    require,
)

from neuromod_rl.plasticity import PlasticLSTMCell, PlasticMLPCell, default_backend, scan  # noqa: E402
from neuromod_rl.plasticity.triton import tile_width  # noqa: E402

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


def _cell(rule, mod, src, alpha, dtype, device, N, I=3, scale=2.0, seed=0, **kwargs):
    torch.manual_seed(seed)
    cell = PlasticLSTMCell(I, N, rule=rule, modulation=mod, modulation_source=src, alpha_shape=alpha, **kwargs)
    return amplified(cell, scale, dtype, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rule,mod,src,alpha", CONFIGS)
def test_lstm_matches_reference_float64_with_resets(device, rule, mod, src, alpha):
    require(device)
    clip = {"clip": 0.5} if rule in ("neuromod", "retroactive", "clipped") else {}
    cell = _cell(rule, mod, src, alpha, torch.float64, device, N=5, **clip)
    x, starts, ext, state = inputs(cell, T=4, B=2, dtype=torch.float64, device=device)
    assert_match(cell, x, state, starts, ext, torch.float64, nonzero_grads=True)
    if cell.rule.clip is not None:
        assert clip_engaged(cell, x, state, starts, ext), "the case must exercise the clip"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rule,mod,src,alpha", [CONFIGS[2], CONFIGS[5], CONFIGS[11]])
def test_lstm_matches_reference_over_several_column_tiles(device, rule, mod, src, alpha):
    """N=6 padded to 16 and walked in 4-column tiles: the masked tail and the cross-tile hidden state."""
    require(device)
    cell = _cell(rule, mod, src, alpha, torch.float64, device, N=6, scale=1.5)
    x, starts, ext, state = inputs(cell, T=4, B=2, dtype=torch.float64, device=device)
    with tile_width(4):
        assert_match(cell, x, state, starts, ext, torch.float64, nonzero_grads=True)


@pytest.mark.parametrize("device", DEVICES)
def test_lstm_matches_reference_float32(device):
    require(device)
    cell = _cell("neuromod", "fanout", "hidden", "neuron", torch.float32, device, N=6, scale=1.0, clip=2.0)
    x, starts, ext, state = inputs(cell, T=4, B=3, dtype=torch.float32, device=device)
    assert_match(cell, x, state, starts, ext, torch.float32, nonzero_grads=True)


@pytest.mark.parametrize("device", DEVICES)
def test_lstm_gradient_flows_through_chained_chunks(device):
    """Truncated-BPTT users chain chunks without detaching: gradients cross the chunk boundary,
    including through the cell state ``c``."""
    require(device)
    cell = _cell("neuromod", "scalar", "hidden", "full", torch.float64, device, N=4, scale=1.0)
    assert_chunks_chain(cell, torch.randn(4, 2, 3, dtype=torch.float64, device=device))


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
    assert_kernels_fit("lstm", ((128, "neuromod", True), (128, "abcd", False)), max_registers=224)
