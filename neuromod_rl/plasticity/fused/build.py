"""Compile and load the fused engine's C kernel (``kernel/``), safely.

The kernel is plain C (no torch headers), so it compiles in about a second with the system C
compiler the first time it is needed, and is cached under ``$NEUROMOD_RL_CACHE`` (default
``~/.cache/neuromod_rl``), keyed by the source, the flags and the CPU. It is compiled for a fixed
instruction set, not for the build machine (:func:`target_flags`), so that a seed gives the same
numbers on every CPU. Loading a shared library runs its code, so the cache is trusted only when it
is private: the folder is created ``0700`` and a folder or library that another user owns, or that
others can write to, is never loaded (someone could have planted it); the kernel is then built in a
fresh private ``mkdtemp`` folder instead. A cached library of this user's that cannot be loaded or
lacks the kernel's functions (an interrupted write, a full disk) is rebuilt in place.
Where no compiler works the ``fused`` backend falls back to its torch-op path (exact, slower) and
says so once. ``NEUROMOD_RL_FUSED_KERNEL=torch`` forces that path.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch

from neuromod_rl.plasticity.fused.spec import kernel_defines

_KERNEL = Path(__file__).parent / "kernel"
_SOURCES = [_KERNEL / "forward.c", _KERNEL / "backward.c"]
_HEADERS = [_KERNEL / "fused_kernel.h", _KERNEL / "rules.h", _KERNEL / "cells.h"]
# -ffp-contract=off: the backward replay must round exactly as the forward did (clip masks agree).
_FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fopenmp-simd", "-pthread"]
_FLAGS += ["-shared", "-fPIC", "-std=c99", *kernel_defines()]
#: x86-64-v3's instruction sets (AVX2 and FMA among them), as /proc/cpuinfo names them
_X86_64_V3 = ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave")
#: dtype -> (C type of ``real``, extra flags); float uses the kernel's vectorisable tanh (3e-7 abs error)
PRECISIONS = {
    torch.float32: ("float", ["-DREAL=float", "-DFAST_TANH"]),
    torch.float64: ("double", ["-DREAL=double", "-DTANH=tanh"]),
}
#: the functions a library must export to be the kernel
_ENTRY_POINTS = ("plastic_forward", "plastic_backward")
_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_lock = threading.Lock()
_libs: dict[torch.dtype, ctypes.CDLL] | None = None
_failure: str | None = None
_private_dir: Path | None = None


class KernelError(RuntimeError):
    """Why the kernel cannot be built or loaded (the message), and what fixes it (``fix``)."""

    def __init__(self, cause: str, fix: str):
        super().__init__(cause)
        self.fix = fix


def _write_error(folder: Path, err: OSError) -> KernelError:
    """A failure to write in ``folder``, with the fix for its cause (a full disk, a read-only folder)."""
    where = f"cannot write the kernel in {folder}: {err.strerror or err}"
    if err.errno in _NO_SPACE:
        return KernelError(where, "Free disk space there, or set NEUROMOD_RL_CACHE to a folder on another disk.")
    return KernelError(where, "Make that folder writable, or set NEUROMOD_RL_CACHE to a folder of your own.")


def cache_dir() -> Path:
    return Path(os.environ.get("NEUROMOD_RL_CACHE", Path.home() / ".cache" / "neuromod_rl"))


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), platform.processor())
    except OSError:
        return platform.processor() + platform.machine()


def target_flags(cpu_flags: str | None = None, machine: str | None = None) -> list[str]:
    """The instruction set the kernel is compiled for: a fixed one, never ``-march=native``.

    The kernel's sums (``#pragma omp simd reduction``) add in an order set by the vector width the
    compiler targets, so a ``-march=native`` build rounds differently on CPUs with different vector
    units, and a training run (where rounding differences grow) ends elsewhere on another machine with
    the same seed. A fixed target gives the same code, hence the same bits, on every CPU that runs it:
    x86-64-v3 (AVX2, FMA; most x86 CPUs since 2015) where the CPU has it, else baseline x86-64; other
    architectures get the compiler's generic target. ``-mtune=generic`` keeps the choices of vector
    width independent of the build machine too. ``NEUROMOD_RL_KERNEL_TARGET=native`` trades that for the
    build machine's widest vectors (``-march=native``; on an AVX-512 Xeon the portable build's fused
    passes ran at 0.78-0.98x of native's, ``neuromod-rl bench core``), with results tied to that CPU."""
    choice = os.environ.get("NEUROMOD_RL_KERNEL_TARGET", "portable").strip().lower() or "portable"
    if choice not in ("portable", "native"):
        raise ValueError(
            f"NEUROMOD_RL_KERNEL_TARGET={choice!r} is not a kernel target; use 'portable' (the default: the same "
            "results on every CPU) or 'native' (this CPU's widest vectors)"
        )
    if choice == "native":
        return ["-march=native"]
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64"):
        return []
    have = set((cpu_flags if cpu_flags is not None else _cpu_id()).split())
    if all(f in have for f in _X86_64_V3):
        return ["-march=x86-64-v3", "-mtune=generic"]
    return ["-march=x86-64", "-mtune=generic"]


def unsafe_reason(path: Path) -> str | None:
    """Why ``path`` (a cache folder or a library in it) must not be trusted, or ``None`` if it is ours
    alone: owned by this user and not writable by the group or others."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link"
    if st.st_uid != os.getuid():
        return f"{path} is owned by uid {st.st_uid}, not by this user ({os.getuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by other users (mode {stat.filemode(st.st_mode)})"
    return None


def _private_folder() -> Path:
    """This process's own build folder (``mkdtemp``: 0700, unique), made on first use."""
    global _private_dir
    if _private_dir is None:
        _private_dir = Path(tempfile.mkdtemp(prefix="neuromod_rl-kernel-"))
    return _private_dir


def _cache_folder(refused: list[str]) -> Path:
    """The shared cache folder if it is private to this user, else this process's own folder."""
    folder = cache_dir()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        refused.append(f"{folder}: {err}")
        return _private_folder()
    reason = unsafe_reason(folder)
    if reason is None:
        return folder
    refused.append(reason)
    return _private_folder()


def compiler() -> str | None:
    """The C compiler the kernel is built with: ``$CC``, else ``cc``, else ``gcc`` (``None``: none found)."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _compile(real_flags: list[str], out: Path) -> None:
    """Compile the kernel into ``out``; a :class:`KernelError` naming the cause when that fails."""
    cc = compiler()
    if cc is None:
        raise KernelError("no C compiler found", "Install a C compiler (gcc), or set CC to one, for full speed.")
    try:
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            target = Path(tmp) / out.name
            cmd = [cc, *_FLAGS, *target_flags(), *real_flags, *map(str, _SOURCES), "-o", str(target), "-lm"]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True)
            except OSError as err:  # CC names a program that is not there or cannot run
                raise KernelError(f"cannot run the C compiler {cc!r}: {err}",
                                  "Install a C compiler (gcc), or set CC to one that works.") from None  # fmt: skip
            if proc.returncode != 0:
                if "No space left on device" in proc.stderr or "Disk quota exceeded" in proc.stderr:
                    raise _write_error(out.parent, OSError(errno.ENOSPC, "No space left on device"))
                raise KernelError(f"compiling the fused kernel with {cc} failed: {proc.stderr.strip()[:500]}",
                                  f"Check that {cc} works, or set CC to another C compiler.")  # fmt: skip
            os.chmod(target, 0o700)
            os.replace(target, out)  # atomic: concurrent processes never load a half-written library
    except OSError as err:
        raise _write_error(out.parent, err) from None


def _built(dtype: torch.dtype, key: str) -> tuple[Path, bool]:
    """The compiled library for ``dtype``, built on first use in a private cache folder, and whether it
    was built now."""
    real, flags = PRECISIONS[dtype]
    refused: list[str] = []
    path = _cache_folder(refused) / f"fused_kernel_{real}_{key}.so"
    reason = unsafe_reason(path)
    if reason is not None:  # a planted or tampered library in the cache: never load it
        refused.append(reason)
        path = _private_folder() / path.name
    if refused:
        warnings.warn(
            "neuromod_rl: not loading the compiled kernel from an unsafe cache ("
            + "; ".join(refused)
            + f"); building it in the private folder {path.parent} instead. Make the cache folder yours "
            "(chown, chmod 700), or set NEUROMOD_RL_CACHE to a folder of your own.",
            RuntimeWarning,
            stacklevel=4,
        )
    if path.exists():
        return path, False
    _compile(flags, path)
    return path, True


def _missing_entry_points(lib: ctypes.CDLL) -> list[str]:
    return [name for name in _ENTRY_POINTS if not hasattr(lib, name)]


def _unload(lib: ctypes.CDLL) -> None:
    """Close ``lib`` so that loading its path again reads the file anew (the dynamic loader hands back
    a library that is still open under the same name)."""
    try:
        import _ctypes

        _ctypes.dlclose(lib._handle)
    except (ImportError, AttributeError, OSError):  # no dlclose (Windows): the rebuilt library is checked anyway
        pass


def _open(dtype: torch.dtype, key: str) -> ctypes.CDLL:
    """The kernel library for ``dtype``. A cached one that cannot be loaded or lacks the kernel's
    functions (an interrupted write, a full disk, another build's file under this name) is ours,
    since the cache is private (:func:`_built`), so it is rebuilt in place rather than trusted."""
    path, fresh = _built(dtype, key)
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as err:
        if fresh:
            raise KernelError(f"the kernel just compiled in {path} cannot be loaded ({err})",
                              "Set NEUROMOD_RL_CACHE to a folder on a file system that allows running programs "
                              "(not mounted noexec).") from None  # fmt: skip
        problem = f"it cannot be loaded ({err})"
    else:
        if fresh:  # just compiled from the kernel's own sources
            return lib
        missing = _missing_entry_points(lib)
        if not missing:
            return lib
        problem = f"it lacks the kernel's functions {missing}"
        _unload(lib)
    try:
        _compile(PRECISIONS[dtype][1], path)
        lib = ctypes.CDLL(str(path))
    except (KernelError, OSError) as err:
        fix = getattr(err, "fix", f"Delete {path} and run again.")
        raise KernelError(f"the cached kernel {path} is damaged ({problem}) and rebuilding it failed: {err}",
                          fix) from None  # fmt: skip
    missing = _missing_entry_points(lib)
    if missing:
        raise KernelError(f"the rebuilt kernel {path} lacks the functions {missing}", f"Delete {path} and run again.")
    return lib


def source_key() -> str:
    code = b"".join(p.read_bytes() for p in [*_SOURCES, *_HEADERS])
    flags = " ".join([*_FLAGS, *target_flags()])
    return hashlib.sha256(code + flags.encode() + _cpu_id().encode()).hexdigest()[:16]


def load() -> dict[torch.dtype, ctypes.CDLL] | None:
    """The compiled kernels by dtype (compiling them on first use), or ``None`` where unavailable."""
    global _libs, _failure
    if _libs is not None or _failure is not None:
        return _libs
    with _lock:
        if _libs is not None or _failure is not None:
            return _libs
        if os.environ.get("NEUROMOD_RL_FUSED_KERNEL", "").lower() == "torch":
            _failure = "disabled by NEUROMOD_RL_FUSED_KERNEL=torch"
            return None
        try:
            key = source_key()
            _libs = {dtype: _open(dtype, key) for dtype in PRECISIONS}
        except (OSError, RuntimeError) as err:
            _failure = str(err)
            fix = err.fix if isinstance(err, KernelError) else "Set NEUROMOD_RL_CACHE to a folder of your own."
            warnings.warn(
                f"neuromod_rl: the fused CPU kernel is unavailable ({_failure}); the fused backend uses its "
                f"slower torch-op path. {fix}",
                RuntimeWarning,
                stacklevel=3,
            )
    return _libs


def available() -> bool:
    """True when the C kernel compiled and loaded (it is compiled on the first call)."""
    return load() is not None
