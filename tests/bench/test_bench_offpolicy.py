"""The off-policy benchmark's plumbing (the measurement itself is `neuromod-rl bench offpolicy`, not a test)."""

from __future__ import annotations

import json

import pytest

from neuromod_rl.bench.offpolicy import bench_offpolicy, main


def test_bench_rejects_unknown_algorithms():
    with pytest.raises(ValueError, match=r"unknown algorithms \['td3'\]; valid choices: \['sac_mlp'"):
        bench_offpolicy(algorithms=("td3",), json_path=None)


@pytest.mark.slow
def test_bench_main_writes_json_with_measured_ratios(tmp_path, capsys):
    path = tmp_path / "offpolicy.json"
    assert main(["--timesteps", "40", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    sac, plastic = report["results"]["sac_mlp"], report["results"]["plastic_sac"]
    for r in (sac, plastic):
        assert r["timed_env_steps"] == 40 and r["gradient_steps"] == 40 and r["steps_per_s"] > 0
    ratios = report["ratios"]
    assert ratios["plastic_over_sac_steps_per_s"] == pytest.approx(plastic["steps_per_s"] / sac["steps_per_s"])
    # one state per 32 steps: exactly 1/32 of a per-step store, measured from the buffer's own arrays
    assert ratios["stored_state_over_per_step_store"] == pytest.approx(1 / 32)
    assert sac["replay"]["state_bytes_per_step"] == 0 and plastic["replay"]["stored_states"] == 1040 // 32 + 1
    # the transitions themselves cost the same in both buffers
    assert plastic["replay"]["transition_bytes_per_step"] == sac["replay"]["transition_bytes_per_step"]
    assert "plastic_over_sac_steps_per_s" in capsys.readouterr().out
