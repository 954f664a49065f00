"""``neuromod-rl reproduce cue --scale gpu``: the cue task's three variants on the batched path for a
wall-clock budget each, at a tiny CPU size (a fraction of a second per variant, 4 envs, 8 hidden units)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from neuromod_rl.agents.on_policy.device_rollouts import device_rollout_env
from neuromod_rl.envs.batched import BatchedVecEnv, make_batched
from neuromod_rl.studies import command as reproduce
from neuromod_rl.studies.neuromodulation import cue_gpu
from neuromod_rl.studies.neuromodulation import frame as bp

torch.set_num_threads(1)
TINY = cue_gpu.GpuScale(time_budget_s=0.5, n_envs_cpu=4, minibatches=2, n_epochs=1, hidden=8, eval_episodes=4)


@pytest.fixture(scope="module")
def gpu_scale(tmp_path_factory):
    """The gpu scale run once through the command line at the tiny size (on the CPU: no GPU in the tests)."""
    out = tmp_path_factory.mktemp("cue-gpu")
    args = ["cue", "--scale", "gpu", "--out", str(out), "--runs-dir", str(out / "runs")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cue_gpu, "DEFAULT", TINY)
        mp.setattr(cue_gpu, "pick_device", lambda: "cpu")
        code = reproduce.main(args)
    return out, args, code


def test_report_has_the_three_variants_steps_reached_and_projection(gpu_scale):
    out, _, code = gpu_scale
    assert code == 0
    report = (out / "cue.md").read_text()
    runs = json.loads((out / "cue.gpu.runs.json").read_text())["runs"]
    for name in cue_gpu.VARIANTS:
        result = runs[f"{name}/seed0"]["result"]
        curve = result["curve"]
        # whole rollouts of 4 envs x 120 steps, one curve point each, steps growing
        assert [p["steps"] for p in curve] == [480 * (k + 1) for k in range(len(curve))]
        assert result["steps"] == curve[-1]["steps"] and result["n_envs"] == 4
        assert all(0.0 <= p["train_accuracy"] <= 1.0 for p in curve)
        row = re.search(rf"^\| {re.escape(name)} \| 0 \| 8 \| \d+ \| (\d+) \|", report, flags=re.M)
        assert row and int(row.group(1)) == result["steps"], report
    assert "Device: CPU" in report and "4 batched envs" in report
    projection = re.search(r"paper's budget of 7.2e\+08 steps per network x 3 seeds would take: (.+?); ([\d.]+) h "
                           r"for the three networks", report)  # fmt: skip
    assert projection and all(n in projection.group(1) for n in cue_gpu.VARIANTS), report
    assert "the paper's ordering begins to show" in report
    assert (out / "cue_gpu_learning.png").read_bytes()[:4] == b"\x89PNG"


def test_a_rerun_reuses_the_runs(gpu_scale, capsys):
    out, args, _ = gpu_scale
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cue_gpu, "DEFAULT", TINY)
        mp.setattr(cue_gpu, "pick_device", lambda: "cpu")
        assert reproduce.main(args) == 0
    assert "3 of 3 runs already done" in capsys.readouterr().err


def test_budget_in_steps_is_refused(tmp_path, capsys):
    assert reproduce.main(["cue", "--scale", "gpu", "--budget", "1000", "--out", str(tmp_path)]) == 2
    assert "--scale gpu trains each variant for a wall-clock time" in capsys.readouterr().err


def test_training_stops_at_the_budget():
    """With nothing left of the budget after the first rollout, training stops there."""
    agent = bp.variants("cue", "neuromod_rl/CueReward-v0", {}, TINY.frame_scale(2, 120), False, -3)[bp.SIMPLE]
    cfg = agent.resolved(0)
    model = cue_gpu.build_model(cfg, BatchedVecEnv(make_batched(cfg.env, 2, "cpu")))
    assert device_rollout_env(model, model.get_env()) is not None  # the path the scale measures
    curve = cue_gpu.train_for(model, 0.0, "cpu")
    assert len(curve) == 1 and curve[0]["steps"] == model.num_timesteps == 240
