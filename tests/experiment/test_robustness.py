"""Runs stay trustworthy under bad input and hostile conditions: NaN/inf never becomes the latest
checkpoint and its source is named; one process writes a run at a time; bad sizes, devices, paths, a
full or read-only disk and damaged files exit with code 2 and a message, never a traceback; a failed
start leaves no run directory and a failed resume changes nothing; SIGTERM saves like Ctrl-C."""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from support import SignalAt, copy_run, only_run, stderr_without_traceback, write_config

from neuromod_rl.agents import PlasticPPO
from neuromod_rl.cli import main
from neuromod_rl.experiment import train as tr
from neuromod_rl.experiment.algos import algo_class
from neuromod_rl.experiment.config import load_config


class BrokenAt(gym.Env):
    """Two arms, episodes of ``length`` steps; at step ``at`` of every episode the reward is ``inf``
    (``bad="reward"``) or the observation holds a NaN (``bad="observation"``), as a buggy env would."""

    def __init__(self, bad: str = "reward", at: int = 5, length: int = 10):
        self.observation_space = spaces.Box(-1, 1, (3,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.bad, self.at, self.length = bad, at, length

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        obs, reward = np.full(3, 0.1 * int(action), np.float32), float(action)
        if self.t == self.at:
            if self.bad == "reward":
                reward = float("inf")
            else:
                obs[1] = np.nan
        return obs, reward, self.t >= self.length, False, {}


gym.register("neuromod_rl_test/BrokenAt-v0", entry_point=BrokenAt)




def _latest_step(run: Path) -> int:
    return json.loads((run / "checkpoints" / "latest.json").read_text())["step"]


# ------------------------------------------------------------------------------ 5: NaN/inf
@pytest.mark.parametrize("algo", ["plastic_a2c", "plastic_ppo"])
def test_inf_reward_names_the_env_and_keeps_the_last_good_checkpoint(tmp_path, algo, capsys):
    # 2 envs x 10 steps per rollout, a checkpoint at global step 20; episode step 15 (in the second
    # rollout) pays inf: before, the next update wrote NaN weights and they became the latest checkpoint
    cfg = write_config(tmp_path / "c.yaml", env="neuromod_rl_test/BrokenAt-v0",
                       env_kwargs={"bad": "reward", "at": 15, "length": 20}, algo=algo,
                       hyperparameters={"n_steps": 10, "batch_size": 20} if algo == "plastic_ppo" else {"n_steps": 10},
                       n_timesteps=200, checkpoint_freq=20)
    code = main(["train", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    err = stderr_without_traceback(capsys)
    assert code == 2
    assert "non-finite reward (inf) in env 0" in err
    run = only_run(tmp_path / "runs")
    assert _latest_step(run) == 20 and "The last good checkpoint, step 20" in err
    latest = algo_class(algo).load(run / "checkpoints" / "ckpt_000000000020.zip")
    assert all(bool(torch.isfinite(v).all()) for v in latest.policy.state_dict().values())
    assert main(["export", str(run)]) == 0  # the last good checkpoint exports


def test_nan_observation_is_named_as_the_source(tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", env="neuromod_rl_test/BrokenAt-v0",
                       env_kwargs={"bad": "observation", "at": 3})
    assert main(["train", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]) == 2
    err = stderr_without_traceback(capsys)
    assert "observation holding NaN/inf in env 0" in err and "Categorical" not in err


class PoisonAfter(BaseCallback):
    """Turns one weight to NaN at the end of the rollout that reaches ``step``: the update that follows
    spreads it to every weight, as a diverged update does."""

    def __init__(self, step: int):
        super().__init__()
        self.step = step

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.num_timesteps == self.step:
            with torch.no_grad():
                self.model.policy.value_net.weight[0, 0] = float("nan")


def test_non_finite_weights_never_become_the_latest_checkpoint(tmp_path):
    cfg = load_config(write_config(tmp_path / "c.yaml", algo="plastic_a2c", hyperparameters={"n_steps": 10}))
    opts = tr.TrainOptions(runs_dir=tmp_path / "runs", progress=False, callbacks=[PoisonAfter(40)])
    with pytest.raises(tr.UserError, match=r"weight '.*' holds NaN/inf after an update.*not checkpointed.*step 20"):
        tr.train(cfg, opts)
    run = only_run(tmp_path / "runs")
    assert _latest_step(run) == 20
    assert not (run / "model.zip").exists()


def test_export_refuses_non_finite_weights(tmp_path, trained_run, capsys):
    run = copy_run(trained_run, tmp_path)
    model = PlasticPPO.load(run / "model.zip")
    with torch.no_grad():
        next(model.policy.core.parameters())[0] = float("nan")
    model.save(run / "model.zip")
    assert main(["export", str(run)]) == 2
    assert "holds NaN/inf (training diverged), so it is not exported" in stderr_without_traceback(capsys)
    assert not (run / "model.safetensors").exists()


# ------------------------------------------------------------------------------ 6: one writer
def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_releases(tmp_path, trained_run, capsys):
    run = copy_run(trained_run, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from neuromod_rl.experiment.runs import Run, RunLock
            RunLock(Run({str(run)!r}), "train").__enter__()
            print("held", flush=True)
            time.sleep(120)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        for command in (["train", "--resume", str(run), "--set", "n_timesteps=100"], ["eval", str(run)]):
            assert main([*command, "--no-progress"]) == 2
            err = stderr_without_traceback(capsys)
            assert f"is in use by another neuromod-rl process (pid {holder.pid} on" in err and "`train`" in err
    finally:
        holder.kill()  # kill -9: no clean-up runs in the holder
        holder.wait()
    assert (run / ".lock").exists()  # the stale file stays, and blocks no one
    assert main(["eval", str(run), "--episodes", "2", "--no-progress"]) == 0


# ------------------------------------------------------------------------------ 8: exit code 2
@pytest.mark.parametrize(
    "override, expected",
    [
        ("policy_kwargs.hidden_size=2000000", "needs at least"),
        ("device=banana", "key `device` has value 'banana'"),
        ("policy_kwargs.net_arch=[-5]", "key `policy_kwargs.net_arch` has value [-5]"),
        ("n_envs=true", "key `n_envs` has value True"),
        ('policy_kwargs.shared_core="no"', "shared_core must be True or False, got 'no'"),
        ("hyperparameters.batch_size=1", "cannot build plastic_ppo"),  # refused by SB3 while building the model
    ],
)
def test_bad_values_exit_2_and_leave_no_run_directory(tmp_path, tiny_config, override, expected, capsys):
    runs = tmp_path / "runs"
    assert main(["train", str(tiny_config), "--runs-dir", str(runs), "--set", override, "--no-progress"]) == 2
    assert expected in stderr_without_traceback(capsys)
    assert not runs.exists() or not any(runs.iterdir())  # no orphan run directory


def test_bad_paths_and_sizes_exit_2(tmp_path, tiny_config, trained_run, capsys):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    assert main(["train", str(tiny_config), "--runs-dir", str(not_a_dir)]) == 2
    assert "is a file, not a folder" in stderr_without_traceback(capsys)
    assert main(["eval", str(trained_run), "--episodes", "1000000000"]) == 2
    assert "from 1 to 100000" in stderr_without_traceback(capsys)
    assert main(["export", str(trained_run), "--out", str(tmp_path)]) == 2
    assert "is a directory; pass a file path" in stderr_without_traceback(capsys)


def test_a_full_disk_exits_2_naming_the_file(tmp_path, tiny_config, capsys):
    # a soft RLIMIT_FSIZE makes every write past 16 kB fail (EFBIG), as a full disk fails (ENOSPC); the
    # checkpoints are the first files that large
    previous_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, previous_limit[1]))
    try:
        code = main(["train", str(tiny_config), "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, previous_limit)
        signal.signal(signal.SIGXFSZ, previous_handler)
    err = stderr_without_traceback(capsys)
    assert code == 2 and "cannot write" in err and "ckpt_" in err and "File too large" in err
    run = only_run(tmp_path / "runs")
    assert not list(run.glob("checkpoints/*.tmp"))  # no half-written file left behind


@pytest.fixture
def immutable(tmp_path):
    """``chattr +i`` a folder (read-only even for root), undone afterwards; skipped where unsupported."""
    made = []

    def make(path: Path) -> Path:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)],
                                                            capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here")
        made.append(path)
        return path

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_run_directory_exits_2(tmp_path, trained_run, immutable, capsys):
    run = copy_run(trained_run, tmp_path)
    (run / ".lock").touch()
    immutable(run)
    assert main(["eval", str(run), "--episodes", "2", "--no-progress"]) == 2
    assert "cannot write" in stderr_without_traceback(capsys)


def test_damaged_latest_json_falls_back_to_the_newest_intact_checkpoint(tmp_path, trained_run, capsys):
    run = copy_run(trained_run, tmp_path)
    (run / "model.zip").unlink()  # so that eval and resume must go through the checkpoints
    for damage in ("{not json", json.dumps({"model": "../config.yaml", "state": "x", "step": 80}), "[]"):
        (run / "checkpoints" / "latest.json").write_text(damage)
        with pytest.warns(RuntimeWarning, match=r"latest\.json (is damaged|does not name).*newest complete "
                                                r"checkpoint, ckpt_000000000080\.zip"):
            assert main(["eval", str(run), "--episodes", "2", "--no-progress"]) == 0
    with pytest.warns(RuntimeWarning, match=r"using the newest complete checkpoint, ckpt_000000000080\.zip"):
        assert main(["train", "--resume", str(run), "--set", "n_timesteps=100", "--no-progress"]) == 0
    assert _latest_step(run) == 100  # and latest.json is whole again
    stderr_without_traceback(capsys)


def test_failed_resume_changes_nothing_on_disk(tmp_path, trained_run, capsys):
    run = copy_run(trained_run, tmp_path)
    for step in (80,):
        for suffix in (".zip", ".state.pkl"):
            (run / "checkpoints" / f"ckpt_{step:012d}{suffix}").unlink()
    (run / "checkpoints" / "latest.json").unlink()
    (run / "checkpoints" / "ckpt_000000000060.zip").write_bytes(b"damaged")  # the newest left: cannot load
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["train", "--resume", str(run), "--set", "n_timesteps=100", "--no-progress"]) == 2
    assert "cannot be loaded" in stderr_without_traceback(capsys)
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before  # monitor CSVs not trimmed, no .discarded files, config untouched


# ------------------------------------------------------------------------------ SIGTERM
def test_sigterm_saves_a_checkpoint_like_ctrl_c(tmp_path, capsys):
    cfg = load_config(write_config(tmp_path / "c.yaml", checkpoint_freq=0))
    handler = signal.getsignal(signal.SIGTERM)  # SIG_DFL, or whatever a library set up (ray.init does)
    sigterm = SignalAt(30, signal.SIGTERM)
    result = tr.train(cfg, tr.TrainOptions(runs_dir=tmp_path / "runs", progress=False, callbacks=[sigterm]))
    assert not result.finished and result.stopped_by == signal.SIGTERM
    assert _latest_step(result.run.path) == 40  # the next rollout start
    assert "SIGTERM: stopping training and saving a checkpoint" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is handler  # the handler is given back
    assert main(["train", "--resume", str(result.run.path), "--no-progress"]) == 0
