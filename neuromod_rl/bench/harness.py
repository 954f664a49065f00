"""What the benchmarks share: a measurement in a fresh child process (so its peak memory is its own),
the thread limit set there before torch loads, peak RSS, the choice of what to measure, the results
table and the JSON report."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from neuromod_rl.experiment.runs import atomic_write_text, check_output_file, check_output_folder


def in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a freshly spawned process (``fn`` a module-level function, ``args`` picklable)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def limit_threads(threads: int) -> None:
    """Run this (child) process on ``threads`` torch threads. Call it before anything imports torch:
    torch's OpenMP pool (which the fused kernel's thread count follows) must not spin more threads than
    asked for on a shared machine, or busy-waiting threads dominate."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch  # only now: OpenMP reads OMP_NUM_THREADS when torch loads it

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
    check_output_folder(os.path.dirname(json_path) or ".", "--json's folder")
    atomic_write_text(check_output_file(json_path, "--json"), json.dumps(report, indent=2))
    print(f"wrote {json_path}")


@dataclass(frozen=True)
class Column:
    """One column of a results table.

    Attributes:
        header: the column's title.
        width: its width in characters (widened to fit ``header``).
        value: a key of the row (a missing key reads as ``None``) or a function of the row.
        fmt: a ``str.format`` template for the value, e.g. ``"{:.1f}"`` or ``"{:.0f} kB"``; ``None``
            prints ``-``.
        align: ``">"`` (numbers) or ``"<"`` (names).
    """

    header: str
    width: int
    value: str | Callable[[Mapping[str, Any]], Any]
    fmt: str = "{}"
    align: Literal["<", ">"] = ">"

    def text(self, row: Mapping[str, Any]) -> str:
        """This column's cell of ``row``, padded to the column's width."""
        value = row.get(self.value) if isinstance(self.value, str) else self.value(row)
        return self._pad("-" if value is None else self.fmt.format(value))

    def head(self) -> str:
        """The header, padded as the cells are."""
        return self._pad(self.header)

    def _pad(self, text: str) -> str:
        return f"{text:{self.align}{max(self.width, len(self.header))}}"


def print_table(
    title: str | None,
    columns: Sequence[Column],
    rows: Iterable[Mapping[str, Any]],
    ratios: Mapping[str, float] | None = None,
    targets: Mapping[str, str] | None = None,
    ratio_fmt: str = "{:.4g}",
) -> None:
    """Print a benchmark's results: ``title`` (``None``: no line), the header, one line per row, then
    one ``name: value`` line per ratio, followed by ``(target T)`` where ``targets`` has one.

    Args:
        title: the line above the table (``""``: a blank line).
        columns: the table's columns, left to right, one space apart.
        rows: one mapping per line, read by the columns.
        ratios: ratio name -> value, printed after the table with ``ratio_fmt``.
        targets: ratio name -> its target as text (``">= 0.5"``).
        ratio_fmt: a ``str.format`` template for the ratios.
    """
    if title is not None:
        print(title)
    print(" ".join(c.head() for c in columns).rstrip())
    for row in rows:
        print(" ".join(c.text(row) for c in columns).rstrip())
    targets = targets or {}
    for name, value in (ratios or {}).items():
        target = f" (target {targets[name]})" if name in targets else ""
        print(f"{name}: {ratio_fmt.format(value)}{target}")
