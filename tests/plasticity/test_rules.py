"""Each rule against its equation, computed by hand with scalar loops (the equations in each rule's docstring)."""

import itertools

import pytest
import torch

from neuromod_rl.plasticity import PlasticState, available_rules, make_rule

B, NI, NJ = 2, 3, 4


@pytest.fixture
def inputs():
    g = torch.Generator().manual_seed(0)
    pre = torch.randn(B, NI, generator=g, dtype=torch.float64)
    post = torch.randn(B, NJ, generator=g, dtype=torch.float64)
    F = 0.9 * (2 * torch.rand(B, NI, NJ, generator=g, dtype=torch.float64) - 1)
    E = torch.randn(B, NI, NJ, generator=g, dtype=torch.float64)
    return pre, post, F, E


def _cells():
    return itertools.product(range(B), range(NI), range(NJ))


def _clip(v, c):
    return max(-c, min(c, v))


def test_hebbian_decay(inputs):
    pre, post, F, _ = inputs
    rule = make_rule("hebbian", NI, NJ, eta=0.3).double()
    eta = rule.eta.item()
    new = rule.update(PlasticState(F=F), pre, post, None).F
    for b, i, j in _cells():
        expected = (1 - eta) * F[b, i, j].item() + eta * pre[b, i].item() * post[b, j].item()
        assert new[b, i, j].item() == pytest.approx(expected, rel=1e-12)


def test_oja(inputs):
    pre, post, F, _ = inputs
    rule = make_rule("oja", NI, NJ, eta=0.2).double()
    eta = rule.eta.item()
    new = rule.update(PlasticState(F=F), pre, post, None).F
    for b, i, j in _cells():
        x, y, f = pre[b, i].item(), post[b, j].item(), F[b, i, j].item()
        assert new[b, i, j].item() == pytest.approx(f + eta * y * (x - f * y), rel=1e-12)


@pytest.mark.parametrize("soft", [False, True])
def test_clipped(inputs, soft):
    pre, post, F, _ = inputs
    rule = make_rule("clipped", NI, NJ, eta=0.8, clip=1.0, soft_clip=soft).double()
    eta = rule.eta.item()
    new = rule.update(PlasticState(F=F), pre, post, None).F
    clipped = 0
    for b, i, j in _cells():
        f, d = F[b, i, j].item(), eta * pre[b, i].item() * post[b, j].item()
        if soft:
            expected = f + max(d, 0) * (1 - f) + min(d, 0) * (f + 1)
        else:
            expected = _clip(f + d, 1.0)
            clipped += abs(f + d) > 1
        assert new[b, i, j].item() == pytest.approx(expected, rel=1e-12)
    assert soft or clipped > 0, "the case must exercise the clip"


@pytest.mark.parametrize("fanout", [False, True])
def test_neuromod(inputs, fanout):
    pre, post, F, _ = inputs
    m = torch.tensor([0.7, -1.3], dtype=torch.float64)
    if fanout:
        m = torch.linspace(-2, 2, B * NJ, dtype=torch.float64).reshape(B, NJ)
    rule = make_rule("neuromod", NI, NJ, clip=2.0 if fanout else 1.0).double()
    new = rule.update(PlasticState(F=F), pre, post, m).F
    for b, i, j in _cells():
        mm = m[b, j].item() if fanout else m[b].item()
        expected = _clip(F[b, i, j].item() + mm * pre[b, i].item() * post[b, j].item(), rule.clip)
        assert new[b, i, j].item() == pytest.approx(expected, rel=1e-12)


def test_retroactive_uses_previous_eligibility_then_updates_it(inputs):
    pre, post, F, E = inputs
    m = torch.tensor([0.5, -0.9], dtype=torch.float64)
    rule = make_rule("retroactive", NI, NJ, eta_e=0.25).double()
    eta_e = rule.eta_e.item()
    new = rule.update(PlasticState(F=F, E=E), pre, post, m)
    for b, i, j in _cells():
        e = E[b, i, j].item()
        assert new.F[b, i, j].item() == pytest.approx(_clip(F[b, i, j].item() + m[b].item() * e, 1.0), rel=1e-12)
        expected_e = (1 - eta_e) * e + eta_e * pre[b, i].item() * post[b, j].item()
        assert new.E[b, i, j].item() == pytest.approx(expected_e, rel=1e-12)


@pytest.mark.parametrize("max_norm", [False, True])
def test_abcd(inputs, max_norm):
    pre, post, F, _ = inputs
    rule = make_rule("abcd", NI, NJ, max_norm=max_norm).double()
    new = rule.update(PlasticState(F=F), pre, post, None).F
    raw = torch.empty_like(F)
    for b, i, j in _cells():
        x, y = pre[b, i].item(), post[b, j].item()
        A, Bc, C, D, eta = (getattr(rule, k)[i, j].item() for k in ("A", "B", "C", "D", "eta"))
        raw[b, i, j] = F[b, i, j].item() + eta * (A * x * y + Bc * x + C * y + D)
    if max_norm:
        raw = raw / raw.abs().amax(dim=(1, 2), keepdim=True)
    assert torch.allclose(new, raw, rtol=1e-12, atol=0)


@pytest.mark.parametrize("shape,expected", [("full", (NI, NJ)), ("neuron", (1, NJ)), ("scalar", (1, 1))])
def test_alpha_shapes(shape, expected):
    rule = make_rule("neuromod", NI, NJ, alpha_shape=shape)
    assert tuple(rule.alpha.shape) == expected
    F = torch.ones(B, NI, NJ)
    assert rule.weight_term(PlasticState(F=F)).shape == (B, NI, NJ)


def test_abcd_trace_is_the_weight_by_default():
    rule = make_rule("abcd", NI, NJ)
    assert rule.alpha is None
    F0 = rule.init_traces(2)["F"]
    assert F0.abs().max() <= rule.init_scale and F0.abs().max() > 0


def test_registry_lists_the_builtin_rules_and_rejects_unknown_names():
    assert {"hebbian", "oja", "clipped", "neuromod", "retroactive", "abcd"} <= set(available_rules())
    with pytest.raises(ValueError, match="unknown plasticity rule 'hebian'; valid choices"):
        make_rule("hebian", 3, 3)
    with pytest.raises(TypeError, match="unexpected argument"):
        make_rule("hebbian", 3, 3, clip=1.0)
    with pytest.raises(ValueError, match="alpha_shape='diag'"):
        make_rule("neuromod", 3, 3, alpha_shape="diag")


def test_modulation_contract(inputs):
    pre, post, F, _ = inputs
    neuromod = make_rule("neuromod", NI, NJ).double()
    with pytest.raises(ValueError, match="needs a modulation signal"):
        neuromod.update(PlasticState(F=F), pre, post, None)
    with pytest.raises(ValueError, match=r"modulation must have shape \[B\]"):
        neuromod.update(PlasticState(F=F), pre, post, torch.zeros(B, NJ + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="takes no modulation"):
        make_rule("hebbian", NI, NJ).double().update(PlasticState(F=F), pre, post, torch.zeros(B))
