"""`neuromod-rl bench pipeline`'s plumbing: its rows, ratios and JSON (the measurement itself is not a test)."""

from __future__ import annotations

import json

import pytest
import torch

from neuromod_rl.bench import pipeline
from neuromod_rl.cli import main as cli


def test_smoke_run_writes_one_row_per_path_and_the_ratio(tmp_path, capsys):
    path = tmp_path / "pipeline.json"
    assert cli(["bench", "pipeline", "--smoke", "--in-process", "--tasks", "cue", "--sizes", "paper",
                "--devices", "cpu", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["benchmark"] == "pipeline" and report["smoke"] is True
    sb3, batched = report["rows"]
    assert (sb3["path"], batched["path"]) == ("sb3", "batched")
    for row in (sb3, batched):
        assert (row["task"], row["size"], row["device"], row["n_envs"]) == ("cue", "paper", "cpu", 2)
        assert row["policy"] == "rnn neuromod 200"
        assert row["env_steps"] == 16 and row["steps_per_s"] > 0
        assert row["rollout_seconds"] > 0 and row["update_seconds"] > 0
    assert batched["device_resident"] is True and sb3["device_resident"] is False
    (ratio,) = report["ratios"]
    assert ratio["ratio"] == "batched_cpu_over_sb3_cpu"
    assert ratio["value"] == pytest.approx(batched["steps_per_s"] / sb3["steps_per_s"])
    assert "batched_cpu_over_sb3_cpu" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible: the row would run")
def test_cuda_rows_without_a_gpu_say_why_and_the_cpu_rows_still_run():
    report = pipeline.bench_pipeline(tasks=("maze",), sizes=("default",), paths=("batched",),
                                     devices=("cpu", "cuda"), smoke=True, in_process=True, json_path=None)
    cpu, cuda = report["rows"]
    assert cpu["steps_per_s"] > 0 and "error" not in cpu
    assert cuda["error"] == "not run: no CUDA device visible to torch" and "steps_per_s" not in cuda
    assert report["ratios"] == []


def test_ratios_compare_batched_with_sb3_on_the_same_device_and_the_gpu_with_the_cpu():
    def row(path, device, speed):
        return dict(task="cue", size="paper", n_envs=16, path=path, device=device, steps_per_s=speed)

    rows = [row("sb3", "cpu", 100.0), row("batched", "cpu", 150.0), row("sb3", "cuda", 50.0),
            row("batched", "cuda", 1000.0), {**row("batched", "cpu", 0.0), "n_envs": 4, "error": "failed"}]
    assert {(q["ratio"], q["value"]) for q in pipeline.ratios(rows)} == {
        ("batched_cpu_over_sb3_cpu", 1.5), ("batched_cuda_over_sb3_cuda", 20.0), ("batched_cuda_over_sb3_cpu", 10.0)
    }


def test_unknown_choices_are_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown tasks \['halfcheetah'\]; valid choices: \['cue', 'maze'\]"):
        pipeline.bench_pipeline(tasks=("halfcheetah",), json_path=None)
    with pytest.raises(ValueError, match="must be positive"):
        pipeline.bench_pipeline(steps=0, json_path=None)
