"""W&B through SB3: wandb.integration.sb3.WandbCallback with sync_tensorboard=True, offline."""

from __future__ import annotations

import pytest
from plastic_test_envs import cue_env
from stable_baselines3.common.env_util import make_vec_env

from neuromod_rl.agents import PlasticPPO

wandb = pytest.importorskip("wandb")


@pytest.mark.slow
def test_wandb_callback_offline_run_gets_the_plastic_diagnostics(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    from wandb.integration.sb3 import WandbCallback

    run = wandb.init(project="neuromod-rl-test", dir=str(tmp_path), sync_tensorboard=True, mode="offline")
    try:
        model = PlasticPPO(
            "MlpPlasticPolicy",
            make_vec_env(cue_env, 2, seed=0),
            n_steps=16,
            batch_size=16,
            n_epochs=1,
            tensorboard_log=str(tmp_path / "tb"),
            policy_kwargs=dict(hidden_size=4),
        )
        model.learn(64, callback=WandbCallback(verbose=0))
        run_dir = tmp_path / "wandb"
    finally:
        run.finish()
    offline = list(run_dir.glob("offline-run-*"))
    assert len(offline) == 1
    assert list(offline[0].glob("run-*.wandb")), "no offline run file"
    # the TensorBoard event file that W&B syncs holds the plastic diagnostics
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for key in ("plastic/mean_abs_F", "plastic/clip_fraction", "plastic/modulation_mean", "plastic/modulation_std"):
        assert key in tags
