"""torch.autograd.gradcheck (float64) through several steps of every rule x cell, with a mid-sequence reset."""

import pytest
import torch

from neuromod_rl.plasticity import PlasticLSTMCell, PlasticMLPCell, PlasticRNNCell, scan

RNN_CONFIGS = [
    ("hebbian", None, "full"),
    ("oja", None, "neuron"),
    ("clipped", None, "full"),
    ("neuromod", "scalar", "full"),
    ("neuromod", "fanout", "neuron"),
    ("retroactive", "scalar", "scalar"),
    ("retroactive", "fanout", "full"),
]


def _gradcheck(cell, backend="reference", T=4, B=2, I=3, external=False):
    torch.manual_seed(0)
    cell = cell.double()
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    starts = torch.zeros(T, B, dtype=torch.bool)
    starts[2, 0] = True
    mod = torch.randn(T, B, dtype=torch.float64, requires_grad=True) if external else None
    params = [p for p in cell.parameters()]

    def f(x, *args):
        m = args[0] if external else None
        y, state, _ = scan(cell, x, episode_starts=starts, modulation=m, backend=backend)
        return y.sum() + sum((v**2).sum() for v in state.values())

    inputs = (x, mod) if external else (x,)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5)
    # gradients of the meta-parameters (alpha, eta, w, modulator) through the same function
    for p in params:
        p.requires_grad_(True)
    loss = f(*inputs)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    for p, g in zip(params, grads):
        if g is None:
            continue
        with torch.no_grad():
            direction = torch.randn_like(p)
            p.add_(1e-6 * direction)
            up = f(*inputs)
            p.sub_(2e-6 * direction)
            down = f(*inputs)
            p.add_(1e-6 * direction)
        numeric = (up - down) / 2e-6
        assert torch.allclose((g * direction).sum(), numeric, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "rule,mod,alpha,backend",
    [(*c, backend) for c in RNN_CONFIGS for backend in ("reference", "fused")],
)
def test_rnn_cell(rule, mod, alpha, backend):
    _gradcheck(PlasticRNNCell(3, 4, rule=rule, modulation=mod, alpha_shape=alpha), backend)


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_rnn_cell_external_modulation(backend):
    _gradcheck(PlasticRNNCell(3, 4, rule="neuromod", modulation_source="external"), backend, external=True)


@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize("rule,mod", [("neuromod", "fanout"), ("retroactive", "scalar"), ("hebbian", None)])
def test_lstm_cell(rule, mod, backend):
    _gradcheck(PlasticLSTMCell(3, 4, rule=rule, modulation=mod, alpha_shape="neuron"), backend)


@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize("mod", [None, "scalar"])
def test_mlp_cell_abcd(mod, backend):
    _gradcheck(PlasticMLPCell(3, 4, rule="abcd", modulation=mod, max_norm=True), backend)


@pytest.mark.parametrize("rule,mod", [("abcd", "scalar"), ("oja", None)])
def test_mlp_cell_fused(rule, mod):
    _gradcheck(PlasticMLPCell(3, 4, rule=rule, modulation=mod), "fused")
