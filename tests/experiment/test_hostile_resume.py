"""A run directory edited or damaged by hand never trains, evaluates or reports the wrong thing:
``train --resume`` checks ``config.yaml`` against what the checkpoint was trained with, and resume,
``eval`` and ``report`` check every file they will read (monitor CSVs, ``metrics.json``, eval
summaries, the ES search state) and the free space they will write into, all before anything is
written or trained. A refusal exits with code 2 naming the key or the file, and leaves the run as it was."""

from __future__ import annotations

import pickle
import resource
import shutil
import signal
from collections import namedtuple
from pathlib import Path

import pytest
import torch
import yaml
from support import only_run

from neuromod_rl.cli import main

RESUME = ["train", "--resume", "RUN", "--set", "n_timesteps=100", "--no-progress"]
EVAL = ["eval", "RUN", "--episodes", "2", "--no-progress"]
REPORT = ["report", "RUN", "--episodes", "2", "--no-progress", "--no-video"]
GARBAGE = b"\x00\xff\xfe\x89PNG garbage\n\x01\x02"


def _copy(run: Path, tmp_path: Path, name: str = "run") -> Path:
    dest = tmp_path / name
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns(".lock"))
    return dest


def _files(run: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}


def _main(command: list[str], run: Path) -> int:
    return main([str(run) if a == "RUN" else a for a in command])


def _refused(command: list[str], run: Path, capsys) -> str:
    """Run ``command`` on ``run``: it must exit 2 without a traceback and change no file. Its message."""
    before = _files(run)
    assert _main(command, run) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert _files(run) == before
    return err


def _edit_config(run: Path, key: str, value) -> None:
    data = yaml.safe_load((run / "config.yaml").read_text())
    node = data
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    (run / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _forget_fingerprints(run: Path) -> None:
    """Make ``run`` look like one checkpointed before fingerprints existed."""
    for path in (run / "checkpoints").glob("*.state.pkl"):
        state = pickle.loads(path.read_bytes())
        state.pop("config", None)
        path.write_bytes(pickle.dumps(state))


# ------------------------------------------------------------------------------ config vs checkpoint
@pytest.mark.parametrize(
    "key, value, expected",
    [("algo", "plastic_a2c", "`algo` is 'plastic_a2c' in config.yaml, but the checkpoint was trained with "
                             "'plastic_ppo'"),
     ("policy_kwargs.hidden_size", 16, "`policy_kwargs.hidden_size` is 16 in config.yaml, but the checkpoint was "
                                       "trained with 8"),
     ("env_kwargs.n_pulls", 20, "`env_kwargs.n_pulls` is 20"),
     ("hyperparameters.learning_rate", "lin_5e-3", "`hyperparameters.learning_rate` is 'lin_5e-3'")],
)  # fmt: skip
def test_resume_refuses_a_config_that_no_longer_matches_the_checkpoint(tmp_path, trained_run, key, value,
                                                                       expected, capsys):
    run = _copy(trained_run, tmp_path)
    _edit_config(run, key, value)
    err = _refused(RESUME, run, capsys)
    assert expected in err and "n_timesteps" in err  # and what may change


@pytest.mark.parametrize("key, value", [("eval.episodes", 3), ("name", "renamed"), ("checkpoint_freq", 40)])
def test_resume_accepts_edits_that_do_not_change_the_model_or_its_training(tmp_path, trained_run, key, value):
    run = _copy(trained_run, tmp_path)
    _edit_config(run, key, value)
    assert _main(RESUME, run) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["n_timesteps"] == 100


@pytest.mark.parametrize("threads, code", [(1, 0), (2, 2)])
def test_a_config_key_newer_than_the_checkpoint_counts_only_when_set(tmp_path, trained_run, threads, code, capsys):
    run = _copy(trained_run, tmp_path)
    for path in (run / "checkpoints").glob("*.state.pkl"):  # as if `torch_threads` came after the checkpoint
        state = pickle.loads(path.read_bytes())
        del state["config"]["values"]["torch_threads"]
        state["config"]["fields"].remove("torch_threads")
        path.write_bytes(pickle.dumps(state))
    _edit_config(run, "torch_threads", threads)  # 1 is its default
    assert _main(RESUME, run) == code
    assert code == 0 or "`torch_threads` is 2 in config.yaml, but the checkpoint was trained without it" in (
        capsys.readouterr().err)


def test_a_run_checkpointed_before_fingerprints_still_resumes(tmp_path, trained_run):
    run = _copy(trained_run, tmp_path)
    _forget_fingerprints(run)
    with pytest.warns(RuntimeWarning, match="no record of its config"):
        assert _main(RESUME, run) == 0


@pytest.mark.parametrize(
    "key, value, expected",
    [("algo", "plastic_a2c", "`algo`"), ("policy_kwargs.hidden_size", 16, "`policy_kwargs.hidden_size` is 16"),
     ("hyperparameters.n_epochs", 3, "`hyperparameters.n_epochs` is 3")],
)  # fmt: skip
def test_a_run_checkpointed_before_fingerprints_is_checked_against_its_model(tmp_path, trained_run, key, value,
                                                                            expected, capsys):
    run = _copy(trained_run, tmp_path)
    _forget_fingerprints(run)
    _edit_config(run, key, value)
    with pytest.warns(RuntimeWarning, match="no record of its config"):
        assert expected in _refused(RESUME, run, capsys)


# ------------------------------------------------------------------------------ damaged run files
Damage = namedtuple("Damage", "path content expected")
MONITOR = "monitor/seg000.monitor.csv"
DAMAGES = {
    "garbage_monitor": Damage(MONITOR, GARBAGE, "seg000.monitor.csv is not a training monitor file"),
    "monitor_without_columns": Damage(MONITOR, b'#{"t_start": 1.0, "env_id": "None"}\nfoo,bar\n1,2\n',
                                      "seg000.monitor.csv is not a training monitor file"),
    "monitor_with_a_bad_row": Damage(MONITOR, b'#{"t_start": 1.0}\nr,l,t\n4.0,10,2.1\nfour,10,2.2\n',
                                     "line 4"),
    "metrics_holding_a_list": Damage("metrics.json", b"[1, 2]", "metrics.json holds a list"),
    "metrics_not_json": Damage("metrics.json", GARBAGE, "metrics.json is not valid JSON"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_resume_refuses_damaged_run_files_before_writing_or_training(tmp_path, trained_run, damage, capsys):
    run = _copy(trained_run, tmp_path)
    path, content, expected = DAMAGES[damage]
    (run / path).write_bytes(content)
    assert expected in _refused(RESUME, run, capsys)


def test_resume_sets_aside_whatever_was_logged_after_the_checkpoint_even_garbage(tmp_path, trained_run):
    run = _copy(trained_run, tmp_path)
    (run / "monitor" / "seg001.monitor.csv").write_bytes(GARBAGE)  # a segment the checkpoint never saw
    with (run / MONITOR).open("ab") as f:
        f.write(GARBAGE)  # rows after the checkpoint's are run again: set aside, not read
    assert _main(RESUME, run) == 0
    discarded = sorted((run / "monitor").glob("*.discarded"))
    assert b"".join(p.read_bytes() for p in discarded).count(GARBAGE) == 2


@pytest.mark.parametrize("damage", ["metrics_holding_a_list", "metrics_not_json"])
def test_eval_refuses_damaged_run_files_before_its_rollout(tmp_path, trained_run, damage, capsys):
    run = _copy(trained_run, tmp_path)
    path, content, expected = DAMAGES[damage]
    (run / path).write_bytes(content)
    assert expected in _refused(EVAL, run, capsys)


@pytest.mark.parametrize(
    "path, content, expected",
    [*(DAMAGES[d] for d in ("garbage_monitor", "monitor_without_columns", "metrics_holding_a_list")),
     Damage("tb/progress-000.csv", GARBAGE, "progress-000.csv is not a training log"),
     Damage("eval/test.json", b'["not", "a", "summary"]', "test.json holds a list")],
)  # fmt: skip
def test_report_refuses_damaged_run_files_before_writing_anything(tmp_path, trained_run, path, content,
                                                                 expected, capsys):
    run = _copy(trained_run, tmp_path)
    for split in ("train", "test"):  # evaluated already, so that the report goes straight to its plots
        assert _main([*EVAL, "--tasks", split], run) == 0
    (run / path).write_bytes(content)
    assert expected in _refused(REPORT, run, capsys)


# ------------------------------------------------------------------------------ ES search state
def test_resume_refuses_a_damaged_es_search_state_before_writing(tmp_path, capsys):
    from test_es_workflow import TINY_ES

    from neuromod_rl.agents import ESTrainer

    cfg = tmp_path / "es.yaml"
    cfg.write_text(yaml.safe_dump({**TINY_ES, "n_timesteps": 256}, sort_keys=False))  # one generation
    assert main(["train", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]) == 0
    run = only_run(tmp_path / "runs")
    (ckpt,) = (run / "checkpoints").glob("ckpt_*.zip")
    model = ESTrainer.load(ckpt)
    model.search_state = torch.frombuffer(bytearray(b"not a pickle"), dtype=torch.uint8)
    model.save(ckpt)
    err = _refused(["train", "--resume", "RUN", "--set", "n_timesteps=512", "--no-progress"], run, capsys)
    assert f"checkpoint {ckpt} cannot be loaded" in err and "search state" in err


# ------------------------------------------------------------------------------ full disk
def test_resume_on_a_still_full_disk_exits_2_before_training(tmp_path, trained_run, monkeypatch, capsys):
    run = _copy(trained_run, tmp_path)
    usage = shutil.disk_usage(run)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))
    err = _refused(RESUME, run, capsys)
    assert "free" in err and str(run / "checkpoints") in err


@pytest.mark.parametrize("command", [RESUME, EVAL])
def test_a_write_limit_stops_resume_and_eval_before_they_run(tmp_path, trained_run, command, capsys):
    # a soft RLIMIT_FSIZE fails every write past 16 kB (EFBIG), as a full quota or disk does: before, the
    # resume rewrote config.yaml and trained a whole segment before its first checkpoint failed
    run = _copy(trained_run, tmp_path)
    previous_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, previous_limit[1]))
    try:
        err = _refused(command, run, capsys)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, previous_limit)
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert "cannot write" in err and "File too large" in err
