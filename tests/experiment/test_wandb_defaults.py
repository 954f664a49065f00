"""W&B as users expect it: the seeds of one config in one group (the config's name), job type ``train``,
and the trained policy logged as a ``model`` artifact (the exported safetensors). Read back from the
offline run's own log file."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import warnings
from pathlib import Path

from support import only_run, write_config

from neuromod_rl.cli import main
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.wandb_logging import WandbLogger

BLOCK = 32768  # the offline log is a LevelDB-style log: 32 KiB blocks of records with 7-byte headers
FULL, LAST = 1, 4


def wandb_records(run_dir: Path) -> list:
    """Every protobuf record of the run's offline W&B log (``wandb/offline-run-*/run-*.wandb``)."""
    from wandb.proto import wandb_internal_pb2

    (log,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    data = log.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending, records = 7, b"", []
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        length, kind = struct.unpack_from("<HB", data, pos + 4)
        pending += data[pos + 7: pos + 7 + length]
        pos += 7 + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _of(records: list, kind: str) -> list:
    return [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]


def _train(tmp_path: Path, monkeypatch, *extra: str) -> Path:
    # the artifact's staged copy goes under the test's folder, not the user's ~/.local/share/wandb
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    config = write_config(tmp_path / "tiny.yaml")
    runs = tmp_path / "runs"
    assert main(["train", str(config), "--runs-dir", str(runs), "--no-progress", "--wandb", *extra]) == 0
    import wandb

    wandb.teardown()  # closes the offline run's files (what the CLI's exit does)
    return only_run(runs)


def test_runs_are_grouped_by_config_name_and_log_the_policy_as_a_model_artifact(tmp_path, monkeypatch):
    run = _train(tmp_path, monkeypatch)
    records = wandb_records(run)
    (info,) = _of(records, "run")
    assert (info.run_group, info.job_type) == ("tiny", "train")
    saved = json.loads((run / "wandb_run.json").read_text())
    assert (saved["group"], saved["job_type"], saved["id"]) == ("tiny", "train", info.run_id)

    (artifact,) = _of(records, "artifact")
    assert (artifact.type, artifact.name) == ("model", f"model-{info.run_id}")
    assert json.loads(artifact.metadata) == {"format": "safetensors", "num_timesteps": 80}
    (entry,) = artifact.manifest.contents
    exported = (run / "model.safetensors").read_bytes()  # what `neuromod-rl export` writes
    assert entry.path == "model.safetensors" and entry.size == len(exported)
    assert entry.digest == base64.b64encode(hashlib.md5(exported).digest()).decode()


def test_a_group_on_the_command_line_replaces_the_config_name(tmp_path, monkeypatch):
    run = _train(tmp_path, monkeypatch, "--wandb-group", "ablation")
    (info,) = _of(wandb_records(run), "run")
    assert (info.run_group, info.job_type) == ("ablation", "train")


def test_a_failed_export_warns_once_and_leaves_training_done(tmp_path):
    import wandb

    run = wandb.init(project="nrl-test", dir=str(tmp_path), settings=wandb.Settings(console="off", silent=True))
    logger = WandbLogger(run)

    def export() -> Path:
        raise UserError("the export failed")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert logger.log_model(export, {}) is None
        logger.finish()
    assert [str(w.message) for w in caught if "W&B model artifact failed" in str(w.message)]
    assert not logger.active


def test_no_export_runs_when_wandb_is_off():
    calls = []
    assert WandbLogger(None).log_model(lambda: calls.append(1) or Path("x"), {}) is None
    assert calls == []
