"""L2L (Andrychowicz et al. 2016): gradient preprocessing, the coordinatewise LSTM optimizer, and the
``l2l`` rule's equation."""

from __future__ import annotations

import math

import pytest
import torch

from neuromod_rl.plasticity import PlasticState, make_rule
from neuromod_rl.plasticity.learned_optimizer import CoordinatewiseLSTM, L2LOptimizer, preprocess_gradient

torch.set_num_threads(1)


def test_preprocessing_matches_hand_computed_values():
    """p = 10, threshold e^-10 ≈ 4.54e-5: (log|g|/p, sign g) above it, (-1, e^p g) below."""
    g = torch.tensor([1.0, -0.5, 1e-3, -1e-6, 0.0, 2.0e-5], dtype=torch.float64)
    expect = torch.tensor(
        [
            [0.0, 1.0],
            [-0.06931471805599453, -1.0],  # ln(0.5) / 10
            [-0.6907755278982137, 1.0],  # ln(1e-3) / 10
            [-1.0, -0.022026465794806718],  # e^10 * -1e-6
            [-1.0, 0.0],
            [-1.0, 0.44052931589613436],  # 2e-5 < e^-10: e^10 * 2e-5
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(preprocess_gradient(g, p=10.0), expect)
    # continuity of the second feature's magnitude and of the first at the threshold
    at = torch.tensor([math.exp(-10.0)], dtype=torch.float64)
    torch.testing.assert_close(preprocess_gradient(at)[0], torch.tensor([-1.0, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="p must be > 0"):
        preprocess_gradient(g, p=0.0)


def test_preprocessing_gradient_is_finite_at_zero():
    g = torch.tensor([0.0, 1e-8, 1.0], requires_grad=True)
    preprocess_gradient(g).sum().backward()
    assert torch.isfinite(g.grad).all()


def test_coordinatewise_lstm_shares_weights_but_not_state():
    torch.manual_seed(0)
    net = CoordinatewiseLSTM(2, 5, 2, out_scale=1.0)
    x = torch.randn(3, 4, 2)
    h, c = net.init_state((3, 4))
    out, h2, c2 = net(x, h, c)
    assert out.shape == (3, 4) and h2.shape == (3, 4, 2, 5)
    # coordinate (1, 2) alone gives the same answer: no mixing across coordinates
    o1, _, _ = net(x[1:2, 2:3], h[1:2, 2:3], c[1:2, 2:3])
    torch.testing.assert_close(o1[0, 0], out[1, 2])
    with pytest.raises(ValueError, match="state must have shape"):
        net(x, h[:1], c)
    with pytest.raises(ValueError, match="must be positive"):
        CoordinatewiseLSTM(2, 0)


def test_unroll_keeps_the_meta_graph_and_drops_second_derivatives():
    torch.manual_seed(0)
    opt = L2LOptimizer(hidden_size=4)
    A = torch.randn(3, 3)

    def loss_fn(theta):
        return ((theta @ A) ** 2).sum(-1)

    losses, theta, state = opt.unroll(loss_fn, torch.randn(2, 3), 5)
    assert losses.shape == (5,) and theta.shape == (2, 3) and state[0].shape == (2, 3, 2, 4)
    params = list(opt.parameters())
    # f(θ_0) comes before any update: no gradient to phi; f(θ_1) depends on phi through the first update
    first = torch.autograd.grad(losses[0], params, allow_unused=True, retain_graph=True)
    assert all(g is None or g.abs().sum() == 0 for g in first)
    second = torch.autograd.grad(losses[1], params, allow_unused=True, retain_graph=True)
    assert sum(g.abs().sum() for g in second if g is not None) > 0
    losses.sum().backward()
    assert all(p.grad is not None for p in params)
    ev, _, _ = opt.unroll(loss_fn, torch.randn(2, 3), 5, track_meta=False)
    assert not ev.requires_grad
    with pytest.raises(ValueError, match="n_steps must be > 0"):
        opt.unroll(loss_fn, torch.randn(2, 3), 0)


def test_meta_training_improves_the_optimizer():
    """A few meta-steps on 3-d quadratics lower the loss the learned optimizer reaches (seeded)."""
    torch.manual_seed(0)
    opt = L2LOptimizer(hidden_size=8)
    meta = torch.optim.Adam(opt.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)

    def problems(g):
        W, y = torch.randn(32, 3, 3, generator=g), torch.randn(32, 3, generator=g)
        return (lambda th: ((torch.einsum("nij,nj->ni", W, th) - y) ** 2).sum(-1)), torch.randn(32, 3, generator=g)

    def evaluate():
        f, th = problems(torch.Generator().manual_seed(99))
        return opt.unroll(f, th, 20, track_meta=False)[0][-1].item()

    before = evaluate()
    for _ in range(30):
        f, th = problems(gen)
        losses, _, _ = opt.unroll(f, th, 20)
        meta.zero_grad()
        losses.sum().backward()
        meta.step()
    after = evaluate()
    assert after < 0.75 * before, (before, after)


def test_rule_equation_and_modulation_input():
    """F' = clip(F + LSTM(preprocess(x_i y_j), m)); the modulation is the LSTM's third input."""
    torch.manual_seed(0)
    rule = make_rule("l2l", 3, 2, lstm_hidden=4, clip=None)
    g = torch.Generator().manual_seed(1)
    pre, post = torch.randn(2, 3, generator=g), torch.randn(2, 2, generator=g)
    st = PlasticState(**rule.init_traces(2))
    st = st.replace(F=torch.randn(2, 3, 2, generator=g))
    m = torch.tensor([0.5, -1.0])
    new = rule.update(st, pre, post, m)
    hebb = pre[:, :, None] * post[:, None, :]
    feats = torch.cat([preprocess_gradient(hebb), m[:, None, None, None].expand(2, 3, 2, 1)], -1)
    delta, h, c = rule.net(feats, st.lh, st.lc)
    torch.testing.assert_close(new.F, st.F + delta)
    torch.testing.assert_close(new.lh, h)
    assert not torch.allclose(rule.update(st, pre, post, None).F, new.F)  # modulation changes the update
    clipped = make_rule("l2l", 3, 2, lstm_hidden=4, clip=0.01).update(st, pre, post, m)
    assert clipped.F.abs().max() <= 0.01
    with pytest.raises(ValueError, match="clip must be > 0"):
        make_rule("l2l", 3, 2, clip=0.0)
    with pytest.raises(ValueError, match=r"modulation must have shape \[B\]"):
        rule.update(st, pre, post, torch.zeros(2, 5))
