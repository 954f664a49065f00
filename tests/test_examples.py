"""The scripts in examples/ run as a user runs them (a fresh process, from another folder) at a tiny
budget, and print what they did."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(name: str, args: list[str], cwd: Path) -> str:
    """stdout of ``python examples/NAME ARGS`` run in ``cwd``, offline; fails with its output if it fails."""
    # not WANDB_SERVICE: a W&B run earlier in this test process leaves its service's address there, and a
    # script that connects to it writes no run file of its own
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_examples_readme_lists_every_script():
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == ["adaptation_wandb.py", "export_onnx.py", "sb3_drop_in.py"]
    readme = (EXAMPLES / "README.md").read_text()
    for script in scripts:
        assert f"({script})" in readme and f"python examples/{script} --steps" in readme
        doc = (EXAMPLES / script).read_text().partition('"""')[2].partition('"""')[0]
        assert "Usage::" in doc and "--steps" in doc, f"{script}: document what it shows and how to run it"


@pytest.mark.slow
def test_sb3_drop_in_trains_evaluates_predicts_and_names_tensorboard_runs(tmp_path):
    out = run_example("sb3_drop_in.py", ["--steps", "64", "--n-envs", "2", "--n-steps", "32", "--hidden-size", "8",
                                         "--eval-episodes", "2", "--baseline", "--tensorboard-log", "tb"], tmp_path)
    assert "PlasticPPO: trained 64 steps; evaluate_policy over 2 episodes:" in out
    assert "predict(obs, state, episode_start) loop over 2 episodes:" in out
    assert "the loaded model acts the same" in out
    assert "PPO MlpPolicy (no memory): trained 64 steps" in out
    assert "TensorBoard runs in tb: PPO_1, PlasticPPO_1" in out
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["PPO_1", "PlasticPPO_1"]


@pytest.mark.slow
def test_adaptation_wandb_trains_a_mujoco_run_and_logs_it_offline(tmp_path):
    out = run_example("adaptation_wandb.py", [
        "--steps", "200", "--eval-episodes", "2", "--runs-dir", "runs",
        "--set", "n_envs=1", "--set", "hyperparameters.batch_size=200", "--set", "hyperparameters.n_epochs=1",
        "--set", "policy_kwargs.hidden_size=8", "--set", "policy_kwargs.net_arch={pi: [16], vf: [16]}",
    ], tmp_path)  # fmt: skip
    assert "training plastic_ppo on neuromod_rl/CrippledHalfCheetah-v0" in out
    assert re.search(r"run directory .+: 200 steps", out)
    assert "held-out task (2 episodes): mean return" in out
    assert "before the change" in out and "at the end of the episode" in out
    assert re.search(r"W&B run \w+ \(offline\): \d+ evaluation numbers", out)
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "eval" / "test.json").is_file() and (run / "model.safetensors").is_file()
    (offline,) = (run / "wandb").glob("offline-run-*")
    assert list(offline.glob("run-*.wandb"))


@pytest.mark.slow
def test_export_onnx_graph_acts_as_predict(tmp_path):
    out = run_example("export_onnx.py", ["--steps", "64", "--n-envs", "2", "--n-steps", "32", "--hidden-size", "8",
                                         "--episodes", "2", "--out", "policy.onnx"], tmp_path)
    assert "trained PlasticPPO (lstm core, 8 neurons) on neuromod_rl/Recall-v0 for 64 steps" in out
    assert "exported policy.onnx" in out and "format neuromod-rl/policy-step-v1" in out
    match = re.search(r"onnxruntime vs predict over (\d+) steps .*: (\d+) different actions", out)
    assert match and int(match.group(1)) >= 2 * 52 and match.group(2) == "0", out
    assert (tmp_path / "policy.onnx").stat().st_size > 0
