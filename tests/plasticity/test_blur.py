"""BLUR (Sandler et al. 2021): the genome's equations, the backprop genome, meta-gradients, and the
``blur`` rule's RL feedback path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as Fn

from neuromod_rl.plasticity import PlasticState, make_rule
from neuromod_rl.plasticity.blur_network import (
    BlurGenome,
    BlurNetwork,
    backward_message,
    forward_message,
    synapse_delta,
)

torch.set_num_threads(1)


def test_backprop_genome_reproduces_sgd_exactly():
    """The hand-set genome trains a 5-7-4-3 tanh MLP exactly like torch SGD on the cross-entropy."""
    torch.manual_seed(0)
    lr = 0.25  # exact in float32, so the genome (built in float32, cast to float64) holds it exactly
    net = BlurNetwork([5, 7, 4, 3], BlurGenome.sgd(k=2, lr=lr).double())
    W = net.init_weights(torch.Generator().manual_seed(1))
    W = [(a.double(), b.double()) for a, b in W]
    ref = [w[0][..., 0].clone().requires_grad_() for w in W]
    opt = torch.optim.SGD(ref, lr=lr)
    for _ in range(6):
        x, y = torch.randn(8, 5, dtype=torch.float64), torch.randint(0, 3, (8,))
        h = x
        for i, Wi in enumerate(ref):
            h = h @ Wi if i == len(ref) - 1 else torch.tanh(h @ Wi)
        loss = Fn.cross_entropy(h, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            W = net.train_step(W, x, target=y)
    for (Wf, V), Wr in zip(W, ref):
        for c in range(2):  # every channel of both blocks stays equal to the SGD weights
            torch.testing.assert_close(Wf[..., c], Wr.detach(), rtol=0, atol=1e-12)
            torch.testing.assert_close(V[..., c], Wr.detach(), rtol=0, atol=1e-12)


def test_messages_and_synapse_update_match_the_equations():
    """Loop form of u, v and ΔW (the paper's equations) against the vectorised functions, k = 3."""
    g = torch.Generator().manual_seed(2)
    B, I, J, k = 2, 3, 4, 3
    x, y = torch.randn(B, I, k, generator=g), torch.randn(B, J, k, generator=g)
    W, V = torch.randn(I, J, k, generator=g), torch.randn(I, J, k, generator=g)
    nu_f, nu_b, P, Q = (torch.randn(k, k, generator=g) for _ in range(4))
    u, v, dW = torch.zeros(B, J, k), torch.zeros(B, I, k), torch.zeros(I, J, k)
    for b in range(B):
        for i in range(I):
            for j in range(J):
                for a in range(k):
                    for l in range(k):
                        u[b, j, l] += x[b, i, a] * nu_f[a, l] * W[i, j, l]
                        v[b, i, l] += y[b, j, a] * nu_b[a, l] * V[i, j, l]
                        for o in range(k):
                            dW[i, j, o] += x[b, i, a] * P[a, o] * Q[o, l] * y[b, j, l] / B
    torch.testing.assert_close(forward_message(x, W, nu_f), u)
    torch.testing.assert_close(backward_message(y, V, nu_b), v)
    torch.testing.assert_close(synapse_delta(x, y, P, Q), dW)
    per_b = synapse_delta(x, y, P, Q, batch_mean=False)
    torch.testing.assert_close(per_b.mean(0), dW)
    # per-sequence blocks [B, I, J, k] give each row its own weights
    Wb = torch.stack([W, 2 * W])
    torch.testing.assert_close(forward_message(x, Wb, nu_f)[1], forward_message(x[1:], 2 * W, nu_f)[0])


def test_genome_size_and_vector_round_trip():
    for k in (2, 4):
        g = BlurGenome(k=k, noise=0.1, generator=torch.Generator().manual_seed(0))
        assert g.n_numbers == 4 * k * k + 3 * k + 2
        vec = g.to_vector()
        h = BlurGenome(k=k).load_vector(vec)
        torch.testing.assert_close(h.to_vector(), vec)
    assert g.keep_s.item() == 1.0  # noise never starts weights growing exponentially


def test_meta_gradient_reaches_every_genome_entry_through_an_unroll():
    genome = BlurGenome(k=2, lr=0.1, noise=0.05, generator=torch.Generator().manual_seed(0))
    net = BlurNetwork([4, 6, 3], genome)
    W = net.init_weights(torch.Generator().manual_seed(1), tied=False)
    g = torch.Generator().manual_seed(3)
    for _ in range(4):
        W = net.train_step(W, torch.randn(5, 4, generator=g), target=torch.randint(0, 3, (5,), generator=g))
    Fn.cross_entropy(net.logits(W, torch.randn(5, 4)), torch.randint(0, 3, (5,))).backward()
    for name, p in genome.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bad_arguments_raise_clearly():
    with pytest.raises(ValueError, match="k must be >= 2"):
        BlurGenome(k=1)
    with pytest.raises(ValueError, match="expected 24 numbers"):
        BlurGenome(k=2).load_vector(torch.zeros(3))
    net = BlurNetwork([2, 2], BlurGenome())
    W = net.init_weights()
    with pytest.raises(ValueError, match="exactly one of target"):
        net.train_step(W, torch.zeros(1, 2))
    with pytest.raises(ValueError, match="sizes must list"):
        BlurNetwork([3], BlurGenome())
    with pytest.raises(ValueError, match="decay"):
        make_rule("blur", 3, 3, decay=1.5)
    rule = make_rule("blur", 3, 3)
    st = PlasticState(**rule.init_traces(2))
    with pytest.raises(ValueError, match="needs a modulation"):
        rule.update(st, torch.zeros(2, 3), torch.zeros(2, 3), None)


def test_rule_feedback_enters_state_one():
    """With the backprop genome the rule is ``F <- keep_s F + upd_s x_i m_j``: the modulation
    (reward / TD error) plays the role of the output error of backprop."""
    rule = make_rule("blur", 3, 4, noise=0.0, lr=0.5, decay=0.9, clip=None, alpha_shape="none")
    g = torch.Generator().manual_seed(0)
    F0 = torch.randn(2, 3, 4, 2, generator=g)
    st = PlasticState(F=F0, V=torch.randn(2, 3, 4, 2, generator=g))
    pre, post = torch.rand(2, 3, generator=g), torch.rand(2, 4, generator=g)
    m = torch.tensor([1.5, -0.5])
    new = rule.update(st, pre, post, m)
    expect = 0.9 * F0 + 0.5 * (pre[:, :, None] * m[:, None, None]).unsqueeze(-1).expand(-1, -1, 4, 2)
    torch.testing.assert_close(new.F, expect)
    torch.testing.assert_close(rule.weight_term(new), new.F[..., 0])  # ν^f row 0 reads channel 0
    fanout = rule.update(st, pre, post, m[:, None].expand(2, 4))
    torch.testing.assert_close(fanout.F, new.F)


def test_synapse_keep_is_clamped_to_unit_interval():
    """keep_s above 1 would grow weights exponentially: it acts as 1 (and below 0 as 0)."""
    net_hi, net_one = BlurNetwork([3, 2], BlurGenome(lr=0.1)), BlurNetwork([3, 2], BlurGenome(lr=0.1))
    with torch.no_grad():
        net_hi.genome.keep_s.fill_(1.5)
    W = net_one.init_weights(torch.Generator().manual_seed(0))
    x, y = torch.randn(4, 3), torch.randint(0, 2, (4,))
    for (a, _), (b, _) in zip(net_hi.train_step(W, x, target=y), net_one.train_step(W, x, target=y)):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        net_hi.genome.keep_s.fill_(-0.5)
        net_hi.genome.upd_s.fill_(0.0)
    assert all(a.abs().max() == 0 for a, _ in net_hi.train_step(W, x, target=y))
