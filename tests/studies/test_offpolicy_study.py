"""The off-policy study's verdict helper (when a method "reaches" a return), its budgets, and its
resume from the progress file."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from support import run_study_twice

from neuromod_rl.studies import command as reproduce
from neuromod_rl.studies.memory.offpolicy import SCALES, first_reach, jobs_for

torch.set_num_threads(1)


def test_first_reach_uses_the_median_over_seeds():
    steps = np.array([0, 1000, 2000, 3000])
    returns = np.array([[-900, -500, -200, -150], [-900, -300, -400, -160], [-900, -700, -180, -140]])
    assert first_reach(steps, returns, -250) == 2000  # medians -900, -500, -200, -150
    assert first_reach(steps, returns, -100) is None


def test_default_scale_gives_plastic_sac_one_and_a_half_times_the_ceiling_budget():
    s = SCALES["default"]
    jobs = jobs_for(s, seed=0)
    budget = {(j.task, j.method): j.steps for j in jobs}
    assert budget["pendulum", "plastic_sac"] == 1.5 * budget["pendulum", "sac_full"]
    assert budget["pendulum", "sac"] == budget["pendulum", "plastic_sac"]
    assert len({j.seed for j in jobs}) == s.seeds >= 3


@pytest.mark.slow
def test_offpolicy_study_resumes_and_reruns_only_a_changed_budget(tmp_path, monkeypatch):
    from neuromod_rl.studies.memory import offpolicy

    args = ["offpolicy", "--scale", "smoke", "--seeds", "1", "--out", str(tmp_path)]
    store = tmp_path / "offpolicy.smoke.runs.json"
    first = run_study_twice(args, store)
    assert sorted(first) == sorted(f"{j.task}/{j.method}/seed0" for j in jobs_for(SCALES["smoke"], 0) if j.seed == 0)

    longer = dataclasses.replace(SCALES["smoke"], cheetah_rppo_steps=48)
    monkeypatch.setitem(offpolicy.SCALES, "smoke", longer)
    assert reproduce.main(args) == 0
    again = json.loads(store.read_text())["runs"]
    changed = {k for k in first if again[k] != first[k]}
    assert changed == {"cheetah/recurrent_ppo/seed0"}
    assert again["cheetah/recurrent_ppo/seed0"]["result"]["job"]["steps"] == 48
