"""The off-policy study's verdict helper: when a method "reaches" a return."""

from __future__ import annotations

import numpy as np

from neuromod_rl.experiment.reproduce.offpolicy import SCALES, first_reach, jobs_for


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
