"""The benchmarks' JSON goes only where a file may be written: never through a link, into a device or
into a folder that takes no files (exit 2 naming it)."""

from __future__ import annotations

import os

import pytest

from neuromod_rl.bench.harness import write_report
from neuromod_rl.experiment.errors import UserError


def test_bench_json_replaces_a_link_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.symlink(victim, tmp_path / "link.json")
    with pytest.raises(UserError, match="link.json"):
        write_report({"a": 1}, tmp_path / "link.json")
    assert victim.read_text() == "keep me"


def test_bench_json_refuses_special_files_and_writes_regular_ones(tmp_path):
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(UserError, match="fifo.json"):
        write_report({"a": 1}, tmp_path / "fifo.json")
    with pytest.raises(UserError):
        write_report({"a": 1}, "/proc/self/bench.json")
    write_report({"a": 1}, tmp_path / "out" / "r.json")
    assert (tmp_path / "out" / "r.json").read_text() == '{\n  "a": 1\n}'
