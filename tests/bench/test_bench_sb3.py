"""The SB3 benchmark's plumbing (the measurement itself is `neuromod-rl bench sb3`, not a test)."""

from __future__ import annotations

import json

import pytest

from neuromod_rl.bench.sb3 import bench_sb3, main


def test_bench_rejects_unknown_algorithms():
    with pytest.raises(ValueError, match=r"unknown algorithms \['sac'\]; valid choices: \['ppo_mlp'"):
        bench_sb3(algorithms=("sac",), json_path=None)


@pytest.mark.slow
def test_bench_main_writes_json_with_measured_ratios(tmp_path, capsys):
    path = tmp_path / "sb3.json"
    assert main(["--timesteps", "512", "--n-envs", "2", "--only", "ppo_mlp", "plastic_ppo", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    ppo, plastic = report["results"]["ppo_mlp"], report["results"]["plastic_ppo"]
    for r in (ppo, plastic):
        assert r["env_steps"] == 512 and r["steps_per_s"] > 0 and r["peak_rss_mb"] > 0
    assert report["ratios"]["plastic_over_ppo"] == pytest.approx(plastic["steps_per_s"] / ppo["steps_per_s"])
    assert plastic["buffer_state_bytes"] > 0 and ppo["buffer_state_bytes"] == 0
    assert "plastic_over_ppo" in capsys.readouterr().out
