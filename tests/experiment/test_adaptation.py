"""Recovery after a mid-episode change, and the report's verdict against a baseline run."""

from __future__ import annotations

import numpy as np
import pytest

from neuromod_rl.experiment import adaptation
from neuromod_rl.experiment.report import baseline_lines


def traces(pre: float, after: float, end: float, episodes: int = 8, switch: int = 10, length: int = 20,
           noise: float = 0.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Episodes whose reward is ``pre`` before the switch, ``after`` for 5 steps, then ``end``."""
    rng = np.random.default_rng(seed)
    r = np.full((episodes, length), end, dtype=np.float64)
    r[:, :switch] = pre
    r[:, switch : switch + 5] = after
    r += noise * rng.standard_normal(r.shape)
    return {"rewards": r, "regret": np.full_like(r, np.nan), "lengths": np.full(episodes, length),
            "returns": r.sum(1), "switch_at": np.full(episodes, switch)}


def test_windows_and_recovery_follow_their_definitions():
    t = traces(pre=2.0, after=0.5, end=1.5)
    assert adaptation.default_window(t) == 2  # a quarter of min(10, 20 - 10)
    rec = adaptation.recovery(t, window=5)
    assert rec["episodes"] == 8 and rec["window"] == 5
    assert (rec["pre"], rec["after"], rec["end"]) == (2.0, 0.5, 1.5)
    assert rec["recovery"] == pytest.approx(0.75)  # end / pre
    assert rec["regained"] == pytest.approx(2 / 3)  # (end - after) / (pre - after)
    assert rec["recovery_ci95"] == pytest.approx([0.75, 0.75])  # no spread, no interval


def test_no_switch_means_no_recovery_and_bad_pre_means_undefined():
    t = traces(2.0, 0.5, 1.5)
    t["switch_at"][:] = -1
    assert adaptation.recovery(t) is None and adaptation.compare(t, t) is None
    neg = adaptation.recovery(traces(-1.0, -2.0, -1.5), window=5)
    assert np.isnan(neg["recovery"]) and np.isnan(neg["regained"])  # pre <= 0: the agent does not run
    flat = adaptation.recovery(traces(1.0, 1.5, 1.0), window=5)
    assert flat["recovery"] == pytest.approx(1.0) and np.isnan(flat["regained"])  # no drop to regain


def test_episodes_too_short_for_the_window_are_left_out():
    t = traces(2.0, 0.5, 1.5)
    t["lengths"][:3] = 12  # ended 2 steps after the switch: no after-window
    assert adaptation.recovery(t, window=5)["episodes"] == 5


@pytest.mark.parametrize(
    ("agent", "base", "verdict"),
    [
        ((2.0, 0.5, 1.8), (2.0, 0.5, 0.5), "yes: it recovers more than the baseline"),
        ((2.0, 0.5, 0.5), (2.0, 0.5, 1.8), "no: it recovers less than the baseline"),
        ((2.0, 0.5, 1.0), (2.0, 0.5, 1.0), "not distinguishable from the baseline"),
        ((-1.0, -2.0, -1.0), (2.0, 0.5, 0.5), "undefined"),
    ],
)
def test_verdict_against_a_baseline(agent, base, verdict):
    lines, summary = baseline_lines(traces(*agent, noise=0.05), "runs/ppo", traces(*base, noise=0.05, seed=1))
    assert summary["verdict"].startswith(verdict)
    assert f"adapts compared with the baseline: {verdict}" in lines[0] and "`runs/ppo`" in lines[0]


def test_without_a_switch_the_verdict_compares_in_episode_gains():
    rising = traces(0.0, 0.0, 0.0, noise=0.01)
    rising["rewards"] += np.linspace(0, 1, 20)
    flat = traces(0.5, 0.5, 0.5, noise=0.01, seed=1)
    for t in (rising, flat):
        t["switch_at"][:] = -1
    _, summary = baseline_lines(rising, "b", flat)
    assert summary["verdict"] == "yes: its reward per step rises more than the baseline's"
    assert summary["gain"] > summary["baseline_gain"]
