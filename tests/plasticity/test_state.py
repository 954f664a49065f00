"""PlasticState: the container every rule, cell, buffer and checkpoint relies on."""

import copy
import pickle

import pytest
import torch

from neuromod_rl.plasticity import PlasticState


def _state(B=4, N=3):
    return PlasticState(h=torch.randn(B, N), F=torch.randn(B, N, N))


def test_reset_takes_initial_rows_only_where_mask():
    s = _state()
    init = PlasticState(h=torch.zeros(1, 3), F=torch.zeros(1, 3, 3))
    mask = torch.tensor([True, False, True, False])
    r = s.reset(mask, init)
    assert torch.equal(r.h[0], torch.zeros(3)) and torch.equal(r.F[2], torch.zeros(3, 3))
    assert torch.equal(r.h[1], s.h[1]) and torch.equal(r.F[3], s.F[3])


def test_reset_rejects_wrong_mask_shape():
    with pytest.raises(ValueError, match=r"reset mask must have shape \[B\]"):
        _state().reset(torch.ones(3, dtype=torch.bool), _state(1))


def test_flat_unflat_round_trip():
    s = _state()
    flat = s.flat()
    assert flat.shape == (4, 3 + 9)
    back = s.unflat(flat)
    assert all(torch.equal(back[k], s[k]) for k in s)


def test_detach_cuts_graph_and_state_is_immutable():
    h = torch.randn(2, 3, requires_grad=True)
    s = PlasticState(h=h * 2, F=torch.zeros(2, 3, 3))
    assert s.h.requires_grad and not s.detach().h.requires_grad
    with pytest.raises(AttributeError, match="immutable"):
        s.h = torch.zeros(2, 3)


def test_mismatched_batch_sizes_are_rejected():
    with pytest.raises(ValueError, match="batch size"):
        PlasticState(h=torch.zeros(2, 3), F=torch.zeros(3, 3, 3))


def test_index_and_cat():
    s = _state()
    parts = [s.index(slice(0, 2)), s.index(slice(2, 4))]
    joined = PlasticState.cat(parts)
    assert all(torch.equal(joined[k], s[k]) for k in s)


def test_check_finite_names_the_field():
    s = _state().replace(F=torch.full((4, 3, 3), float("nan")))
    with pytest.raises(FloatingPointError, match="'F' at rollout step 7"):
        s.check_finite("rollout step 7")


def test_pickle_and_deepcopy_round_trip():
    """Runs checkpoint states (pickle) and SB3 deep-copies them."""
    s = _state()
    for back in (pickle.loads(pickle.dumps(s)), copy.deepcopy(s)):
        assert isinstance(back, PlasticState) and list(back) == list(s)
        assert all(torch.equal(back[k], s[k]) for k in s)
