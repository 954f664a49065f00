"""The fused backend against the reference (values and gradients), its memory, and its fallback path.

Tolerances: float64 -- 1e-10 (absolute) on outputs and gradients; float32 at real sizes --
outputs 1e-4 absolute, gradients 1e-3 relative to each gradient's max magnitude (the kernel's
float tanh is within 3e-7 of libm's, and sums run in a different order than torch's).
"""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuromod_rl.plasticity import PlasticRNNCell, scan
from neuromod_rl.plasticity.fused import cpu as fused_cpu

CONFIGS = [
    (rule, mod, src, alpha)
    for rule in ("neuromod", "retroactive")
    for mod in ("scalar", "fanout")
    for src in ("hidden", "external")
    for alpha in ("full", "neuron", "scalar")
] + [(rule, None, "hidden", alpha) for rule in ("clipped", "hebbian") for alpha in ("full", "neuron", "scalar")]


def _run(cell, x, state, starts, ext, backend):
    cell.zero_grad()
    leaves = {k: v.detach().clone().requires_grad_() for k, v in state.items()}
    ext = None if ext is None else ext.detach().clone().requires_grad_()
    y, final, m = scan(cell, x, state.replace(**leaves), starts, ext, backend=backend)
    weights = torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype)
    loss = (y * weights).sum() + 0.1 * (final.F**2).sum() + final.h.sum()
    if "E" in final:
        loss = loss + 0.3 * final.E.sum()
    loss.backward()
    grads = {f"param.{n}": p.grad.clone() for n, p in cell.named_parameters()}
    grads.update({f"state.{k}": v.grad.clone() for k, v in leaves.items()})
    if ext is not None:
        grads["modulation"] = ext.grad.clone()
    return y.detach(), final, grads


def _compare(rule, mod, src, alpha, dtype, T, B, N, I=5, scale=3.0, seed=0, probe_clip=False):
    torch.manual_seed(seed)
    cell = PlasticRNNCell(I, N, rule=rule, modulation=mod, modulation_source=src, alpha_shape=alpha).to(dtype)
    with torch.no_grad():  # large weights and rates so that the clip is active
        for p in cell.parameters():
            p.mul_(scale)
        for rate in ("eta", "eta_e"):
            if hasattr(cell.rule, rate):
                getattr(cell.rule, rate).fill_(0.5)
    x = torch.randn(T, B, I, dtype=dtype)
    starts = torch.rand(T, B) < 0.1
    starts[T // 2, 0] = True
    ext = torch.randn(T, B, dtype=dtype) if src == "external" else None
    state = cell.initial_state(B, dtype=dtype)
    state = state.replace(h=0.5 * torch.randn(B, N, dtype=dtype), F=0.3 * torch.randn(B, N, N, dtype=dtype))
    if "E" in state:
        state = state.replace(E=0.3 * torch.randn(B, N, N, dtype=dtype))
    y_ref, f_ref, g_ref = _run(cell, x, state, starts, ext, "reference")
    y_fus, f_fus, g_fus = _run(cell, x, state, starts, ext, "fused")
    _compare.clipped = probe_clip and _clip_engaged(cell, x, state, starts, ext)
    return (y_ref, f_ref, g_ref), (y_fus, f_fus, g_fus)


def _clip_engaged(cell, x, state, starts, ext) -> bool:
    """Whether some trace entry sits at the clip bound after some step of the sequence."""
    bound = cell.rule.clip
    if bound is None:
        return False
    with torch.no_grad():
        for t in range(x.shape[0]):
            m = None if ext is None else ext[t : t + 1]
            _, state, _ = scan(cell, x[t : t + 1], state, starts[t : t + 1], m, backend="reference")
            if (state.F.abs() == bound).any():
                return True
    return False


def _assert_match(ref, fus, dtype):
    (y_ref, f_ref, g_ref), (y_fus, f_fus, g_fus) = ref, fus
    atol, grad_rtol = (1e-10, 1e-9) if dtype == torch.float64 else (1e-4, 1e-3)
    torch.testing.assert_close(y_fus, y_ref, atol=atol, rtol=0)
    for k in f_ref:
        torch.testing.assert_close(f_fus[k].detach(), f_ref[k].detach(), atol=atol, rtol=0)
    assert g_ref.keys() == g_fus.keys()
    for k in g_ref:
        scale = g_ref[k].abs().max().clamp_min(1.0)
        err = (g_fus[k] - g_ref[k]).abs().max() / scale
        assert err < grad_rtol, f"gradient {k}: relative error {err:.2e}"


@pytest.mark.parametrize("rule,mod,src,alpha", CONFIGS)
def test_matches_reference_float64_with_resets_and_clipping(rule, mod, src, alpha):
    ref, fus = _compare(rule, mod, src, alpha, torch.float64, T=17, B=3, N=6, probe_clip=True)
    _assert_match(ref, fus, torch.float64)
    assert _compare.clipped or rule == "hebbian", "the case must exercise the clip"


@pytest.mark.parametrize("rule,mod,alpha", [("neuromod", "scalar", "full"), ("retroactive", "fanout", "neuron")])
def test_matches_reference_float32_at_real_size(rule, mod, alpha):
    ref, fus = _compare(rule, mod, "hidden", alpha, torch.float32, T=64, B=16, N=64, scale=1.0)
    _assert_match(ref, fus, torch.float32)


@pytest.mark.parametrize("rule,mod,src,alpha", [CONFIGS[0], CONFIGS[10], CONFIGS[-1]])
def test_torch_op_fallback_matches_reference(monkeypatch, rule, mod, src, alpha):
    """Without a C compiler (or on CUDA tensors) the fused backend runs its torch-op path."""
    monkeypatch.setattr(fused_cpu, "available", lambda: False)
    ref, fus = _compare(rule, mod, src, alpha, torch.float64, T=11, B=2, N=5)
    _assert_match(ref, fus, torch.float64)


def test_cpu_kernel_is_used_here():
    assert fused_cpu.available(), "a C compiler (gcc) is part of this project's machines; the kernel must build"


def _saved_bytes(cell, x, backend):
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y, _, _ = scan(cell, x, backend=backend)
    return total, y


def test_fused_saves_a_tenth_of_the_reference_memory():
    """Reference autograd keeps O(T*B*N^2); fused keeps O(T*B*N) plus sqrt(T) trace checkpoints."""
    torch.manual_seed(0)
    cell = PlasticRNNCell(8, 32, rule="neuromod")
    x = torch.randn(128, 4, 8)
    ref, _ = _saved_bytes(cell, x, "reference")
    fus, _ = _saved_bytes(cell, x, "fused")
    assert fus * 10 <= ref, f"fused saved {fus} bytes, reference {ref}"


def test_gradient_flows_through_chained_chunks():
    """Truncated-BPTT users chain chunks without detaching: gradients cross the chunk boundary."""
    torch.manual_seed(0)
    cell = PlasticRNNCell(3, 4, rule="neuromod").double()
    x = torch.randn(12, 2, 3, dtype=torch.float64)
    grads = {}
    for backend in ("reference", "fused"):
        cell.zero_grad()
        y1, s1, _ = scan(cell, x[:6], backend=backend)
        y2, _, _ = scan(cell, x[6:], s1, backend=backend)
        (y1.sum() + y2.sum()).backward()
        grads[backend] = cell.w.grad.clone()
    torch.testing.assert_close(grads["fused"], grads["reference"], atol=1e-10, rtol=0)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    T=st.integers(1, 20),
    B=st.integers(1, 4),
    N=st.sampled_from([1, 3, 8, 32]),
    cfg=st.sampled_from(CONFIGS),
    seed=st.integers(0, 2**16),
)
def test_property_matches_reference_over_shapes(T, B, N, cfg, seed):
    rule, mod, src, alpha = cfg
    ref, fus = _compare(rule, mod, src, alpha, torch.float64, T=T, B=B, N=N, seed=seed)
    _assert_match(ref, fus, torch.float64)
