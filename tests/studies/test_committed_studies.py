"""Every committed study stays valid under the current code: re-running it with its report's own command
on a copy of its committed progress file reuses every run (their fingerprints still match) and trains
nothing. The memory suite is left out: its report times each agent's throughput afresh (minutes)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from neuromod_rl.studies import command
from neuromod_rl.studies.scaffold import multiseed

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs" / "results").rglob("*.runs.json")
                   if not p.name.startswith("pomdp."))


def _reported_command(progress: Path) -> list[str]:
    """The ``neuromod-rl reproduce`` arguments the study's report says it was made with."""
    name = progress.name.split(".")[0]
    line = next(x for x in (progress.parent / f"{name}.md").read_text().splitlines()
                if x.startswith(f"neuromod-rl reproduce {name} "))
    return shlex.split(line)[2:]


def test_every_committed_study_is_checked():
    tracked = subprocess.run(["git", "ls-files", "docs/results/*.runs.json"], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    assert not tracked or {t for t in tracked if not Path(t).name.startswith("pomdp.")} == set(COMMITTED)
    assert len(COMMITTED) >= 2


@pytest.mark.parametrize("progress", COMMITTED)
def test_a_committed_study_reuses_its_runs(progress, tmp_path, monkeypatch):
    real = multiseed.run_jobs

    def only_finished(store: multiseed.Progress, jobs, *args, **kwargs):
        again = [f"{j.agent} seed {j.seed}" for j in jobs if store.result(j.agent, j.seed, j.fp) is None]
        assert jobs and not again, f"{progress}: would train again (fingerprint changed): {again}"
        return real(store, jobs, *args, **kwargs)

    monkeypatch.setattr(multiseed, "run_jobs", only_finished)
    shutil.copy(ROOT / progress, tmp_path)
    args = _reported_command(ROOT / progress)
    for flag in ("--out", "--workers", "--runs-dir"):  # where it writes and how many processes: not the runs
        if flag in args:
            i = args.index(flag)
            del args[i:i + 2]
    assert command.main([*args, "--out", str(tmp_path), "--runs-dir", str(tmp_path / "runs")]) == 0
