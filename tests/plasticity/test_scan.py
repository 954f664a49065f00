"""The sequence engine's contract: resets, shapes, errors, NaN guards (reference backend = the spec)."""

import importlib.util

import pytest
import torch

from neuromod_rl.plasticity import PlasticLSTMCell, PlasticMLPCell, PlasticRNNCell, available_backends, scan

CELLS = {
    "rnn-neuromod": lambda: PlasticRNNCell(4, 6, rule="neuromod"),
    "rnn-retroactive-fanout": lambda: PlasticRNNCell(4, 6, rule="retroactive", modulation="fanout"),
    "rnn-oja": lambda: PlasticRNNCell(4, 6, rule="oja"),
    "lstm-neuromod-fanout": lambda: PlasticLSTMCell(4, 6, modulation="fanout", alpha_shape="neuron", clip=2.0),
    "mlp-abcd": lambda: PlasticMLPCell(4, 6, rule="abcd"),
    "mlp-abcd-modulated": lambda: PlasticMLPCell(4, 6, rule="abcd", modulation="scalar"),
}


@pytest.mark.parametrize("name", CELLS)
def test_episode_start_mid_sequence_equals_a_fresh_start(name):
    """After a reset at step t, outputs equal those of a new sequence started at t."""
    torch.manual_seed(0)
    cell = CELLS[name]()
    x = torch.randn(10, 3, 4)
    starts = torch.zeros(10, 3, dtype=torch.bool)
    starts[6, 1] = True
    y, _, _ = scan(cell, x, episode_starts=starts, backend="reference")
    fresh, _, _ = scan(cell, x[6:, 1:2], backend="reference")
    torch.testing.assert_close(y[6:, 1:2], fresh)
    untouched, _, _ = scan(cell, x[:, :1], backend="reference")
    torch.testing.assert_close(y[:, :1], untouched)


@pytest.mark.parametrize("name", CELLS)
def test_scan_equals_stepping_by_hand(name):
    """scan over T steps equals T single-step scans chaining the state (what a rollout does)."""
    torch.manual_seed(1)
    cell = CELLS[name]()
    x = torch.randn(5, 2, 4)
    y, final, _ = scan(cell, x)
    state = None
    for t in range(5):
        yt, state, _ = scan(cell, x[t : t + 1], state)
        torch.testing.assert_close(yt[0], y[t])
    for k in final:
        torch.testing.assert_close(state[k], final[k])


def test_plastic_trace_changes_the_output():
    """A neuromodulated cell with large alpha must respond differently once its trace has grown."""
    torch.manual_seed(0)
    cell = PlasticRNNCell(4, 8, rule="neuromod", alpha_shape="scalar")
    with torch.no_grad():
        cell.rule.alpha.fill_(5.0)
    x = torch.randn(20, 2, 4)
    _, state, m = scan(cell, x)
    assert state.F.abs().max() > 0.1 and m.shape == (20, 2)
    plastic, _, _ = scan(cell, x[:1], state)
    fresh, _, _ = scan(cell, x[:1])
    assert not torch.allclose(plastic, fresh)


def test_external_modulation_drives_the_trace():
    cell = PlasticRNNCell(3, 5, rule="neuromod", modulation_source="external")
    x = torch.randn(6, 2, 3)
    _, zero, _ = scan(cell, x, modulation=torch.zeros(6, 2))
    assert zero.F.abs().max() == 0
    _, driven, m = scan(cell, x, modulation=torch.ones(6, 2))
    assert driven.F.abs().max() > 0 and torch.equal(m, torch.ones(6, 2))


def test_bad_inputs_name_the_argument():
    cell = PlasticRNNCell(4, 6)
    with pytest.raises(ValueError, match=r"x must have shape \[T, B, input_size\]"):
        scan(cell, torch.randn(3, 4))
    with pytest.raises(ValueError, match="x has 5 features per step but the cell expects input_size=4"):
        scan(cell, torch.randn(3, 2, 5))
    with pytest.raises(ValueError, match=r"episode_starts must have shape \[T, B\]=\[3, 2\]"):
        scan(cell, torch.randn(3, 2, 4), episode_starts=torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="x is torch.float64 on cpu but the cell is torch.float32"):
        scan(cell, torch.randn(3, 2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"state.F must have shape \[2, 6, 6\]"):
        scan(cell, torch.randn(3, 2, 4), cell.initial_state(2).replace(F=torch.zeros(2, 5, 5)))
    with pytest.raises(ValueError, match="modulation was given but the cell computes its own"):
        scan(cell, torch.randn(3, 2, 4), modulation=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="modulation_source='external'; pass modulation"):
        scan(PlasticRNNCell(4, 6, modulation_source="external"), torch.randn(3, 2, 4))
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        scan(cell, torch.randn(3, 2, 4), backend="cuda")
    with pytest.raises(ValueError, match="backend 'fused' does not support PlasticLSTMCell with rule MetaNetRule"):
        scan(PlasticLSTMCell(4, 6, rule="metanet"), torch.randn(3, 2, 4), backend="fused")


def test_cell_configuration_errors():
    with pytest.raises(ValueError, match="rule 'neuromod' is neuromodulated: choose modulation"):
        PlasticRNNCell(4, 6, rule="neuromod", modulation=None)
    with pytest.raises(ValueError, match="rule 'hebbian' takes no modulation"):
        PlasticRNNCell(4, 6, rule="hebbian", modulation="scalar")
    with pytest.raises(ValueError, match="modulation_source='reward' is not one of"):
        PlasticRNNCell(4, 6, modulation_source="reward")


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_nan_in_trace_raises_naming_rule_and_step(backend):
    cell = PlasticRNNCell(4, 6, rule="neuromod")
    x = torch.randn(8, 2, 4)
    with pytest.raises(FloatingPointError, match="input x holds NaN/inf at step 3"):
        x_bad = x.clone()
        x_bad[3, 1, 0] = float("nan")
        scan(cell, x_bad, backend=backend)
    state = cell.initial_state(2).replace(F=torch.full((2, 6, 6), float("inf")))
    with pytest.raises(FloatingPointError, match=r"the state passed in holds NaN/inf \(field 'F'\)"):
        scan(cell, x, state, backend=backend)
    runaway = PlasticRNNCell(4, 6, rule="clipped", clip=1e38, eta=1e37)  # finite, but alpha * F overflows
    with torch.no_grad():
        runaway.rule.alpha.fill_(1e30)
    with pytest.raises(FloatingPointError, match=r"rule 'clipped'\) at step \d+, with finite inputs, weights"):
        scan(runaway, x, backend=backend)
    with torch.no_grad():
        cell.w[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"the cell's weight 'w' holds NaN/inf \(training diverged"):
        scan(cell, x, backend=backend)


def test_backends_are_listed_per_cell():
    triton = ["triton"] if importlib.util.find_spec("triton") else []  # registered only where it imports
    assert available_backends(PlasticRNNCell(2, 3)) == ["reference", "fused", *triton]
    assert available_backends(PlasticLSTMCell(2, 3)) == ["reference", "fused", *triton]
    assert available_backends(PlasticLSTMCell(2, 3, rule="metanet")) == ["reference"]
