"""The oracle and Markov bounds in the workflow: a config trains the oracle (``TaskInObservation``), and
``compare`` and ``report`` give each run's share of the oracle-Markov gap (``--oracle``, ``--markov``),
refusing bounds that are not separated, on another task, or given alone.

Tiny PPO runs on a short HiddenGoalCorridor learn nothing, so the tests set the mean return that the
evaluation saved to known numbers: the arithmetic of the share is then exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support import copy_run, only_run, stderr_without_traceback

from neuromod_rl.cli import main
from neuromod_rl.envs import TaskInObservation
from neuromod_rl.experiment import gap_share as bounds_module
from neuromod_rl.experiment.config import load_config, resolve_wrapper
from neuromod_rl.experiment.environment import make_env
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.evaluate import evaluate
from neuromod_rl.experiment.gap_share import SHARE, gap_share

_TASK = {"env": "neuromod_rl/HiddenGoalCorridor-v0", "env_kwargs": {"distance_range": [1, 2], "episode_length": 6}}
_TINY = {**_TASK, "algo": "ppo", "policy": "MlpPolicy", "policy_kwargs": {"net_arch": [8]}, "n_envs": 1,
         "n_timesteps": 16, "seed": 0, "hyperparameters": {"n_steps": 16, "batch_size": 16, "n_epochs": 1},
         "eval": {"episodes": 2, "n_train_tasks": 2, "n_test_tasks": 2}}  # fmt: skip
_TRIAL = {"Trial": {"episodes": 2}}


def test_gap_share_is_the_share_of_the_median_gap():
    oracle, markov = [40.0, 60.0, 50.0], [12.0, 10.0, 8.0]  # medians 50 and 10: a gap of 40
    assert gap_share(26.0, oracle, markov) == pytest.approx(0.4)
    assert gap_share(10.0, oracle, markov) == 0.0 and gap_share(50.0, oracle, markov) == 1.0
    assert gap_share(0.0, oracle, markov) == pytest.approx(-0.25)  # below the Markov bound
    assert gap_share(70.0, oracle, markov) == pytest.approx(1.5)  # above the oracle
    for bad_oracle in ([10.0], [5.0, 9.0, 20.0], [float("nan")]):
        with pytest.raises(UserError, match="the bounds are not separated; train them longer or check the runs"):
            gap_share(26.0, bad_oracle, markov)


def test_a_config_trains_the_oracle_bound_with_no_opt_in():
    cls, kwargs = resolve_wrapper("TaskInObservation")
    assert cls is TaskInObservation and kwargs == {}
    oracle = make_env(load_config("hidden_goal_corridor_oracle"))
    markov = make_env(load_config("hidden_goal_corridor_markov"))
    # + the previous action (one-hot), reward and done, + the goal's feature
    assert oracle.observation_space.shape[0] == markov.observation_space.shape[0] + 3 + 2 + 1
    obs, _ = oracle.reset(seed=0)
    assert obs[-1] == oracle.unwrapped.get_task()["goal"] / oracle.unwrapped.distance_range[1]
    oracle.close(), markov.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """One tiny run of each: the oracle, the Markov bound, an agent (not evaluated)."""
    root = tmp_path_factory.mktemp("bound-runs")
    wrappers = {"oracle": [_TRIAL, "PrevActionReward", "TaskInObservation"], "markov": [_TRIAL],
                "agent": [_TRIAL, "PrevActionReward"]}
    out = {}
    for name, w in wrappers.items():
        cfg = root / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump({"name": name, **_TINY, "wrappers": w}, sort_keys=False))
        runs = root / name
        assert main(["train", str(cfg), "--runs-dir", str(runs), "--no-progress"]) == 0
        out[name] = only_run(runs)
    return out


def _copies(trained: dict[str, Path], tmp_path: Path, **counts: int) -> dict[str, list[Path]]:
    """``counts[name]`` copies of each trained run, as distinct run directories (seeds, as far as the
    workflow can tell)."""
    return {name: [copy_run(trained[name], tmp_path / f"{name}{i}") for i in range(n)] for name, n in counts.items()}


def _evaluated(run: Path, mean_return: float) -> Path:
    """Evaluate ``run`` on test tasks, then set the mean return its summary holds."""
    evaluate(run, "test", progress=False)
    _set(run, mean_return)
    return run


def _set(run: Path, mean_return: float) -> None:
    path = run / "eval" / "test.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "mean_return": mean_return}))


def _args(runs: dict[str, list[Path]], *names: str) -> list[str]:
    out = []
    for name in names:
        out += [f"--{name}", *map(str, runs[name])]
    return out


def test_compare_shows_the_bounds_and_each_groups_share(trained, tmp_path, monkeypatch):
    runs = _copies(trained, tmp_path, oracle=2, markov=1, agent=3)
    for run, value in zip(runs["agent"], (18.0, 34.0, 26.0), strict=True):  # shares 0.2, 0.6, 0.4
        _evaluated(run, value)
    # the bound runs are not evaluated yet: compare evaluates them on test tasks first
    values = {runs["oracle"][0]: 40.0, runs["oracle"][1]: 60.0, runs["markov"][0]: 10.0}
    real, seen = bounds_module.evaluate, []

    def evaluate_then_set(run_dir, split="test", *args, **kwargs):
        summary = real(run_dir, split, *args, **kwargs)
        seen.append((Path(run_dir), split))
        _set(Path(run_dir), values[Path(run_dir)])
        return summary

    monkeypatch.setattr(bounds_module, "evaluate", evaluate_then_set)
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, runs["agent"]), *_args(runs, "oracle", "markov"), "--out", str(out)]) == 0
    assert sorted(seen) == sorted((r, "test") for r in values)
    text = (out / "compare.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| config"))
    assert header.endswith(f"| {SHARE} |")
    assert "| agent | 3 |" in text and text.count("| agent | 3 |") == 1
    assert next(line for line in text.splitlines() if line.startswith("| agent")).endswith("| 40% [30%, 50%] |")
    assert "## Bounds" in text
    assert "| oracle (task in the observation) | 2 | 50 [45, 55] |" in text
    assert "| Markov (raw observation) | 1 | 10 [10, 10] |" in text
    assert "Gap (oracle minus Markov, medians): 40." in text
    assert all(str(r) in text for r in values)  # the bound runs are named


def test_report_gives_the_runs_share(trained, tmp_path, capsys):
    runs = _copies(trained, tmp_path, oracle=1, markov=2, agent=1)
    _evaluated(runs["oracle"][0], 50.0)
    _evaluated(runs["markov"][0], 5.0), _evaluated(runs["markov"][1], 15.0)  # median 10, gap 40
    agent = _evaluated(runs["agent"][0], 26.0)
    assert main(["report", str(agent), *_args(runs, "oracle", "markov"), "--no-video", "--no-progress"]) == 0
    text = (agent / "report.md").read_text()
    assert "## Bounds" in text and f"mean_return 26 -> **{SHARE}: 40%**" in text
    report = json.loads((agent / "metrics.json").read_text())["report"]
    assert report["gap_share"] == pytest.approx(0.4)
    assert report["bounds"]["gap"] == pytest.approx(40.0) and report["bounds"]["markov"] == pytest.approx(10.0)
    assert report["bounds"]["oracle_runs"] == [str(runs["oracle"][0])]
    capsys.readouterr()


def test_bounds_that_are_not_separated_are_refused(trained, tmp_path, capsys):
    runs = _copies(trained, tmp_path, oracle=1, markov=1, agent=1)
    _evaluated(runs["oracle"][0], 10.0), _evaluated(runs["markov"][0], 12.0), _evaluated(runs["agent"][0], 11.0)
    out = tmp_path / "cmp"
    assert main(["compare", str(runs["agent"][0]), *_args(runs, "oracle", "markov"), "--out", str(out)]) == 2
    assert "the bounds are not separated; train them longer or check the runs" in stderr_without_traceback(capsys)
    assert not out.exists()
    assert main(["report", str(runs["agent"][0]), *_args(runs, "oracle", "markov"), "--no-video",
                 "--no-progress"]) == 2  # fmt: skip
    assert "the bounds are not separated" in stderr_without_traceback(capsys)
    assert not (runs["agent"][0] / "report.md").exists()


def test_one_bound_alone_is_refused(trained, tmp_path, capsys):
    runs = _copies(trained, tmp_path, oracle=1, markov=1, agent=1)
    agent = str(runs["agent"][0])
    assert main(["compare", agent, *_args(runs, "oracle"), "--out", str(tmp_path / "cmp")]) == 2
    err = stderr_without_traceback(capsys)
    assert "--oracle was given without --markov" in err and "Pass --markov RUN_DIR..." in err
    assert main(["report", agent, *_args(runs, "markov"), "--no-video", "--no-progress"]) == 2
    assert "--markov was given without --oracle" in stderr_without_traceback(capsys)
    assert not (tmp_path / "cmp").exists() and not list(runs["agent"][0].glob("eval/*"))


def _retask(run: Path, **changes) -> Path:
    """Edit the task a run's config names (only its config is read before the refusal)."""
    data = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**data, **changes}, sort_keys=False))
    return run


@pytest.mark.parametrize(
    "changes, named",
    [({"env": "neuromod_rl/TwoArmedBanditDependent-v0", "env_kwargs": {}}, "neuromod_rl/TwoArmedBanditDependent-v0"),
     ({"env_kwargs": {"distance_range": [1, 3], "episode_length": 9}}, "'distance_range': [1, 3]"),
     ({"wrappers": [{"Trial": {"episodes": 3}}, "PrevActionReward"]}, "3-episode trials")],
    ids=["env id", "env_kwargs", "trial episodes"],
)
def test_bounds_on_another_task_are_refused(trained, tmp_path, capsys, changes, named):
    runs = _copies(trained, tmp_path, oracle=1, markov=1, agent=1)
    agent = str(_retask(runs["agent"][0], **changes))
    assert main(["compare", agent, *_args(runs, "oracle", "markov"), "--out", str(tmp_path / "cmp")]) == 2
    err = stderr_without_traceback(capsys)
    assert f"run {agent} is on" in err and named in err and "Pass bounds trained on the same env" in err
    assert not list(runs["oracle"][0].glob("eval/*"))  # refused before anything is evaluated
    assert main(["report", agent, *_args(runs, "oracle", "markov"), "--no-video", "--no-progress"]) == 2
    assert named in stderr_without_traceback(capsys)
    # an oracle on another task than the Markov runs: refused as well
    _retask(runs["oracle"][0], **changes)
    assert main(["compare", str(runs["markov"][0]), *_args(runs, "oracle", "markov"), "--out",
                 str(tmp_path / "cmp")]) == 2  # fmt: skip
    assert "the bound runs are on different tasks" in stderr_without_traceback(capsys)
