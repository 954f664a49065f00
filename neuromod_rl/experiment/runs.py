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

    .lock                 who is writing the run now (see :class:`RunLock`)

Every file that a later step reads back is written atomically (temp file in the same directory,
fsync, ``os.replace``), so an interrupt or a crash never leaves a half-written checkpoint.
One process writes a run at a time (:class:`RunLock`). Checkpoints are pickles (SB3's format) and
trusted like code: ``neuromod-rl export`` writes the weights as safetensors or ONNX for sharing.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from neuromod_rl.experiment.errors import UserError

try:
    import fcntl
except ImportError:  # no flock (Windows): RunLock excludes nothing there
    fcntl = None

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
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.filename is None:  # a failed write or flush: name the file
            raise OSError(err.errno, err.strerror, str(path)) from err
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
        if root.exists() and not root.is_dir():
            raise UserError(f"--runs-dir {str(root)!r} is a file, not a folder; pass a folder (default: runs/)")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(
                f"cannot create the runs folder {str(root)!r} ({err.strerror}); pass another --runs-dir"
            ) from None
        for k in range(1000):
            path = root / (f"{name}-{stamp}" + (f"-{k}" if k else ""))
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                continue
            except OSError as err:
                raise UserError(
                    f"cannot create a run directory in {str(root)!r} ({err.strerror}); check that the folder is "
                    "writable and not full, or pass another --runs-dir"
                ) from None
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


_CKPT = re.compile(r"ckpt_(\d{12})\.zip")


def _pointer(run: Run) -> tuple[Path, Path, int] | str | None:
    """What ``latest.json`` points at, or why it cannot be used (a string), or ``None`` if absent."""
    path = run.checkpoints / "latest.json"
    if not path.exists():
        return None
    try:
        pointer = json.loads(path.read_text())
        model, state, step = pointer["model"], pointer["state"], pointer["step"]
        match = _CKPT.fullmatch(model)
        if not (match and isinstance(step, int) and int(match.group(1)) == step and state == model[:-4] + ".state.pkl"):
            return f"{path} does not name a checkpoint of this run"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        return f"{path} is damaged ({type(err).__name__})"
    model_path, state_path = run.checkpoints / model, run.checkpoints / state
    if not (model_path.is_file() and state_path.is_file()):
        return f"{path} names {model}, which is missing"
    return model_path, state_path, step


def latest_checkpoint(run: Run) -> tuple[Path, Path, int] | None:
    """``(model.zip, state.pkl, step)`` of the checkpoint ``latest.json`` names; when that file is damaged
    or names a missing checkpoint, the newest complete one (with a warning saying so); else ``None``."""
    pointer = _pointer(run)
    if isinstance(pointer, tuple):
        return pointer
    complete = [
        (m, s, int(match.group(1)))
        for m in run.checkpoints.glob("ckpt_*.zip")
        if (match := _CKPT.fullmatch(m.name)) and (s := m.with_name(m.name[:-4] + ".state.pkl")).is_file()
    ]
    newest = max(complete, key=lambda c: c[2]) if complete else None
    if pointer is not None:
        fallback = f"using the newest complete checkpoint, {newest[0].name}" if newest else "no checkpoint is complete"
        warnings.warn(f"{pointer}; {fallback}", RuntimeWarning, stacklevel=2)
    return newest


# ------------------------------------------------------------------------------ one writer per run
class RunLock:
    """An exclusive lock on a run directory, so that one process writes it at a time (train, resume,
    eval, report). A second process gets a :class:`UserError` naming the holder.

    The lock is ``flock`` on ``RUN/.lock``: the kernel releases it when the holder exits, however it
    exits (crash, ``kill -9``), so a stale ``.lock`` file never blocks anyone; the file only records
    who held it last. Re-entrant within one process (``train --report`` evaluates inside its lock).
    """

    _held: dict[Path, list[int]] = {}  # resolved path -> [fd, depth]; shared by the process

    def __init__(self, run: Run, command: str) -> None:
        self.path = run.path / ".lock"
        self.command = command
        self.what = f"run {run.path}"

    @classmethod
    def on_file(cls, path: str | Path, what: str, command: str) -> RunLock:
        """The same lock on the file ``path`` (a study's progress: ``what`` names it in the error)."""
        lock = cls.__new__(cls)
        lock.path, lock.what, lock.command = Path(path), what, command
        return lock

    def __enter__(self) -> RunLock:
        key = self.path.resolve()
        if key in RunLock._held:
            RunLock._held[key][1] += 1
            return self
        if fcntl is None:  # no flock (Windows): no exclusion, as before
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise UserError(
                f"cannot write to {self.what} ({err.strerror}); it must be writable (check the permissions and free "
                "space of the folder)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = ""
            for _ in range(20):  # the holder may have the lock but not yet its name written: wait a moment
                holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
                if holder:
                    break
                time.sleep(0.05)
            os.close(fd)
            holder = holder or "holder unknown"
            raise UserError(
                f"{self.what} is in use by another neuromod-rl process ({holder}). Wait for it to finish or stop it "
                "(a stopped or crashed process releases it by itself), then run this command again."
            ) from None
        since = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        info = f"pid {os.getpid()} on {socket.gethostname()}, `{self.command}`, since {since}"
        try:  # who holds it, for the message another process prints; best effort (a full disk may refuse)
            os.ftruncate(fd, 0)
            os.pwrite(fd, info.encode(), 0)
        except OSError:
            pass
        RunLock._held[key] = [fd, 1]
        return self

    def __exit__(self, *exc) -> None:
        key = self.path.resolve()
        entry = RunLock._held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del RunLock._held[key]
            os.close(entry[0])  # releases the flock


# ------------------------------------------------------------------------------ Ctrl-C, SIGTERM
class InterruptGuard:
    """Turn the first Ctrl-C (SIGINT) or SIGTERM (what ``kill``, schedulers and containers send) into a
    request that training polls, so it can stop at a safe point, save a checkpoint and exit cleanly;
    a second signal aborts at once. ``signum`` records which signal asked.

    Only the main thread can own signal handlers; elsewhere the guard is inert.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested, self.signum = True, signum
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(
            f"\n{name}: stopping training and saving a checkpoint (press Ctrl-C again to abort without saving)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
