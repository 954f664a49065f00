"""metanet (Gregor 2020): learned neuron and synapse update functions, checked against the
equations written out on concatenated inputs."""

from __future__ import annotations

import pytest
import torch

from neuromod_rl.plasticity import PlasticRNNCell, PlasticState, make_rule, scan
from neuromod_rl.plasticity.rules.metanet import GatedUpdate

torch.set_num_threads(1)


def gated(fn: GatedUpdate, s: torch.Tensor, first_layer_input: torch.Tensor) -> torch.Tensor:
    """``s' = (1 - σ(g)) s + σ(g) tanh(c)``, ``[g, c] = out(tanh(state_in(s) + z))`` written out."""
    gc = fn.out(torch.tanh(fn.state_in(s) + first_layer_input))
    g, c = gc.chunk(2, dim=-1)
    return (1 - torch.sigmoid(g)) * s + torch.sigmoid(g) * torch.tanh(c)


def test_update_matches_the_equations_on_concatenated_inputs():
    """f_w's split first layer equals one linear map of [a_i', x_i, e_i, b_j', y_j, m_j, e_j]
    broadcast over synapses; neuron types cycle i mod n_types."""
    torch.manual_seed(0)
    I, J, B = 3, 5, 2
    rule = make_rule("metanet", I, J, synapse_size=3, neuron_size=2, meta_hidden=6, n_types=2, type_size=3)
    g = torch.Generator().manual_seed(1)
    st = PlasticState(
        S=torch.rand(B, I, J, 3, generator=g) - 0.5,
        A=torch.rand(B, I, 2, generator=g) - 0.5,
        Bn=torch.rand(B, J, 2, generator=g) - 0.5,
    )
    pre, post, m = torch.randn(B, I, generator=g), torch.randn(B, J, generator=g), torch.randn(B, generator=g)
    new = rule.update(st, pre, post, m)

    e_pre = rule.types[torch.arange(I) % 2].expand(B, -1, -1)
    e_post = rule.types[torch.arange(J) % 2].expand(B, -1, -1)
    mj = m[:, None, None].expand(B, J, 1)
    A = gated(rule.f_n, st.A, rule.n_in(torch.cat([pre[..., None], torch.zeros(B, I, 1), e_pre], -1)))
    Bn = gated(rule.f_n, st.Bn, rule.n_in(torch.cat([post[..., None], mj, e_post], -1)))
    pre_feats = torch.cat([A, pre[..., None], e_pre], -1)[:, :, None, :].expand(B, I, J, -1)
    post_feats = torch.cat([Bn, post[..., None], mj, e_post], -1)[:, None, :, :].expand(B, I, J, -1)
    W = torch.cat([rule.w_pre.weight, rule.w_post.weight], dim=1)  # one Linear on the concatenation
    z = torch.cat([pre_feats, post_feats], -1) @ W.T
    S = gated(rule.f_w, st.S, z)
    torch.testing.assert_close(new.A, A)
    torch.testing.assert_close(new.Bn, Bn)
    torch.testing.assert_close(new.S, S)
    torch.testing.assert_close(rule.weight_term(new), S @ rule.readout)


def test_states_stay_in_unit_box_and_types_matter():
    torch.manual_seed(0)
    rule = make_rule("metanet", 4, 4, n_types=2)
    st = PlasticState(**rule.init_traces(1))
    for _ in range(50):
        st = rule.update(st, 5 * torch.randn(1, 4), 5 * torch.randn(1, 4), 10 * torch.randn(1))
    assert all(v.abs().max() <= 1 for v in st.values())
    # identical activity everywhere: neurons 0 and 1 (types 0, 1) update differently, 0 and 2 alike
    st = rule.update(PlasticState(**rule.init_traces(1)), torch.ones(1, 4), torch.ones(1, 4), None)
    assert not torch.allclose(st.Bn[0, 0], st.Bn[0, 1])
    torch.testing.assert_close(st.Bn[0, 0], st.Bn[0, 2])


def test_modulation_is_optional_and_changes_synapses():
    torch.manual_seed(0)
    rule = make_rule("metanet", 3, 3)
    st = PlasticState(**rule.init_traces(2))
    pre, post = torch.randn(2, 3), torch.randn(2, 3)
    none = rule.update(st, pre, post, None)
    zero = rule.update(st, pre, post, torch.zeros(2))
    torch.testing.assert_close(none.S, zero.S)  # absent modulation reads as 0
    fan = rule.update(st, pre, post, torch.randn(2, 3))
    assert not torch.allclose(fan.S, none.S)


def test_learns_to_store_a_pattern_in_synapses():
    """A few Adam steps teach the rule (through a PlasticRNNCell) to recall a 4-bit pattern two
    steps after it was shown. The slow recurrent weight is frozen at zero, so without plasticity the
    hidden state forgets the pattern at the next step: the memory must pass through the fast weights."""
    torch.manual_seed(0)
    cell = PlasticRNNCell(5, 6, rule="metanet", alpha_shape="none", meta_hidden=8)
    readout = torch.nn.Linear(6, 4)
    with torch.no_grad():
        cell.w.zero_()
    cell.w.requires_grad_(False)
    params = [p for p in list(cell.parameters()) + list(readout.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-2)
    gen = torch.Generator().manual_seed(1)

    def batch(n):
        p = torch.randint(0, 2, (n, 4), generator=gen).float() * 2 - 1
        x = torch.zeros(3, n, 5)
        x[0, :, :4], x[0, :, 4] = p, 1.0  # store
        x[2, :, 4] = -1.0  # blank step then a cue
        return x, p

    def accuracy():
        x, p = batch(256)
        with torch.no_grad():
            y = readout(scan(cell, x, backend="reference").y[-1])
        return (torch.sign(y) == p).float().mean().item()

    before = accuracy()
    for _ in range(150):
        x, p = batch(32)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            readout(scan(cell, x, backend="reference").y[-1]), (p > 0).float()
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = accuracy()
    assert after > max(0.75, before + 0.15), (before, after)


def test_bad_arguments_raise_clearly():
    with pytest.raises(ValueError, match="synapse_size must be a positive int"):
        make_rule("metanet", 3, 3, synapse_size=0)
    with pytest.raises(ValueError, match="n_types must be a positive int"):
        make_rule("metanet", 3, 3, n_types=2.5)
    rule = make_rule("metanet", 3, 3)
    st = PlasticState(**rule.init_traces(2))
    with pytest.raises(ValueError, match=r"modulation must have shape \[B\]"):
        rule.update(st, torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4))
