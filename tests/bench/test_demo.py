"""The core demo (`neuromod-rl demo`) and the core benchmark (`neuromod-rl bench core`)."""

import json

import torch

from neuromod_rl.bench import core as bench_core
from neuromod_rl.bench.demo import make_episodes, train


def test_demo_episode_layout():
    x, target, mask = make_episodes(batch=5, pairs=3, bits=4, generator=torch.Generator().manual_seed(0))
    assert x.shape == (12, 5, 5) and target.shape == (12, 5, 4) and mask.shape == (12, 5)
    assert mask.sum(0).tolist() == [3.0] * 5  # one scored step per query
    for b in range(5):
        study = {tuple(x[2 * k, b, :4].tolist()): x[2 * k + 1, b, :4] for k in range(3)}
        for t in range(7, 12, 2):  # a blank query step: its target is the value of the key just shown
            assert mask[t, b] == 1 and x[t - 1, b, 4] == 1
            torch.testing.assert_close(target[t, b], study[tuple(x[t - 1, b, :4].tolist())])


def test_plasticity_is_what_solves_the_demo():
    """Fresh pairs every episode: only fast weights can hold them, so the frozen network stays near chance."""
    plastic = train(True, iterations=150, progress=False)["accuracy"]
    frozen = train(False, iterations=150, progress=False)["accuracy"]
    assert plastic > 0.7 and plastic > frozen + 0.15, (plastic, frozen)


def test_bench_core_writes_ratios(tmp_path):
    out = tmp_path / "core.json"
    assert bench_core.main(["--quick", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert {(r["core"], r["backend"]) for r in result["rows"]} == {
        (core, backend) for core in ("rnn", "lstm") for backend in ("reference", "fused")
    }
    assert {q["core"] for q in result["ratios"]} == {"rnn", "lstm"}
    for q in result["ratios"]:
        assert q["speedup_fused_over_reference"] > 0 and q["N"] == 32
