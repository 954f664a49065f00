"""Alignment of evaluation traces on the task switch, and the dispatch of the thin commands."""

from __future__ import annotations

import numpy as np

from neuromod_rl.cli import main
from neuromod_rl.experiment.plots.adaptation import _mean_band, aligned


def test_traces_are_aligned_on_the_task_switch():
    rewards = np.array([[0, 0, 1, 2, 3], [0, 1, 2, 3, np.nan]], dtype=float)
    traces = {"rewards": rewards, "switch_at": np.array([2, 1])}
    x, values = aligned(traces)
    assert list(x) == [-2, -1, 0, 1, 2]  # the column no episode reaches is dropped
    # at x = 0 both episodes are at their switch step: value 1 for both
    assert np.array_equal(values[:, list(x).index(0)], [1.0, 1.0])
    assert np.array_equal(values[1], [np.nan, 0, 1, 2, 3], equal_nan=True)
    no_switch = {"rewards": rewards, "switch_at": np.array([-1, -1])}
    x, values = aligned(no_switch)
    assert list(x) == [0, 1, 2, 3, 4] and values is rewards


def test_mean_band_keeps_gaps_as_gaps():
    values = np.array([[1.0, 1.0, np.nan], [3.0, 3.0, np.nan]])
    mean, lo, hi = _mean_band(values, smooth=2)
    assert mean[0] == 2.0 and np.isnan(mean[2]) and lo[0] < 2.0 < hi[0]


def test_thin_commands_dispatch_to_their_modules(capsys):
    assert main(["bench", "envs", "--help"]) == 0
    assert "usage" in capsys.readouterr().out
    assert main(["reproduce", "nosuch"]) == 2
    assert main(["demo", "--help"]) == 0 and "--iterations" in capsys.readouterr().out  # options first reach it
    assert main(["reproduce", "--help"]) == 0 and "maze" in capsys.readouterr().out
    assert main(["train", "--no-such-option"]) == 2
    assert main(["envs"]) == 0
    assert "neuromod_rl/Maze-v0" in capsys.readouterr().out
