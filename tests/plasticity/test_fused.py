"""The fused backend against the reference (values and gradients), its memory, and its fallback path,
for every cell (RNN, LSTM, MLP) and every rule it runs.

Tolerances: float64 -- 1e-10 (absolute) on outputs and states, 1e-9 relative to each gradient's max
magnitude; float32 at real sizes -- outputs 1e-4 absolute, gradients 1e-3 relative (the kernel's
float tanh is within 3e-7 of libm's, and sums run in a different order than torch's).
"""

import importlib.util

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuromod_rl.plasticity import (
    PlasticLSTMCell,
    PlasticMLPCell,
    PlasticRNNCell,
    available_backends,
    cell_step,
    scan,
)
from neuromod_rl.plasticity.fused import cpu as fused_cpu
from neuromod_rl.plasticity.rules import PlasticityRule
from neuromod_rl.plasticity.rules.neuromod import Neuromodulated

MODULATED = [(rule, mod) for rule in ("neuromod", "retroactive") for mod in ("scalar", "fanout")]
ALPHAS = ("full", "neuron", "scalar")
RECURRENT_CONFIGS = (
    [(rule, mod, src, alpha) for rule, mod in MODULATED for src in ("hidden", "external") for alpha in ALPHAS]
    + [(rule, None, "hidden", alpha) for rule in ("clipped", "hebbian", "oja") for alpha in ALPHAS]
    + [("abcd", None, "hidden", alpha) for alpha in ("none", "full")]
    + [("abcd", mod, src, "none") for mod in ("scalar", "fanout") for src in ("hidden", "external")]
    + [("abcd_max_norm", None, "hidden", "none"), ("abcd_max_norm", "scalar", "hidden", "neuron")]
    + [("abcd_max_norm", "fanout", "hidden", "none")]
)
#: rule variants by name: (registered rule, its arguments)
VARIANTS = {"abcd_max_norm": ("abcd", {"max_norm": True})}
CONFIGS = [("rnn", *c) for c in RECURRENT_CONFIGS] + [("lstm", *c) for c in RECURRENT_CONFIGS] + [
    ("mlp", rule, mod, src, alpha)
    for rule, mod, src, alpha in RECURRENT_CONFIGS
    if alpha in ("neuron", "none") or (rule == "neuromod" and mod == "scalar" and src == "hidden")
]


def _config_id(c) -> str:
    return "-".join(str(v) for v in c)


def make_cell(kind, rule, mod, src, alpha, I, N, dtype=torch.float64):
    rule, rule_kwargs = VARIANTS.get(rule, (rule, {}))
    kw = dict(rule=rule, modulation=mod, modulation_source=src, alpha_shape=alpha, **rule_kwargs)
    if kind == "mlp":  # fan-out is defined for a single layer
        cell = PlasticMLPCell(I, N, n_layers=1 if mod == "fanout" else 2, **kw)
    else:
        cell = {"rnn": PlasticRNNCell, "lstm": PlasticLSTMCell}[kind](I, N, **kw)
    return cell.to(dtype)


def _rules(cell):
    return [m for m in cell.modules() if isinstance(m, PlasticityRule)]


def _run(cell, x, state, starts, ext, backend):
    cell.zero_grad()
    leaves = {k: v.detach().clone().requires_grad_() for k, v in state.items()}
    ext = None if ext is None else ext.detach().clone().requires_grad_()
    result = scan(cell, x, state.replace(**leaves), starts, ext, backend=backend)
    assert result.backend == backend
    y, final = result.y, result.state
    weights = torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype, device=y.device)
    loss = (y * weights).sum()
    for k, v in final.items():  # every final state field reaches the loss: its gradient flows back
        loss = loss + (0.1 * (v**2).sum() if k.startswith("F") else 0.3 * v.sum())
    loss.backward()
    grads = {f"param.{n}": p.grad.clone() for n, p in cell.named_parameters() if p.grad is not None}
    grads.update({f"state.{k}": v.grad.clone() for k, v in leaves.items()})
    if ext is not None:
        grads["modulation"] = ext.grad.clone()
    return y.detach(), final, grads


def _compare(kind, rule, mod, src, alpha, dtype, T, B, N, I=5, scale=3.0, seed=0, probe_clip=False, device="cpu"):
    torch.manual_seed(seed)
    cell = make_cell(kind, rule, mod, src, alpha, I, N, dtype)
    with torch.no_grad():  # large weights and rates so that the clip is active
        for p in cell.parameters():
            p.mul_(scale)
        for r in _rules(cell):
            for rate in ("eta", "eta_e"):
                if hasattr(r, rate):
                    getattr(r, rate).fill_(0.5)
    x = torch.randn(T, B, I, dtype=dtype)
    starts = torch.rand(T, B) < 0.1
    starts[T // 2, 0] = True
    ext = torch.randn(T, B, dtype=dtype) if src == "external" else None
    state = cell.initial_state(B, dtype=dtype)
    state = state.replace(**{k: v + (0.5 if k in ("h", "c") else 0.3) * torch.randn_like(v) for k, v in state.items()})
    if device != "cpu":  # the same draws as on the CPU, moved
        cell, x, starts = cell.to(device), x.to(device), starts.to(device)
        ext = None if ext is None else ext.to(device)
        state = state.replace(**{k: v.to(device) for k, v in state.items()})
    ref = _run(cell, x, state, starts, ext, "reference")
    fus = _run(cell, x, state, starts, ext, "fused")
    _compare.clipped = probe_clip and _clip_engaged(cell, x, state, starts, ext)
    return ref, fus


def _clip_engaged(cell, x, state, starts, ext) -> bool:
    """Whether some trace entry sits at the clip bound after some step of the sequence."""
    bound = cell.rule.clip
    if bound is None:
        return False
    with torch.no_grad():
        for t in range(x.shape[0]):
            m = None if ext is None else ext[t : t + 1]
            _, state, _ = scan(cell, x[t : t + 1], state, starts[t : t + 1], m, backend="reference")
            if any((v.abs() == bound).any() for k, v in state.items() if k.startswith("F")):
                return True
    return False


def _assert_match(ref, fus, dtype):
    (y_ref, f_ref, g_ref), (y_fus, f_fus, g_fus) = ref, fus
    atol, grad_rtol = (1e-10, 1e-9) if dtype == torch.float64 else (1e-4, 1e-3)
    torch.testing.assert_close(y_fus, y_ref, atol=atol, rtol=0)
    assert f_ref.keys() == f_fus.keys()
    for k in f_ref:
        scale = f_ref[k].abs().max().clamp_min(1.0)
        torch.testing.assert_close(f_fus[k].detach() / scale, f_ref[k].detach() / scale, atol=atol, rtol=0)
    assert g_ref.keys() == g_fus.keys()
    for k in g_ref:
        scale = g_ref[k].abs().max().clamp_min(1.0)
        err = (g_fus[k] - g_ref[k]).abs().max() / scale
        assert err < grad_rtol, f"gradient {k}: relative error {err:.2e}"


@pytest.mark.parametrize("kind,rule,mod,src,alpha", CONFIGS, ids=map(_config_id, CONFIGS))
def test_matches_reference_float64_with_resets_and_clipping(kind, rule, mod, src, alpha):
    ref, fus = _compare(kind, rule, mod, src, alpha, torch.float64, T=17, B=3, N=6, probe_clip=True)
    _assert_match(ref, fus, torch.float64)
    assert _compare.clipped or rule in ("hebbian", "oja", "abcd", "abcd_max_norm"), "the case must exercise the clip"


REAL_SIZE = [
    ("rnn", "neuromod", "scalar", "full"),
    ("rnn", "retroactive", "fanout", "neuron"),
    ("lstm", "neuromod", "scalar", "full"),
    ("lstm", "retroactive", "fanout", "neuron"),
    ("mlp", "abcd", "scalar", "none"),
]


@pytest.mark.parametrize("kind,rule,mod,alpha", REAL_SIZE, ids=map(_config_id, REAL_SIZE))
def test_matches_reference_float32_at_real_size(kind, rule, mod, alpha):
    # N=64 throughout; the reference side sets the time: fewer sequences for the LSTM, two layers for the MLP
    T, B = {"rnn": (64, 16), "lstm": (64, 8), "mlp": (32, 8)}[kind]
    ref, fus = _compare(kind, rule, mod, "hidden", alpha, torch.float32, T=T, B=B, N=64, scale=1.0)
    _assert_match(ref, fus, torch.float32)


FALLBACK = [
    ("rnn", "neuromod", "scalar", "hidden", "full"),
    ("lstm", "abcd_max_norm", "scalar", "hidden", "none"),
    ("rnn", "retroactive", "fanout", "external", "scalar"),
    ("lstm", "neuromod", "fanout", "hidden", "neuron"),
    ("lstm", "retroactive", "scalar", "external", "full"),
    ("lstm", "oja", None, "hidden", "full"),
    ("rnn", "abcd", "fanout", "hidden", "none"),
    ("mlp", "abcd", "scalar", "external", "none"),
    ("mlp", "hebbian", None, "hidden", "neuron"),
    ("mlp", "clipped", None, "hidden", "full"),
]


@pytest.mark.parametrize("kind,rule,mod,src,alpha", FALLBACK, ids=map(_config_id, FALLBACK))
def test_torch_op_fallback_matches_reference(monkeypatch, kind, rule, mod, src, alpha):
    """Without a C compiler (or on CUDA tensors) the fused backend runs its torch-op path."""
    monkeypatch.setattr(fused_cpu, "available", lambda: False)
    ref, fus = _compare(kind, rule, mod, src, alpha, torch.float64, T=11, B=2, N=5)
    _assert_match(ref, fus, torch.float64)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here (`make gpu-check` runs it on one)")
@pytest.mark.parametrize("kind,rule,mod,src,alpha", CONFIGS, ids=map(_config_id, CONFIGS))
def test_cuda_torch_ops_match_reference(kind, rule, mod, src, alpha):
    """On CUDA tensors the fused backend is its torch-op path: the same float64 agreement as on the CPU."""
    ref, fus = _compare(kind, rule, mod, src, alpha, torch.float64, T=17, B=3, N=6, device="cuda")
    assert ref[0].is_cuda and fus[0].is_cuda
    _assert_match(ref, fus, torch.float64)


def test_cpu_kernel_is_used_here():
    assert fused_cpu.available(), "a C compiler (gcc) is part of this project's machines; the kernel must build"


def test_what_stays_on_reference():
    """The fused backend takes exactly the cells and rules it implements; the rest runs on reference."""
    triton = ["triton"] if importlib.util.find_spec("triton") else []  # registered only where it imports
    assert available_backends(PlasticLSTMCell(2, 3)) == ["reference", "fused", *triton]
    assert available_backends(PlasticMLPCell(2, 3, rule="oja")) == ["reference", "fused"]
    assert available_backends(PlasticRNNCell(2, 3, rule="neuromod", soft_clip=True)) == ["reference"]
    assert available_backends(PlasticMLPCell(2, 3, rule="abcd", max_norm=True)) == ["reference", "fused"]
    assert available_backends(PlasticLSTMCell(2, 3, rule="metanet")) == ["reference"]

    class MyRule(Neuromodulated):  # a subclass may change the equation: the fused kernel cannot know it
        pass

    assert available_backends(PlasticRNNCell(2, 3, rule=MyRule(3, 3))) == ["reference"]
    assert available_backends(PlasticRNNCell(2, 3).half()) == ["reference"]


def _saved_bytes(cell, x, backend):
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y, _, _ = scan(cell, x, backend=backend)
    return total, y


@pytest.mark.parametrize("kind,rule", [("rnn", "neuromod"), ("lstm", "retroactive"), ("mlp", "abcd")])
def test_fused_saves_a_tenth_of_the_reference_memory(kind, rule):
    """Reference autograd keeps O(T*B*N^2); fused keeps O(T*B*N) plus sqrt(T) trace checkpoints."""
    torch.manual_seed(0)
    mod = "scalar" if rule != "abcd" else None
    cell = make_cell(kind, rule, mod, "hidden", "neuron" if kind == "lstm" else "none", 8, 32, torch.float32)
    x = torch.randn(128, 4, 8)
    ref, _ = _saved_bytes(cell, x, "reference")
    fus, _ = _saved_bytes(cell, x, "fused")
    assert fus * 10 <= ref, f"fused saved {fus} bytes, reference {ref}"


@pytest.mark.parametrize("kind", ["rnn", "lstm", "mlp"])
def test_gradient_flows_through_chained_chunks(kind):
    """Truncated-BPTT users chain chunks without detaching: gradients cross the chunk boundary."""
    torch.manual_seed(0)
    rule = "abcd" if kind == "mlp" else "neuromod"
    cell = make_cell(kind, rule, "scalar", "hidden", "none" if kind == "mlp" else "full", 3, 4)
    x = torch.randn(12, 2, 3, dtype=torch.float64)
    grads = {}
    for backend in ("reference", "fused"):
        cell.zero_grad()
        y1, s1, _ = scan(cell, x[:6], backend=backend)
        y2, _, _ = scan(cell, x[6:], s1, backend=backend)
        (y1.sum() + y2.sum()).backward()
        grads[backend] = [p.grad.clone() for p in cell.parameters()]
    for g_fus, g_ref in zip(grads["fused"], grads["reference"]):
        torch.testing.assert_close(g_fus, g_ref, atol=1e-10, rtol=0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    T=st.integers(1, 20),
    B=st.integers(1, 4),
    N=st.sampled_from([1, 3, 8, 32]),
    cfg=st.sampled_from(CONFIGS),
    seed=st.integers(0, 2**16),
)
def test_property_matches_reference_over_shapes(T, B, N, cfg, seed):
    ref, fus = _compare(*cfg, torch.float64, T=T, B=B, N=N, seed=seed)
    _assert_match(ref, fus, torch.float64)


@pytest.mark.parametrize("path", ["kernel", "torch"])
def test_max_norm_ties_share_the_gradient(monkeypatch, path):
    """ABCD's max_norm divides by max|F|; where several entries tie at the max (a constant initial trace, no
    update), the gradient is shared among them as the reference's amax shares it."""
    if path == "torch":
        monkeypatch.setattr(fused_cpu, "available", lambda: False)
    torch.manual_seed(0)
    cell = make_cell("rnn", "abcd_max_norm", None, "hidden", "none", 3, 4)
    with torch.no_grad():
        for coeff in (cell.rule.A, cell.rule.B, cell.rule.C, cell.rule.D):
            coeff.zero_()
        cell.rule.F0.fill_(0.5)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    state = cell.initial_state(2, dtype=torch.float64)
    ref = _run(cell, x, state, None, None, "reference")
    fus = _run(cell, x, state, None, None, "fused")
    _assert_match(ref, fus, torch.float64)
    assert (ref[2]["state.F"] != 0).all(), "every tied entry receives a share of the gradient"


@pytest.mark.parametrize("path", ["kernel", "torch"])
@pytest.mark.parametrize("kind,rule,mod,src,alpha", CONFIGS, ids=map(_config_id, CONFIGS))
def test_inference_step_matches_cell_step(monkeypatch, path, kind, rule, mod, src, alpha):
    """cell_step (rollouts, predict) under no_grad == the cell's own step, from a non-trivial state."""
    if path == "torch":
        monkeypatch.setattr(fused_cpu, "available", lambda: False)
    torch.manual_seed(0)
    cell = make_cell(kind, rule, mod, src, alpha, 5, 6)
    B = 3
    state = cell.initial_state(B, dtype=torch.float64)
    state = state.replace(**{k: v + 0.3 * torch.randn_like(v) for k, v in state.items()})
    with torch.no_grad():
        for _ in range(3):
            xp = cell.project_input(torch.randn(B, 5, dtype=torch.float64))
            ext = torch.randn(B, dtype=torch.float64) if src == "external" else None
            y_ref, m_ref, s_ref = cell.step(xp, state, ext)
            y, m, s = cell_step(cell, xp, state, ext)
            torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=0)
            assert (m is None) == (m_ref is None) and (m is None or torch.allclose(m, m_ref, atol=1e-12, rtol=0))
            assert s.keys() == s_ref.keys()
            for k in s_ref:
                torch.testing.assert_close(s[k], s_ref[k], atol=1e-12, rtol=0)
            state = s_ref


def test_inference_step_follows_parameter_updates():
    """The kernel's cached step config reads the parameters as they are now: in-place updates (optimizer
    steps), the scalar rate and a scalar alpha held by value, and a replaced parameter."""
    torch.manual_seed(0)
    cell = make_cell("rnn", "retroactive", "scalar", "hidden", "scalar", 4, 5)
    state = cell.initial_state(2, dtype=torch.float64)
    state = state.replace(**{k: v + 0.3 * torch.randn_like(v) for k, v in state.items()})
    xp = cell.project_input(torch.randn(2, 4, dtype=torch.float64))

    def check():
        with torch.no_grad():
            y_ref, _, s_ref = cell.step(xp, state)
            y, _, s = cell_step(cell, xp, state)
        torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=0)
        torch.testing.assert_close(s.E, s_ref.E, atol=1e-12, rtol=0)

    check()
    with torch.no_grad():
        cell.rule.eta_e.fill_(0.7)
        cell.rule.alpha.mul_(3.0)
        cell.w.add_(0.5)
        cell.modulator.to_scalar.bias.fill_(0.9)
    check()
    cell.w = torch.nn.Parameter(torch.randn_like(cell.w))
    check()
