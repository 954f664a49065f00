"""The learned-rule studies' data: the digits split and Gregor's memorisation protocol."""

from __future__ import annotations

import pytest
import torch

from neuromod_rl.studies.scaffold.report import load_digits_split

torch.set_num_threads(1)




def test_digits_split_relabels_in_the_given_order():
    x, y = load_digits_split([7, 2])
    assert x.shape[1] == 65 and torch.all(x[:, -1] == 1) and 0 <= x.min() and x.max() <= 1
    assert set(y.tolist()) == {0, 1}
    # sklearn's digits hold 179 sevens and 177 twos
    assert int((y == 0).sum()) == 179 and int((y == 1).sum()) == 177


@pytest.mark.parametrize("hold", [1, 2])
def test_memorisation_protocol(hold):
    """Gregor task: K patterns, then K cues (first half of a stored pattern) in a permuted order;
    the answer (second half) is read at each cue's last step."""
    from neuromod_rl.studies.learned_rules.gregor import memorisation_batch

    k, bits = 3, 6
    x, target, read = memorisation_batch(5, k, bits, torch.Generator().manual_seed(0), hold=hold)
    assert x.shape == (2 * k * hold, 5, bits + 2) and target.shape == (k, 5, bits // 2)
    assert read.nonzero().flatten().tolist() == [k * hold + r * hold + hold - 1 for r in range(k)]
    stored = x[: k * hold : hold, :, :bits]  # [K, B, bits]
    cues = x[k * hold :: hold, :, : bits // 2]
    for b in range(5):
        for r in range(k):
            assert any(  # a stored pattern starts with the cue and ends with the target
                torch.equal(stored[i, b, : bits // 2], cues[r, b])
                and torch.equal(stored[i, b, bits // 2 :], target[r, b])
                for i in range(k)
            )
    assert torch.all(x[: k * hold, :, bits] == 1) and torch.all(x[k * hold :, :, bits + 1] == 1)
    with pytest.raises(ValueError, match="pattern_bits must be even"):
        memorisation_batch(1, 1, 5, torch.Generator())
