"""Ctrl-C during training saves a checkpoint and stops; resuming gives the same run as never stopping."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback
from support import SignalAt, write_config

from neuromod_rl.agents import PlasticPPO
from neuromod_rl.cli import main
from neuromod_rl.experiment import train as tr
from neuromod_rl.experiment.algos import algo_class
from neuromod_rl.experiment.config import load_config
from neuromod_rl.experiment.curves import load_monitor
from neuromod_rl.experiment.runs import Run

ALGOS = {
    "plastic_ppo": {},
    # rollouts of 7 steps per env cut the 10-step episodes: the plastic state must survive the resume
    "plastic_ppo_mid_episode": {"n_timesteps": 84, "checkpoint_freq": 0,
                                "hyperparameters": {"n_steps": 7, "batch_size": 14, "n_epochs": 2, "gamma": 0.9}},
    # VecNormalize, checkpoint mid-episode: its running statistics and discounted returns travel along
    "plastic_ppo_normalize": {"normalize": True, "n_timesteps": 96, "checkpoint_freq": 0,
                              "hyperparameters": {"n_steps": 8, "batch_size": 16, "n_epochs": 2, "gamma": 0.9}},
    # RecurrentPPO rebuilds its LSTM state on load and uses orthogonal init (thread-count dependent)
    "recurrent_ppo": {"algo": "recurrent_ppo", "policy": "MlpLstmPolicy", "policy_kwargs": {"lstm_hidden_size": 8}},
    # off-policy: the replay buffer (with its stored plastic states) and the plastic state are resumed
    "plastic_sac": {"algo": "plastic_sac", "env": "neuromod_rl/PendulumNoVel-v1",
                    "env_kwargs": {"max_episode_steps": 12}, "policy_kwargs": {"hidden_size": 4, "net_arch": [8]},
                    "hyperparameters": {"sequence_length": 4, "burn_in": 1, "batch_size": 8, "learning_starts": 10,
                                        "buffer_size": 1000}},
}


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, algo, capsys):
    cfg = load_config(write_config(tmp_path / "c.yaml", **ALGOS[algo]))
    opts = lambda *cb: tr.TrainOptions(runs_dir=tmp_path / "runs", progress=False, callbacks=list(cb))  # noqa: E731
    full = tr.train(cfg, opts())
    cut = tr.train(cfg, opts(SignalAt(30)))  # mid-rollout: training runs to the next rollout start and stops
    assert not cut.finished and cut.num_timesteps < cfg.n_timesteps
    assert not (cut.run.path / "model.zip").exists()
    step = json.loads((cut.run.checkpoints / "latest.json").read_text())["step"]
    assert step == {"plastic_ppo_mid_episode": 42, "plastic_ppo_normalize": 32, "plastic_sac": 30}.get(algo, 40)
    assert "Resume with: neuromod-rl train --resume" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is given back

    assert main(["train", "--resume", str(cut.run.path), "--no-progress"]) == 0
    cls = algo_class(cfg.algo)
    a = cls.load(full.run.model).policy.state_dict()
    b = cls.load(cut.run.model).policy.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = load_monitor(full.run), load_monitor(Run(cut.run.path))
    assert np.array_equal(ma["r"].to_numpy(), mb["r"].to_numpy())


class CrashAt(BaseCallback):
    """Dies at ``step`` the way a killed process does: nothing more is written."""

    def __init__(self, step: int):
        super().__init__()
        self.step = step

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.step:
            raise RuntimeError("simulated crash")
        return True


def test_crashed_run_resumes_from_its_last_checkpoint(tmp_path, tiny_config):
    cfg = load_config(tiny_config)
    full = tr.train(cfg, tr.TrainOptions(runs_dir=tmp_path / "a", progress=False))
    try:
        tr.train(cfg, tr.TrainOptions(runs_dir=tmp_path / "b", progress=False, callbacks=[CrashAt(80)]))
    except RuntimeError:
        pass
    crashed = next((tmp_path / "b").iterdir())
    assert json.loads((crashed / "checkpoints" / "latest.json").read_text())["step"] == 60
    assert main(["train", "--resume", str(crashed), "--no-progress"]) == 0
    # episodes logged after the checkpoint were set aside (not deleted, not double counted)
    assert list((crashed / "monitor").glob("*.discarded"))
    ma, mb = load_monitor(full.run), load_monitor(Run(crashed))
    assert np.array_equal(ma["r"].to_numpy(), mb["r"].to_numpy())
    a = PlasticPPO.load(full.run.model).policy.state_dict()
    b = PlasticPPO.load(crashed / "model.zip").policy.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_finished_run_and_a_run_without_checkpoint(tmp_path, trained_run, capsys):
    assert main(["train", "--resume", str(trained_run), "--no-progress"]) == 2
    assert "already finished" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.yaml").write_text((trained_run / "config.yaml").read_text())
    assert main(["train", "--resume", str(tmp_path / "empty")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
