"""Shared fixtures: a tiny config (PlasticPPO + MlpPlasticPolicy on a 10-pull bandit, 80 steps) and
one trained run reused by the tests that only read a run, so the folder stays fast."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import yaml
from stable_baselines3.common.callbacks import BaseCallback

from neuromod_rl.experiment.cli import main

TINY = {
    "name": "tiny",
    "env": "neuromod_rl/TwoArmedBanditDependent-v0",
    "env_kwargs": {"n_pulls": 10},
    "algo": "plastic_ppo",
    "policy": "MlpPlasticPolicy",
    "policy_kwargs": {"rule": "neuromod", "hidden_size": 8},
    "n_envs": 2,
    "n_timesteps": 80,
    "seed": 0,
    "hyperparameters": {"n_steps": 10, "batch_size": 20, "n_epochs": 2, "learning_rate": "lin_1e-3", "gamma": 0.9},
    "checkpoint_freq": 20,
    "eval": {"episodes": 4, "n_train_tasks": 2, "n_test_tasks": 2},
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Never reach the network, whatever the caller's environment says."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def write_config(path: Path, **changes) -> Path:
    data = {**TINY, **changes}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    return write_config(tmp_path / "tiny.yaml")


def only_run(runs_dir: Path) -> Path:
    runs = [p for p in runs_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """One finished tiny run (module scope: trained once per test module)."""
    root = tmp_path_factory.mktemp("runs")
    cfg = write_config(root.parent / f"{root.name}-tiny.yaml")
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    try:
        assert main(["train", str(cfg), "--runs-dir", str(root), "--no-progress"]) == 0
    finally:
        mp.undo()
    return only_run(root)


class SignalAt(BaseCallback):
    """Sends this process a real signal once training passes ``step``: SIGINT (what Ctrl-C sends) by
    default, or SIGTERM (what a job scheduler sends)."""

    def __init__(self, step: int, signum: int = signal.SIGINT):
        super().__init__()
        self.step, self.signum, self.sent = step, signum, False

    def _on_step(self) -> bool:
        if not self.sent and self.num_timesteps >= self.step:
            self.sent = True
            signal.raise_signal(self.signum)
        return True


def run_study_twice(args: list[str], store: Path) -> dict:
    """``neuromod-rl reproduce ARGS``, then the same command again, which must find every run done and
    leave the progress file ``store`` untouched. Returns the runs stored by the first call."""
    from neuromod_rl.experiment import reproduce

    assert reproduce.main(args) == 0
    runs = json.loads(store.read_text())["runs"]
    before = store.stat().st_mtime_ns
    assert reproduce.main(args) == 0
    assert store.stat().st_mtime_ns == before
    return runs
