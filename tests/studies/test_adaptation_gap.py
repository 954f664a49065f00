"""The adaptation-gap study: bounds, the share of the gap closed, and the trial protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from stable_baselines3.common.env_util import make_vec_env

from neuromod_rl.studies import command as reproduce
from neuromod_rl.studies.adaptation import gap, gap_suite

torch.set_num_threads(1)


def test_smoke_writes_report_with_bounds_and_resumes(tmp_path):
    """At smoke scale every agent trains on the corridor's trials; the report has the bounds table, each
    agent's share of the gap and episode 1 vs K, the targets as claims and the plots; a second call trains
    nothing."""
    assert reproduce.main(["adaptation-gap", "--scale", "smoke", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "adaptation-gap.md").read_text()
    assert "## Bounds (median over seeds)" in report
    assert "| HiddenGoalCorridor-v0 | 3 |" in report
    assert "closes at least 50% of the gap" in report
    assert "rises from the first episode to the last" in report
    for agent in gap_suite.AGENTS:
        assert f"| HiddenGoalCorridor-v0 | {gap_suite.label(agent)} |" in report
    for plot in ("gap", "trials", "learning"):
        assert (tmp_path / f"adaptation-gap_{plot}.png").stat().st_size > 0
    store = tmp_path / "adaptation-gap.smoke.runs.json"
    runs = json.loads(store.read_text())["runs"]
    assert sorted(runs) == sorted(f"HiddenGoalCorridor-v0/{a}/seed0" for a in gap_suite.AGENTS)
    assert all(len(r["result"]["episode_returns"]) == 3 for r in runs.values())
    before = store.stat().st_mtime_ns
    assert reproduce.main(["adaptation-gap", "--scale", "smoke", "--out", str(tmp_path)]) == 0
    assert store.stat().st_mtime_ns == before


def test_unknown_task_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="unknown adaptation-gap task"):
        gap.run("smoke", 0, tmp_path, "cmd", gap.StudyOptions(tasks=("Nope-v0",)))


class _WalkToGoal:
    """A scripted oracle for the corridor: reads the goal from the oracle's input, walks to it and stays.
    Its position is its recurrent state, restarted where the trial flags an episode's first step."""

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        goal = int(round(float(obs[0, -1]) * 6))
        first = bool(obs[0, 1] > 0.5)  # [constant, first-step flag, previous action, reward, done, goal]
        pos = 0 if state is None or first else int(state[0])
        action = 1 + int(np.sign(goal - pos))
        return np.array([action]), np.array([pos + action - 1])


def test_evaluate_trials_returns_each_episode_of_a_trial():
    """Walking straight to a goal at distance d and staying earns 41 - d in each of the trial's episodes:
    the evaluation sums the rewards of each episode separately and restarts the state per trial."""
    task = gap_suite.TASKS["HiddenGoalCorridor-v0"]
    env = gap_suite.vec_envs(task, "oracle", seed=3, n_envs=1)
    by_episode = gap_suite.evaluate_trials(_WalkToGoal(), env, trials=6, episodes=3, deterministic=True)
    assert by_episode.shape == (3,)
    assert np.allclose(by_episode, by_episode[0])
    assert 41 - 6 <= by_episode[0] <= 41 - 3


def test_each_agent_sees_its_input():
    """Reactive and the memory agents: previous action and reward; the oracle: those and the task; Markov: neither."""
    task = gap_suite.TASKS["HiddenGoalCorridor-v0"]
    sizes = {a: make_vec_env(lambda a=a: gap_suite._env(task, a), n_envs=1).observation_space.shape[0]
             for a in gap_suite.AGENTS}  # fmt: skip
    assert sizes["markov"] == 2  # the dark corridor's constant and the trial's first-step flag
    assert sizes["reactive"] == sizes["plastic_lstm"] == sizes["recurrent_ppo"] == 2 + 3 + 2
    assert sizes["oracle"] == sizes["reactive"] + 1


def _result(final, episodes=(0.0, 0.0), seconds=10.0):
    return {"final_return": final, "episode_returns": list(episodes), "train_seconds": seconds,
            "steps_per_second": 100.0, "curve": [(10, final)]}  # fmt: skip


def test_share_of_gap_and_qualification_follow_the_numbers():
    """Oracle 10, Markov 0: an agent at 6 closes 60%; a reactive agent at 5 leaves 50% of the gap, so the task
    needs memory; a reactive seed above an oracle seed (overlap) disqualifies it; the trial claim needs every
    seed of the plastic agent to rise and not every reactive one."""
    s = gap.Settings(tasks=("HiddenGoalCorridor-v0",), seeds=2)
    seeds = [0, 1]

    def results(reactive_seeds):
        rows = {"oracle": [10.0, 10.0], "markov": [0.0, 0.0], "reactive": reactive_seeds,
                "plastic_lstm": [6.0, 6.0], "plastic_rnn": [2.0, 2.0], "recurrent_ppo": [4.0, 4.0]}
        out = {}
        for agent, finals in rows.items():
            for sd, f in zip(seeds, finals):
                eps = (f - 1, f + 1) if agent == "plastic_lstm" else (f, f)
                out[(f"HiddenGoalCorridor-v0/{agent}", sd)] = _result(f, eps, 5.0 if agent == "plastic_lstm" else 20.0)
        return out

    summary = gap.summarise(results([5.0, 5.0]), s, seeds)["HiddenGoalCorridor-v0"]
    assert summary["qualifies"]
    assert summary["rows"]["plastic_lstm"]["share"][0] == pytest.approx(0.6)
    claims = dict((c, ok) for c, ok, _ in gap.verdicts({"HiddenGoalCorridor-v0": summary}))
    assert any(ok for c, ok in claims.items() if c.startswith("HiddenGoalCorridor-v0 needs memory"))
    assert not any(ok for c, ok in claims.items() if "on at least two tasks" in c)  # one task only
    assert any(ok for c, ok in claims.items() if c.startswith("moonshot"))
    assert any(ok for c, ok in claims.items() if "rises from the first episode" in c)
    overlapping = gap.summarise(results([5.0, 10.5]), s, seeds)["HiddenGoalCorridor-v0"]
    assert not overlapping["qualifies"]
    small = gap.summarise(results([9.0, 9.0]), s, seeds)["HiddenGoalCorridor-v0"]
    assert not small["qualifies"]  # oracle-reactive is 10% of the gap


@pytest.mark.parametrize("task_name", list(gap_suite.TASKS))
def test_every_task_of_the_suite_builds_each_input_and_trains_a_plastic_agent(task_name):
    """Each task's three inputs reset to observations inside their spaces, and a few PlasticPPO steps run through
    training and the per-episode evaluation (a run of the study at a toy budget)."""
    task = gap_suite.TASKS[task_name]
    for agent in ("oracle", "markov", "reactive"):
        env = gap_suite._env(task, agent)
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs), (task_name, agent)
    small = {"n_steps": 8, "batch_size": 32, "n_epochs": 1}
    result = gap_suite.run_one(f"{task_name}/plastic_lstm", 0, budget=64, evals=1, eval_trials=1, final_trials=1,
                               overrides=small)  # fmt: skip
    assert result["budget"] == 64 and len(result["episode_returns"]) == task.trial_episodes
    assert all(np.isfinite(result["episode_returns"]))
