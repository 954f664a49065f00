"""``algo: es`` through the same workflow as PPO: train (run directory, checkpoints every generation,
monitor, logs), --resume (the search continues bit-identically), eval, report, export."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from support import only_run

from neuromod_rl.cli import main
from neuromod_rl.experiment.runs import Run, latest_checkpoint

TINY_ES = {
    "name": "tiny_es",
    "env": "neuromod_rl/DelayedCue-v0",
    "env_kwargs": {"delay": 2},
    "algo": "es",
    "policy": "MlpPlasticPolicy",
    "policy_kwargs": {"rule": "neuromod", "hidden_size": 8},
    "n_envs": 1,
    "n_timesteps": 1024,  # 4 generations of 16 members x 4 episodes x 4 steps
    "seed": 0,
    "hyperparameters": {"popsize": 16, "lr": 0.2, "episodes_per_member": 4, "chunk_size": 8, "num_actors": 0},
    "checkpoint_freq": 1,
    "eval": {"episodes": 8, "n_train_tasks": 2, "n_test_tasks": 2, "deterministic": True},
}


def write(path: Path, **changes) -> Path:
    path.write_text(yaml.safe_dump({**TINY_ES, **changes}, sort_keys=False))
    return path


def search_of(model_zip: Path) -> dict:
    """What the next generation depends on: the centre and noise scale, the search's random stream,
    the generation counter (and the policy weights, byte for byte)."""
    import pickle

    from neuromod_rl.agents import ESTrainer

    model = ESTrainer.load(model_zip)
    searcher = pickle.loads(model.search_state.numpy().tobytes())
    with zipfile.ZipFile(model_zip) as z:
        policy = z.read("policy.pth")
    return {"policy": policy, "center": searcher.status["center"].tolist(), "sigma": searcher.status["stdev"],
            "rng": searcher.problem._generator.get_state().tolist(), "generation": model.generation,
            "steps": model.num_timesteps}  # fmt: skip


def test_es_run_trains_evaluates_reports_and_exports(tmp_path):
    cfg = write(tmp_path / "es.yaml")
    assert main(["train", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]) == 0
    run = Run(only_run(tmp_path / "runs"))
    assert run.model.is_file()
    checkpoints = sorted(run.checkpoints.glob("ckpt_*.zip"))
    assert len(checkpoints) == 3  # one per generation after the first, the newest kept
    rows = (run.monitor / "seg000.monitor.csv").read_text().splitlines()
    assert len(rows) == 2 + 4 * 16  # header lines + one row per member per generation
    progress = (run.tb / "progress-000.csv").read_text()
    assert "es/fitness_mean" in progress and "es/evaluations_per_second" in progress
    assert main(["eval", str(run.path), "--no-progress"]) == 0
    assert main(["report", str(run.path), "--no-progress", "--no-video"]) == 0
    assert (run.plots / "learning_curve.png").is_file() and (run.plots / "fast_weights.png").is_file()
    assert main(["export", str(run.path)]) == 0

    from neuromod_rl.experiment.export import load_exported_model

    exported = load_exported_model(run.path / "model.safetensors")
    from neuromod_rl.agents import ESTrainer

    trained = ESTrainer.load(run.model)
    for k, v in trained.policy.state_dict().items():
        assert torch.equal(v, exported.policy.state_dict()[k]), k


def test_resume_continues_the_search_bit_identically(tmp_path):
    straight = write(tmp_path / "straight.yaml")
    assert main(["train", str(straight), "--runs-dir", str(tmp_path / "a"), "--no-progress"]) == 0
    half = write(tmp_path / "half.yaml", n_timesteps=512)
    assert main(["train", str(half), "--runs-dir", str(tmp_path / "b"), "--no-progress"]) == 0
    run_b = only_run(tmp_path / "b")
    assert main(["train", "--resume", str(run_b), "--set", "n_timesteps=1024", "--no-progress"]) == 0
    a, b = Run(only_run(tmp_path / "a")), Run(run_b)
    assert search_of(a.model) == search_of(b.model)
    assert latest_checkpoint(a)[2] == latest_checkpoint(b)[2] == 1024


def test_every_generation_checkpoint_is_a_complete_search_state(tmp_path):
    cfg = write(tmp_path / "es.yaml")
    assert main(["train", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]) == 0
    run = Run(only_run(tmp_path / "runs"))
    from neuromod_rl.agents import ESTrainer

    model_zip, _, step = latest_checkpoint(run)
    model = ESTrainer.load(io.BytesIO(model_zip.read_bytes()))
    assert model.num_timesteps == step and model.generation == 4 and model.search_state.numel() > 0


@pytest.mark.parametrize(
    "override, message",
    [("hyperparameters.ray_address=my-cluster", "ray_address='my-cluster' is not valid"),
     ("hyperparameters.algorithm=adam", "algorithm='adam' is not valid"),
     ("hyperparameters.population=10", "not an argument of ESTrainer")],
)  # fmt: skip
def test_bad_es_settings_are_user_errors(tmp_path, capsys, override, message):
    cfg = write(tmp_path / "es.yaml")
    assert main(["train", str(cfg), "--set", override, "--runs-dir", str(tmp_path / "runs"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_an_unreachable_ray_cluster_is_a_user_error(tmp_path):
    """In a fresh interpreter (a Ray already running in this test session would be used as it is)."""
    import subprocess
    import sys

    cfg = write(tmp_path / "es.yaml")
    args = ["train", str(cfg), "--set", "hyperparameters.num_actors=1", "--set",
            "hyperparameters.ray_address=127.0.0.1:1", "--runs-dir", str(tmp_path / "runs"), "--no-progress"]
    proc = subprocess.run([sys.executable, "-m", "neuromod_rl.cli", *args], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "cannot join the Ray cluster at ray_address='127.0.0.1:1'" in proc.stderr
    assert "ray start --head" in proc.stderr and "Traceback" not in proc.stderr
