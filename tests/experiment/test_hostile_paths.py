"""Paths that others made never turn a write into a write elsewhere: a lock file, a file or a folder
inside a run directory or a study's output folder that is a symbolic link, a FIFO or a device is
refused (or replaced, never written through), and ``--out`` takes only a new path or an existing
regular file (``export``) or folder (``reproduce``, ``compare``). Each refusal exits with code 2 and
names the path, never a traceback. The victims are files of this test, never a system file."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import matplotlib
import pytest
from support import copy_run, stderr_without_traceback

from neuromod_rl.cli import main
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.plots.figures import new_figure
from neuromod_rl.experiment.plots.figures import save as save_plot
from neuromod_rl.experiment.runs import Run, RunLock, atomic_write_bytes
from neuromod_rl.studies import command as reproduce
from neuromod_rl.studies.scaffold.report import Report, save_figure

matplotlib.use("Agg")

SECRET = "the victim's own content\n"




@pytest.fixture
def victim(tmp_path) -> Path:
    path = tmp_path / "victim.txt"
    path.write_text(SECRET)
    return path


# ------------------------------------------------------------------------------ lock files
def test_run_lock_never_writes_through_a_symlink(tmp_path, trained_run, victim, capsys):
    run = copy_run(trained_run, tmp_path)
    (run / ".lock").symlink_to(victim)
    with pytest.raises(UserError, match="is a symbolic link"):
        RunLock(Run(run), "eval").__enter__()
    assert main(["eval", str(run), "--episodes", "2", "--no-progress"]) == 2
    assert ".lock" in stderr_without_traceback(capsys)
    assert victim.read_text() == SECRET


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_lock_path_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    path = tmp_path / ".study.smoke.lock"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    with pytest.raises(UserError, match="not a regular file") as err:
        RunLock.on_file(path, "study x", "reproduce").__enter__()
    assert str(path) in str(err.value)


def test_study_lock_never_writes_through_a_symlink(tmp_path, victim, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / ".gregor.smoke.lock").symlink_to(victim)
    assert reproduce.main(["gregor", "--scale", "smoke", "--out", str(out), "--runs-dir", str(tmp_path / "r")]) == 2
    assert ".gregor.smoke.lock" in stderr_without_traceback(capsys)
    assert victim.read_text() == SECRET


def test_a_regular_lock_file_is_taken_and_released_as_before(tmp_path):
    path = tmp_path / ".lock"
    path.write_text("pid 1 on elsewhere, `train`, since then")
    with RunLock.on_file(path, "study x", "reproduce"):
        assert "`reproduce`" in path.read_text()
    with RunLock.on_file(path, "study x", "again"):  # released: taken again at once
        pass


# ------------------------------------------------------------------------------ files in a run directory
def test_a_symlinked_folder_in_a_run_directory_is_refused(tmp_path, trained_run, capsys):
    run = copy_run(trained_run, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(run / "eval", ignore_errors=True)
    (run / "eval").symlink_to(elsewhere, target_is_directory=True)
    assert main(["eval", str(run), "--episodes", "2", "--no-progress"]) == 2
    err = stderr_without_traceback(capsys)
    assert "eval" in err and "symbolic link" in err
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("where", ["metrics.json", "monitor/seg009.monitor.csv", "tb/progress-009.csv"])
def test_a_run_directory_holding_a_link_or_fifo_is_refused_naming_it(tmp_path, trained_run, victim, where):
    run = copy_run(trained_run, tmp_path)
    path = run / where
    path.unlink(missing_ok=True)
    path.symlink_to(victim)
    with pytest.raises(UserError, match="symbolic link") as err:
        Run.open(run)
    assert str(path) in str(err.value)
    path.unlink()
    os.mkfifo(path)  # reading a FIFO would wait forever
    with pytest.raises(UserError, match="FIFO"):
        Run.open(run)


def test_wandb_links_inside_a_run_are_wandbs_own(tmp_path, trained_run):
    run = copy_run(trained_run, tmp_path)
    (run / "wandb" / "offline-run-1").mkdir(parents=True)
    (run / "wandb" / "latest-run").symlink_to(run / "wandb" / "offline-run-1")  # as wandb makes it
    assert Run.open(run).path == run


def test_atomic_writes_replace_a_symlink_and_never_write_through_it(tmp_path, victim):
    link = tmp_path / "metrics.json"
    link.symlink_to(victim)
    atomic_write_bytes(link, b"{}\n")
    assert not link.is_symlink() and link.read_bytes() == b"{}\n"
    assert victim.read_text() == SECRET


# ------------------------------------------------------------------------------ files in a study output folder
def test_study_reports_and_figures_replace_links_in_the_output_folder(tmp_path, victim):
    out = tmp_path / "results"
    out.mkdir()
    (out / "demo.md").symlink_to(victim)
    (out / "demo.png").symlink_to(victim)
    Report("demo", "Demo", "neuromod-rl reproduce demo", 0, "smoke", {}).write(out)
    fig, _ = new_figure()
    assert save_figure(fig, out, "demo.png") == "![demo.png](demo.png)"
    assert victim.read_text() == SECRET
    assert not (out / "demo.md").is_symlink() and (out / "demo.md").read_text().startswith("# Demo")
    assert not (out / "demo.png").is_symlink() and (out / "demo.png").read_bytes()[:4] == b"\x89PNG"


def test_run_plots_never_write_through_a_planted_temporary_name(tmp_path, victim):
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / ".curve.png.tmp.png").symlink_to(victim)  # the temporary name was predictable
    fig, _ = new_figure()
    save_plot(fig, plots / "curve.png")
    assert victim.read_text() == SECRET
    assert (plots / "curve.png").read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------------------------ --out
def _special(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"special-{kind}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        path.symlink_to(tmp_path / "victim.txt")
    else:  # a character device like /dev/null, made here so no system file is at stake
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except (PermissionError, OSError):
            pytest.skip("cannot make a device node here (needs root)")
    return path


@pytest.mark.parametrize("kind, named", [("fifo", "FIFO"), ("device", "character device"),
                                         ("symlink", "symbolic link")])
def test_export_out_refuses_anything_but_a_new_path_or_a_regular_file(tmp_path, trained_run, victim, kind, named,
                                                                      capsys):
    out = _special(tmp_path, kind)
    before = os.lstat(out)
    assert main(["export", str(trained_run), "--out", str(out)]) == 2
    err = stderr_without_traceback(capsys)
    assert str(out) in err and named in err
    after = os.lstat(out)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)  # not replaced
    assert victim.read_text() == SECRET


@pytest.mark.parametrize("out", ["/proc/self/model.safetensors", "/proc/self/status"])
def test_export_out_in_a_folder_that_takes_no_files_exits_2(trained_run, out, capsys):
    assert main(["export", str(trained_run), "--out", out]) == 2
    assert out in stderr_without_traceback(capsys)


def test_export_out_overwrites_an_existing_regular_file_as_before(tmp_path, trained_run):
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"old")
    assert main(["export", str(trained_run), "--out", str(out)]) == 0
    assert out.stat().st_size > 100 and not list(tmp_path.glob(".*"))  # no probe or temporary file left


@pytest.mark.parametrize("kind", ["file", "fifo", "proc", "proc-root"])
def test_reproduce_out_must_be_a_writable_folder(tmp_path, kind, capsys):
    out = {"file": tmp_path / "report.md", "fifo": tmp_path / "fifo", "proc": Path("/proc/self/results"),
           "proc-root": Path("/proc")}[kind]
    if kind == "file":
        out.write_text(SECRET)
    elif kind == "fifo":
        os.mkfifo(out)
    code = reproduce.main(["gregor", "--scale", "smoke", "--out", str(out), "--runs-dir", str(tmp_path / "r")])
    assert code == 2
    assert str(out) in stderr_without_traceback(capsys)
    if kind == "file":
        assert out.read_text() == SECRET


def test_compare_out_must_be_a_folder(tmp_path, trained_run, capsys):
    run = copy_run(trained_run, tmp_path)
    out = tmp_path / "not-a-folder"
    out.write_text(SECRET)
    assert main(["compare", str(run), "--out", str(out)]) == 2
    assert str(out) in stderr_without_traceback(capsys)
    assert out.read_text() == SECRET

