"""The compiled-kernel cache when it is damaged: a cached library of this user's that cannot be loaded
or lacks the kernel's functions is rebuilt, and when the kernel is unavailable the warning names the
real cause (a full disk, a damaged cache) rather than blaming a missing compiler."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import warnings
from pathlib import Path

import pytest

from neuromod_rl.plasticity.fused import build

CC = build.compiler()
REAL_COMPILE = build._compile  # before the fixture swaps in the stand-in
needs_cc = pytest.mark.skipif(CC is None, reason="needs a C compiler")


def _compile_library(out: Path, ident: int, kernel: bool = True) -> None:
    """A small shared library standing in for the kernel (compiling the real one takes seconds):
    ``probe_id() == ident``, and with ``kernel`` the kernel's two entry points."""
    src = out.with_suffix(".c")
    entry = "int plastic_forward(void) { return 0; }\nint plastic_backward(void) { return 0; }\n" if kernel else ""
    src.write_text(f"int probe_id(void) {{ return {ident}; }}\n{entry}")
    subprocess.run([CC, "-shared", "-fPIC", str(src), "-o", str(out)], check=True, capture_output=True)
    src.unlink()


@pytest.fixture
def cache(monkeypatch, tmp_path) -> Path:
    """``build`` as in a new process whose private cache is ``tmp_path/cache``; "compiling" makes a
    stand-in library with id 1."""
    monkeypatch.setenv("NEUROMOD_RL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NEUROMOD_RL_FUSED_KERNEL", raising=False)
    monkeypatch.setattr(build, "_libs", None)
    monkeypatch.setattr(build, "_failure", None)
    monkeypatch.setattr(build, "_private_dir", None)
    monkeypatch.setattr(build, "_compile", lambda flags, out: _compile_library(out, 1))
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    return folder


def _cached(folder: Path) -> list[Path]:
    key = build.source_key()
    return [folder / f"fused_kernel_{real}_{key}.so" for real, _ in build.PRECISIONS.values()]


def _load():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        libs = build.load()
    return libs, [str(w.message) for w in caught]


def _ids(libs) -> set[int]:
    out = set()
    for lib in libs.values():
        lib.probe_id.restype = ctypes.c_int
        out.add(lib.probe_id())
    return out


@needs_cc
def test_a_cached_library_without_the_kernel_functions_is_rebuilt(cache):
    for path in _cached(cache):
        _compile_library(path, 7, kernel=False)  # e.g. a file another build left under this name
        os.chmod(path, 0o700)
    libs, caught = _load()
    assert not caught, caught
    assert libs is not None and _ids(libs) == {1}
    assert all(hasattr(lib, "plastic_forward") and Path(lib._name).parent == cache for lib in libs.values())


@needs_cc
@pytest.mark.parametrize("damage", [b"", b"\x7fELF truncated", b"not a library at all"])
def test_a_cached_library_that_cannot_be_loaded_is_rebuilt(cache, damage):
    for path in _cached(cache):
        path.write_bytes(damage)  # an interrupted copy, a disk that filled up mid-write
        os.chmod(path, 0o700)
    libs, caught = _load()
    assert not caught, caught
    assert libs is not None and _ids(libs) == {1}
    assert all(path.stat().st_size > len(damage) for path in _cached(cache))  # the cache is repaired


@needs_cc
def test_a_damaged_cache_that_cannot_be_rebuilt_names_the_cache_not_the_compiler(cache, monkeypatch):
    for path in _cached(cache):
        path.write_bytes(b"garbage")
        os.chmod(path, 0o700)

    def disk_full(flags, out):
        raise build.KernelError(f"cannot write the kernel in {out.parent}: No space left on device",
                                "Free disk space there, or set NEUROMOD_RL_CACHE to another folder.")  # fmt: skip

    monkeypatch.setattr(build, "_compile", disk_full)
    libs, caught = _load()
    assert libs is None
    (message,) = caught
    assert "cannot be loaded" in message and "No space left on device" in message and "Free disk space" in message
    assert "Install a C compiler" not in message


def test_a_full_disk_is_named_as_the_cause_not_a_missing_compiler(cache, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(build, "_compile", REAL_COMPILE)
    monkeypatch.setattr(build.tempfile, "TemporaryDirectory", no_space)
    libs, caught = _load()
    assert libs is None
    (message,) = caught
    assert "No space left on device" in message and "Free disk space" in message
    assert "C compiler" not in message


def test_a_missing_compiler_is_still_named_as_the_cause(cache, monkeypatch):
    monkeypatch.setattr(build, "_compile", REAL_COMPILE)
    monkeypatch.setattr(build, "compiler", lambda: None)
    libs, caught = _load()
    assert libs is None
    (message,) = caught
    assert "no C compiler found" in message and "Install a C compiler" in message
