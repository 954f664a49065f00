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
Nothing is written through a link: a run directory from elsewhere holding one (or a FIFO, a device)
is refused (:func:`check_run_tree`), and a path the user names for output must be new or a regular
file (:func:`check_output_file`) or a folder (:func:`check_output_folder`).
One process writes a run at a time (:class:`RunLock`). Checkpoints are pickles (SB3's format) and
trusted like code: ``neuromod-rl export`` writes the weights as safetensors or ONNX for sharing.
"""

from __future__ import annotations

import datetime as _dt
import errno
import io
import json
import os
import re
import signal
import socket
import stat
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
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix.

    A link at ``path`` is replaced, never written through. The temporary file is safe from a planted
    link too: ``mkstemp`` picks an unpredictable name and creates it ``O_EXCL | O_NOFOLLOW``.
    """
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
    """:func:`atomic_write_bytes` of ``text`` as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_figure(fig: Any, path: str | Path, **savefig_kwargs: Any) -> Path:
    """Save a matplotlib figure as ``path`` (the format named by its suffix, PNG without one) through
    :func:`atomic_write_bytes`: rendered in memory first, so no file of a predictable name is ever
    opened for writing."""
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".").lower() or "png", **savefig_kwargs)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def write_json(path: str | Path, obj: Any) -> None:
    """``obj`` as indented, key-sorted JSON, written atomically."""
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


# ------------------------------------------------------------------------------ paths made by others
_KINDS = ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def path_kind(path: str | Path) -> str | None:
    """What ``path`` itself is (a link is not followed), in words, e.g. ``"a file"``; ``None`` if absent."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(mode):
        return f"a symbolic link (to {os.readlink(path)!r})"
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def _check_creatable(folder: Path, what: str) -> None:
    """Create and delete one file in ``folder``: the only test that /proc, /sys, a read-only mount or a
    folder without write permission all fail the way the real write would, before any work is done."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".neuromod-rl.", suffix=".probe", dir=folder)
    except OSError as err:
        raise UserError(
            f"{what}: cannot create files in the folder {str(folder)!r} ({err.strerror}); pass a path where you can "
            "write files"
        ) from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: str | Path, what: str = "--out") -> Path:
    """``path`` if a file may be written there: a new path or an existing regular file (then replaced
    atomically), in an existing folder that takes new files; else a :class:`UserError` naming it.

    A writer of a file path the user gives calls this before any work. Replacing a device node or a FIFO with a
    file would break it without a word, and a symbolic link is refused rather than replaced (the
    user may have meant the file it points to), so the check is on the path itself, not its target.
    """
    path = Path(path)
    kind = path_kind(path)
    if kind == "a directory":
        raise UserError(f"{what} {str(path)!r} is a directory; pass a file path in it")
    if kind not in (None, "a file"):
        raise UserError(
            f"{what} {str(path)!r} is {kind}, not a regular file. neuromod-rl writes only to a new path or over a "
            "regular file, never through a link or over a device or pipe; pass another path."
        )
    if not path.parent.is_dir():
        raise UserError(f"{what} {str(path)!r}: the folder {str(path.parent)!r} does not exist; create it first")
    _check_creatable(path.parent, f"{what} {str(path)!r}")
    return path


def check_output_folder(path: str | Path, what: str = "--out", hint: str = "") -> Path:
    """``path`` as a folder to write files in, created if missing; a :class:`UserError` naming it when it
    is something else (a file, a FIFO, a device, a dangling link) or cannot be created or written.
    ``hint`` ends the message that asks for a folder, e.g. ``" (default: runs/)"``."""
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():  # a link to a folder the user names is that folder
        raise UserError(f"{what} {str(path)!r} is {path_kind(path)}, not a folder; pass a folder{hint}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create {what} {str(path)!r} ({err.strerror}); pass another {what}") from None
    _check_creatable(path, f"{what} {str(path)!r}")
    return path


def check_run_tree(root: str | Path) -> None:
    """Refuse a run directory holding anything but regular files and folders (``wandb/`` aside, whose
    links wandb makes itself): writes into the run would follow a link out of it, onto a file of the
    user's, and reading a FIFO or a device would hang. A run made elsewhere (a download, a clone) can
    hold either; one made here never does."""
    root = Path(root)
    for folder, dirs, files in os.walk(root):  # a link to a folder is listed, never entered
        for name in dirs + files:
            path = Path(folder) / name
            kind = path_kind(path)
            if kind not in (None, "a file", "a directory"):  # None: a temporary file renamed meanwhile
                raise UserError(
                    f"{path} is {kind}: a run directory holds only regular files and folders, and neuromod-rl never "
                    "writes through a link in one nor reads a pipe or device (a run made elsewhere could use one to "
                    "overwrite a file of yours). Replace it with a copy of what it points to, or delete it, then run "
                    "the command again."
                )
        if Path(folder) == root:
            dirs[:] = [d for d in dirs if d != "wandb"]


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
        root = check_output_folder(root, "--runs-dir", " (default: runs/)")
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
        """An existing run; a clear :class:`UserError` if ``path`` is not one or holds a link, a FIFO or a
        device (:func:`check_run_tree`)."""
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
        check_run_tree(run.path)
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

    def _key(self) -> Path:
        # the folder resolved, the name not: a link planted as the lock file must not change the key
        return self.path.parent.resolve() / self.path.name

    def _not_a_file(self, kind: str) -> UserError:
        return UserError(
            f"{self.path} is {kind}, not a regular file: the lock of {self.what} is a plain file, and neuromod-rl "
            "never writes through a link (one could point at a file of yours). Delete it (it only records who held "
            "the lock last) and run the command again."
        )

    def __enter__(self) -> RunLock:
        key = self._key()
        if key in RunLock._held:
            RunLock._held[key][1] += 1
            return self
        if fcntl is None:  # no flock (Windows): no exclusion, as before
            return self
        kind = path_kind(self.path)
        if kind not in (None, "a file"):  # before opening: opening a device can act on it
            raise self._not_a_file(kind)
        try:  # O_NOFOLLOW, O_NONBLOCK: a link or FIFO swapped in since the check is refused, not followed or waited on
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise self._not_a_file("a symbolic link") from None
            raise UserError(
                f"cannot write to {self.what} ({err.strerror}); it must be writable (check the permissions and free "
                "space of the folder)"
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise self._not_a_file(path_kind(self.path) or "not a regular file")
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
        key = self._key()
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
