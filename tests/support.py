"""What several test folders share: a tiny config (PlasticPPO + MlpPlasticPolicy on a 10-pull bandit,
80 steps) and helpers to write it, find a run, interrupt training, run a study twice and run Python in a
child process that cannot reach the network."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml
from stable_baselines3.common.callbacks import BaseCallback

from neuromod_rl.studies.command import main as reproduce

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


def write_config(path: Path, **changes) -> Path:
    data = {**TINY, **changes}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def only_run(runs_dir: Path) -> Path:
    runs = [p for p in runs_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


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
    assert reproduce(args) == 0
    runs = json.loads(store.read_text())["runs"]
    before = store.stat().st_mtime_ns
    assert reproduce(args) == 0
    assert store.stat().st_mtime_ns == before
    return runs


def stderr_without_traceback(capsys) -> str:
    """What a command printed to stderr, which must be a message, never a traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def copy_run(run: Path, tmp_path: Path) -> Path:
    """A copy of ``run`` (without its lock file) that a test may damage."""
    dest = tmp_path / run.name
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns(".lock"))
    return dest


def run_offline(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python ARGS`` in a child process, from ``cwd``, with W&B and the Hugging Face Hub in offline mode and
    one torch thread (the tests share two cores)."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1",
           "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}  # fmt: skip
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
