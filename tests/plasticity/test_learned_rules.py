"""What the three learned-rule families (metanet, blur, l2l) share with every other rule: registry,
gradients through a plastic cell, episode resets in scan, bounded long runs, use from a policy."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from neuromod_rl.agents import PlasticPPO
from neuromod_rl.plasticity import PlasticRNNCell, PlasticState, available_rules, make_rule, scan

torch.set_num_threads(1)

RULES = ("metanet", "blur", "l2l")
# tiny sizes for gradcheck (numerical Jacobians are one forward per perturbed number)
TINY = {
    "metanet": dict(synapse_size=2, neuron_size=2, meta_hidden=3, n_types=2, type_size=2),
    "blur": dict(k=2),
    "l2l": dict(lstm_hidden=2),
}


def make_cell(rule: str, modulation="auto", **kw) -> PlasticRNNCell:
    torch.manual_seed(0)
    return PlasticRNNCell(2, 3, rule=rule, modulation=modulation, alpha_shape="scalar", **{**TINY[rule], **kw})


@pytest.mark.parametrize("rule", RULES)
def test_registered_and_built_by_name(rule):
    assert rule in available_rules()
    r = make_rule(rule, 4, 5)
    traces = r.init_traces(2)
    assert set(traces) == set(r.trace_names)
    assert all(t.shape[0] == 2 for t in traces.values())
    assert r.weight_term(PlasticState(**traces)).shape == (2, 4, 5)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("modulation", ["auto", "scalar"])
def test_gradcheck_through_cell(rule, modulation):
    """float64 gradcheck of 3 steps of a PlasticRNNCell w.r.t. the input and every rule parameter."""
    cell = make_cell(rule, modulation).double()
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    params = [p for p in cell.rule.parameters()]
    assert params, "a learned rule must have meta-parameters"

    def f(x, *_):  # gradcheck perturbs the parameter tensors in place; the cell reads them
        res = scan(cell, x, backend="reference")
        return res.y, res.state.flat()

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("rule", RULES)
def test_scan_episode_reset_restarts_the_rule(rule):
    """After an episode start the rule's traces restart: rows continue exactly as a fresh sequence."""
    cell = make_cell(rule)
    x = torch.randn(7, 3, 2)
    starts = torch.zeros(7, 3, dtype=torch.bool)
    starts[4, 1] = True
    with torch.no_grad():
        full = scan(cell, x, episode_starts=starts, backend="reference")
        fresh = scan(cell, x[4:, 1:2], backend="reference")
        assert not torch.allclose(full.y[4:, 1], scan(cell, x, backend="reference").y[4:, 1])
    torch.testing.assert_close(full.y[4:, 1:2], fresh.y)
    for k in full.state:
        torch.testing.assert_close(full.state[k][1:2], fresh.state[k])


@pytest.mark.parametrize("rule", RULES)
def test_long_sequence_stays_finite_and_bounded(rule):
    torch.manual_seed(1)
    cell = PlasticRNNCell(4, 8, rule=rule, alpha_shape="neuron")
    with torch.no_grad():
        res = scan(cell, 3 * torch.randn(300, 2, 4), backend="reference")
    res.state.check_finite("300 steps")
    assert cell.rule.weight_term(res.state).abs().max() < 10
    assert res.y.abs().max() <= 1


@pytest.mark.parametrize("rule", RULES)
def test_plasticity_changes_the_output(rule):
    """The fast weights matter: zeroing them after a warm-up changes the next output."""
    cell = make_cell(rule)
    x = torch.randn(6, 2, 2)
    with torch.no_grad():
        res = scan(cell, x, backend="reference")
        assert cell.rule.weight_term(res.state).abs().max() > 0
        fresh_traces = cell.rule.init_traces(2)
        a = scan(cell, x[:1], res.state, backend="reference").y
        b = scan(cell, x[:1], res.state.replace(**fresh_traces), backend="reference").y
    assert not torch.allclose(a, b)


@pytest.mark.parametrize(
    "rule, kwargs",
    [("metanet", {}), ("l2l", {}), ("blur", {}), ("blur", dict(modulation_source="td_error"))],
)
def test_usable_from_a_plastic_policy(rule, kwargs):
    """PlasticPPO trains and predicts with policy_kwargs=dict(rule=...)."""
    env = gym.make("CartPole-v1")
    pk = dict(rule=rule, hidden_size=4, rule_kwargs=TINY[rule], **kwargs)
    model = PlasticPPO("MlpPlasticPolicy", env, n_steps=16, batch_size=16, n_epochs=1, policy_kwargs=pk, seed=0)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(16)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters()))
    obs, _ = env.reset(seed=0)
    action, state = model.predict(obs, state=None, episode_start=[True])
    assert env.action_space.contains(int(action))
    assert state is not None


@pytest.mark.parametrize("rule", RULES)
def test_bad_sizes_raise_clearly(rule):
    with pytest.raises(ValueError, match="n_pre and n_post must be positive"):
        make_rule(rule, 0, 3)
    with pytest.raises(TypeError, match=f"rule {rule!r} got an unexpected argument"):
        make_rule(rule, 3, 3, not_an_argument=1)
