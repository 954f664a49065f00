"""W&B: an offline run directory with the training metrics is created; offline without credentials;
a wandb failure warns once and never stops anything."""

from __future__ import annotations

import json
import warnings

from support import only_run

from neuromod_rl.cli import main
from neuromod_rl.experiment.wandb_logging import WandbLogger, choose_mode


def test_offline_run_directory_holds_the_metrics(tmp_path, tiny_config):
    runs = tmp_path / "runs"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["train", str(tiny_config), "--runs-dir", str(runs), "--no-progress", "--wandb",
                     "--wandb-project", "nrl-test", "--wandb-group", "g1", "--wandb-tags", "a", "b"]) == 0
    assert not [str(w.message) for w in caught if "W&B" in str(w.message)]
    import wandb

    # what the CLI's exit does: stop the wandb service process, which closes the run's files (it
    # writes them asynchronously, so reading them in this same process needs this first)
    wandb.teardown()
    run = only_run(runs)
    info = json.loads((run / "wandb_run.json").read_text())
    assert info["mode"] == "offline" and info["group"] == "g1" and info["tags"] == ["a", "b"]
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    logs = list(offline[0].glob("run-*.wandb"))
    assert logs and logs[0].stat().st_size > 0
    data = logs[0].read_bytes()
    # SB3's logger output reached W&B through our KVWriter: the training metrics are in the run log
    for key in (b"train/value_loss", b"rollout/ep_rew_mean", b"time/fps"):
        assert key in data, (key, data[:200])


def test_mode_is_offline_without_credentials_and_respects_wandb_mode(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    assert choose_mode() == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert choose_mode() == "disabled"


def test_a_wandb_failure_warns_once_and_disables_logging(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    run = wandb.init(project="nrl-test", dir=str(tmp_path), settings=wandb.Settings(console="off", silent=True))
    logger = WandbLogger(run)
    run.finish()  # logging to a finished run is an error in wandb
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger.log({"x": 1.0}, step=1)
        logger.log({"x": 2.0}, step=2)
        logger.finish()
    assert len([w for w in caught if "W&B" in str(w.message)]) == 1
    assert not logger.active
