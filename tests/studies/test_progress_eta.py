"""``neuromod-rl reproduce`` says how far a multi-run study is and how long the rest will take: after each
run, ``[k/n] agent seed S: took Xs; ETA ~Ys`` from the mean duration so far and the number of workers."""

from __future__ import annotations

import re
import time

import pytest

from neuromod_rl.studies.scaffold import multiseed


def _sleep(agent: str, seed: int, seconds: float) -> dict:
    time.sleep(seconds)
    return {"seed": seed}


def test_each_finished_run_prints_its_time_and_the_eta(tmp_path, capsys):
    jobs = [multiseed.Job("plastic", s, "fp", _sleep, (0.2,)) for s in range(3)]
    multiseed.run_jobs(multiseed.Progress(tmp_path, "study", "smoke"), jobs)
    done = re.findall(r"^\[(\d)/3\] plastic seed (\d): took (\d+)s; ETA ~(\d+)s$", capsys.readouterr().err, re.M)
    assert [(k, seed) for k, seed, _, _ in done] == [("1", "0"), ("2", "1"), ("3", "2")]
    assert done[-1][3] == "0"


def test_a_second_invocation_counts_only_the_runs_left(tmp_path, capsys):
    progress = multiseed.Progress(tmp_path, "study", "smoke")
    progress.put("plastic", 0, "fp", {"seed": 0}, 5.0)
    jobs = [multiseed.Job("plastic", s, "fp", _sleep, (0.0,)) for s in range(3)]
    multiseed.run_jobs(progress, jobs)
    err = capsys.readouterr().err
    assert "1 of 3 runs already done" in err and "[1/2] plastic seed 1: took 0s; ETA ~0s" in err
    assert "[2/2] plastic seed 2" in err and "2 runs done in " in err


@pytest.mark.parametrize("took, remaining, workers, expected", [
    ([10.0], 4, 1, 40.0),  # one worker: the remaining runs one after another
    ([10.0, 30.0], 4, 2, 40.0),  # mean 20 s, two at a time
    ([10.0], 2, 4, 10.0),  # fewer runs left than workers: one round
    ([10.0], 0, 2, 0.0),
])
def test_the_eta_is_the_mean_duration_times_the_runs_left_per_worker(took, remaining, workers, expected):
    assert multiseed.eta(took, remaining, workers) == expected


def test_durations_read_at_a_glance():
    assert [multiseed.duration(s) for s in (0.4, 42, 185, 7620)] == ["0s", "42s", "3m05s", "2h07m"]

