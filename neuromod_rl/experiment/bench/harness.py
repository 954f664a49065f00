"""What the benchmarks share: a measurement in a fresh child process (so its peak memory is its own),
the thread limit set there before torch loads, peak RSS, the choice of what to measure, and the JSON
report."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a freshly spawned process (``fn`` a module-level function, ``args`` picklable)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def limit_threads(threads: int) -> None:
    """Run this (child) process on ``threads`` torch threads. Call it before anything imports torch:
    torch's OpenMP pool (which the fused kernel's thread count follows) must not spin more threads than
    asked for on a shared machine, or busy-waiting threads dominate."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch

    torch.set_num_threads(threads)


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB."""
    # ru_maxrss is in kB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if platform.system() == "Darwin" else peak / 1024


def check_choices(chosen: Iterable[str], valid: Iterable[str]) -> None:
    """A ``ValueError`` naming the unknown algorithms in ``chosen`` and the valid ones."""
    valid = list(valid)
    unknown = set(chosen) - set(valid)
    if unknown:
        raise ValueError(f"unknown algorithms {sorted(unknown)}; valid choices: {valid}")


def add_process_arguments(parser: argparse.ArgumentParser, json_default: str, algorithms: Iterable[str]) -> None:
    """``--json``, ``--threads`` and ``--only``: the options of a benchmark that measures each of its
    ``algorithms`` in a fresh process."""
    choices = list(algorithms)
    parser.add_argument("--json", default=json_default, help="output path ('' to skip)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per algorithm")
    parser.add_argument("--only", nargs="+", choices=choices, default=choices)


def write_report(report: dict[str, Any], json_path: str | os.PathLike | None) -> None:
    """Write ``report`` as indented JSON to ``json_path`` (its folder created) and say so; ``None``:
    nothing is written."""
    if not json_path:
        return
    os.makedirs(os.path.dirname(json_path) or ".", exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {json_path}")
