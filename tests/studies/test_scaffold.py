"""The studies' scaffold: medians over seeds, progress files that skip finished runs, worker processes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuromod_rl.studies.scaffold import multiseed

torch.set_num_threads(1)


# ------------------------------------------------------------------------------ statistics

def test_median_and_interquartile_range_ignore_missing_values():
    assert multiseed.median_iqr([4.0, 1.0, 3.0, 2.0]) == (2.5, 1.75, 3.25)
    assert multiseed.median_iqr([1.0, None, float("nan"), 3.0]) == (2.0, 1.5, 2.5)
    assert np.isnan(multiseed.median_iqr([None, float("nan")])[0])
    assert multiseed.fmt_miqr([1.0, 2.0, 3.0]) == "2 [1.5, 2.5]" and multiseed.fmt_miqr([]) == "n/a"
    assert multiseed.seed_list(7, 3) == [7, 8, 9]
    with pytest.raises(ValueError, match="at least one seed"):
        multiseed.seed_list(0, 0)


CALLS: list[tuple[str, int]] = []


def _job(agent: str, seed: int, scale: float) -> dict:
    CALLS.append((agent, seed))
    return {"score": scale * seed, "curve": [seed, seed + 1]}


def test_finished_runs_are_not_redone_and_changed_agents_are(tmp_path):
    jobs = [multiseed.Job(a, s, f"fp-{a}", _job, (10.0,)) for a in ("x", "y") for s in (0, 1)]
    CALLS.clear()
    first = multiseed.run_jobs(multiseed.Progress(tmp_path, "study", "smoke"), jobs, log=lambda m: None)
    assert sorted(CALLS) == [("x", 0), ("x", 1), ("y", 0), ("y", 1)] and first[("y", 1)]["score"] == 10.0
    stored = json.loads((tmp_path / "study.smoke.runs.json").read_text())
    assert set(stored["runs"]) == {"x/seed0", "x/seed1", "y/seed0", "y/seed1"}

    CALLS.clear()  # a fresh start (a new process) reads the file: nothing left to do
    again = multiseed.run_jobs(multiseed.Progress(tmp_path, "study", "smoke"), jobs, log=lambda m: None)
    assert CALLS == [] and again == first

    CALLS.clear()  # agent y's settings changed (new fingerprint): only y runs again
    changed = [multiseed.Job(j.agent, j.seed, j.fp + "2" if j.agent == "y" else j.fp, _job, (20.0,)) for j in jobs]
    third = multiseed.run_jobs(multiseed.Progress(tmp_path, "study", "smoke"), changed, log=lambda m: None)
    assert sorted(CALLS) == [("y", 0), ("y", 1)] and third[("y", 1)]["score"] == 20.0 and third[("x", 1)]["score"] == 10

    # another scale keeps its own file
    assert multiseed.Progress(tmp_path, "study", "default").result("x", 0, "fp-x") is None


def test_a_new_evaluation_of_the_same_run_keeps_its_training_time(tmp_path):
    progress = multiseed.Progress(tmp_path, "study", "default")
    progress.put("x", 0, "fp-1", {"run": "runs/x-seed0", "score": 1.0}, 600.0)  # trained and evaluated
    progress.put("x", 0, "fp-2", {"run": "runs/x-seed0", "score": 2.0}, 30.0)  # the same run re-evaluated
    assert progress.seconds("x", 0) == 630.0 and progress.result("x", 0, "fp-2")["score"] == 2.0
    progress.put("x", 0, "fp-3", {"run": "runs/x-seed0-new", "score": 3.0}, 500.0)  # retrained elsewhere
    assert progress.seconds("x", 0) == 500.0


def test_jobs_run_in_worker_processes(tmp_path):
    # dict.fromkeys is a picklable module-level callable: fromkeys("ab", seed) -> {"a": seed, "b": seed}
    jobs = [multiseed.Job("ab", s, "fp", dict.fromkeys) for s in (3, 4)]
    out = multiseed.run_jobs(multiseed.Progress(tmp_path, "p", "smoke"), jobs, workers=2, log=lambda m: None)
    assert out == {("ab", 3): {"a": 3, "b": 3}, ("ab", 4): {"a": 4, "b": 4}}
    assert multiseed.Progress(tmp_path, "p", "smoke").result("ab", 4, "fp") == {"a": 4, "b": 4}
