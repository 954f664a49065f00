"""Episode videos for every task that renders rgb_array frames, not only MuJoCo ones; MuJoCo without an
off-screen backend is skipped with one message."""

from __future__ import annotations

import imageio.v2 as imageio
from support import write_config

from neuromod_rl.experiment import train as tr
from neuromod_rl.experiment.config import load_config
from neuromod_rl.experiment.evaluate import load_model, load_run
from neuromod_rl.experiment.runs import Run
from neuromod_rl.experiment.video import MIN_HEIGHT, record_video


def test_a_bandit_run_gets_a_video_of_what_the_agent_sees(trained_run):
    run, cfg = load_run(trained_run)
    path = record_video(run, cfg, load_model(run, cfg))
    assert path == run.path / "videos" / "episode.gif"
    frames = imageio.mimread(path)
    assert len(frames) == 5 and frames[0].shape[0] >= MIN_HEIGHT  # 10 pulls, every 2nd step; enlarged


def test_a_classic_control_no_vel_run_gets_a_video(tmp_path):
    cfg = load_config(write_config(tmp_path / "c.yaml", name="cartpole", env="neuromod_rl/CartPoleNoVel-v1",
                                   env_kwargs={}, n_timesteps=40, eval={"episodes": 2}))
    run = tr.train(cfg, tr.TrainOptions(runs_dir=tmp_path / "runs", progress=False)).run
    frames = imageio.mimread(record_video(run, cfg, load_model(run, cfg)))
    assert frames and frames[0].shape[:2] == (400, 600)  # Gymnasium's CartPole drawing


def test_mujoco_without_an_off_screen_backend_is_skipped_with_one_message(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    cfg = load_config(write_config(tmp_path / "m.yaml", name="cheetah", env="neuromod_rl/HalfCheetahVel-v0",
                                   env_kwargs={}))
    assert record_video(Run(tmp_path), cfg, model=None) is None
    assert "set MUJOCO_GL=egl" in capsys.readouterr().err
