"""Run directories, atomic files, checkpoints and Ctrl-C handling.

Layout of one run (``runs/<name>-<timestamp>/``)::

    config.yaml           the resolved config (after --set and --seed)
    checkpoints/          ckpt_<step>.zip (SB3 model) + ckpt_<step>.state.pkl (RNGs, envs) + latest.json
    model.zip             the final model (same format as a checkpoint's .zip)
    monitor/              SB3 monitor CSVs, one per training segment (a resume starts a new one)
    tb/                   TensorBoard event files and SB3's progress.csv
    eval/                 per-episode evaluation traces (<split>.npz) and summaries (<split>.json)
    plots/                PNGs made by ``report``
    metrics.json          train and eval metrics
    report.md             the report
    wandb/                the W&B run directory (offline or online)

Every file that a later step reads back is written atomically (temp file in the same directory,
fsync, ``os.replace``), so an interrupt or a crash never leaves a half-written checkpoint.
Checkpoints are pickles (SB3's format) and trusted like code: ``neuromod-rl export`` writes the
weights as safetensors for sharing.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from neuromod_rl.experiment.errors import UserError

KEEP_CHECKPOINTS = 3  # periodic checkpoints kept on disk (the newest ones)
_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: mkstemp makes 0600 files, run files get the usual 0666 & ~umask


# ------------------------------------------------------------------------------ atomic files
def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); harmless where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")


def read_json(path: str | Path, default: Any = None) -> Any:
    path = Path(path)
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(
            f"{path} is not valid JSON (the file is damaged). Delete it and re-run the command that writes it "
            "(`neuromod-rl eval` rewrites eval files, `neuromod-rl report` the report)."
        ) from None


def update_json(path: str | Path, section: str, value: Any) -> None:
    """Set one top-level section of a JSON file (e.g. ``metrics.json``), keeping the others."""
    data = read_json(path, {}) or {}
    data[section] = value
    write_json(path, data)


# ------------------------------------------------------------------------------ run directories
class Run:
    """Paths of one run directory (see the module docstring for the layout)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    checkpoints = property(lambda self: self.path / "checkpoints")
    model = property(lambda self: self.path / "model.zip")
    monitor = property(lambda self: self.path / "monitor")
    tb = property(lambda self: self.path / "tb")
    eval_dir = property(lambda self: self.path / "eval")
    plots = property(lambda self: self.path / "plots")
    metrics = property(lambda self: self.path / "metrics.json")
    report = property(lambda self: self.path / "report.md")
    wandb_id = property(lambda self: self.path / "wandb_run.json")

    @classmethod
    def create(cls, root: str | Path, name: str) -> Run:
        """A new, empty ``<root>/<name>-<timestamp>`` (a suffix keeps two runs in one second apart)."""
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        for k in range(1000):
            path = root / (f"{name}-{stamp}" + (f"-{k}" if k else ""))
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                continue
        raise UserError(f"could not create a new run directory under {root}; remove old runs or pass --runs-dir")

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """An existing run; a clear :class:`UserError` if ``path`` is not one."""
        run = cls(path)
        if not run.path.is_dir():
            raise UserError(
                f"run directory {str(path)!r} does not exist. Pass a directory made by `neuromod-rl train` "
                "(they are under runs/ by default)."
            )
        if not run.config.is_file():
            raise UserError(
                f"{str(path)!r} is not a neuromod-rl run directory (it has no config.yaml). Pass a directory "
                "made by `neuromod-rl train`, e.g. runs/default-20250101-120000."
            )
        return run

    def model_path(self) -> Path:
        """The final model, else the newest checkpoint (a run stopped early is still usable)."""
        if self.model.is_file():
            return self.model
        latest = latest_checkpoint(self)
        if latest is None:
            raise UserError(
                f"run {self.path} has no model yet (no model.zip and no checkpoint). Train it first, or resume it "
                f"with `neuromod-rl train --resume {self.path}`."
            )
        return latest[0]


# ------------------------------------------------------------------------------ checkpoints
def checkpoint_paths(run: Run, step: int) -> tuple[Path, Path]:
    return run.checkpoints / f"ckpt_{step:012d}.zip", run.checkpoints / f"ckpt_{step:012d}.state.pkl"


def write_checkpoint(run: Run, step: int, model_bytes: bytes, state_bytes: bytes) -> Path:
    """Write one checkpoint pair, then point ``latest.json`` at it (the pointer moves last, so a
    crash in between leaves the previous checkpoint in force). Old periodic checkpoints beyond
    :data:`KEEP_CHECKPOINTS` are removed, never the one ``latest.json`` names."""
    model_path, state_path = checkpoint_paths(run, step)
    atomic_write_bytes(state_path, state_bytes)
    atomic_write_bytes(model_path, model_bytes)
    write_json(run.checkpoints / "latest.json", {"step": step, "model": model_path.name, "state": state_path.name})
    steps = sorted(int(p.name[5:17]) for p in run.checkpoints.glob("ckpt_*.zip"))
    for old in steps[:-KEEP_CHECKPOINTS]:
        for p in checkpoint_paths(run, old):
            p.unlink(missing_ok=True)
    return model_path


def latest_checkpoint(run: Run) -> tuple[Path, Path, int] | None:
    """``(model.zip, state.pkl, step)`` of the newest complete checkpoint, or ``None``."""
    pointer = read_json(run.checkpoints / "latest.json")
    if pointer is not None:
        model_path, state_path = run.checkpoints / pointer["model"], run.checkpoints / pointer["state"]
        if model_path.is_file() and state_path.is_file():
            return model_path, state_path, int(pointer["step"])
    complete = [
        (m, s, int(m.name[5:17]))
        for m in run.checkpoints.glob("ckpt_*.zip")
        if (s := m.with_name(m.name[:-4] + ".state.pkl")).is_file()
    ]
    return max(complete, key=lambda c: c[2]) if complete else None


# ------------------------------------------------------------------------------ Ctrl-C
class InterruptGuard:
    """Turn the first Ctrl-C (SIGINT) into a request that training polls, so it can stop at a
    safe point, save a checkpoint and exit cleanly; a second Ctrl-C aborts at once.

    Only the main thread can own signal handlers; elsewhere the guard is inert.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\nCtrl-C: stopping training and saving a checkpoint (press Ctrl-C again to abort without saving)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
