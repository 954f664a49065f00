"""The ES benchmark's plumbing (the measurement itself is `neuromod-rl bench es`, not a test)."""

from __future__ import annotations

import json

import pytest

from neuromod_rl.bench import BENCHES
from neuromod_rl.bench.es import main


def test_bench_es_writes_json_with_measured_ratios(tmp_path, capsys):
    path = tmp_path / "es.json"
    assert main(["--tasks", "bandit", "--popsize", "4", "--episodes", "1", "--repeats", "1", "--no-ray",
                 "--json", str(path)]) == 0  # fmt: skip
    report = json.loads(path.read_text())
    batching = report["results"]["bandit"]["batching"]
    for mode in ("batched", "per_member"):
        assert batching[mode]["evaluations_per_s"] > 0 and batching[mode]["env_steps_per_s"] > 0
    assert batching["ratio_batched_over_per_member"] == pytest.approx(
        batching["batched"]["evaluations_per_s"] / batching["per_member"]["evaluations_per_s"])
    assert "ratio batched/per-member" in capsys.readouterr().out
    assert BENCHES["es"] == "es"


def test_bench_es_rejects_bad_sizes(capsys):
    with pytest.raises(SystemExit):
        main(["--popsize", "0"])
    assert "must be positive" in capsys.readouterr().err
