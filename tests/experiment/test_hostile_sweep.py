"""``neuromod-rl sweep`` against hostile input: a search space is checked entirely before Ray starts
(exit 2 naming the entry, no sweep folder left behind), and failed trials are reported with their
own exception and make the sweep fail unless some trial succeeded."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import yaml
from support import write_config

from neuromod_rl.cli import main
from neuromod_rl.experiment import sweep as sweep_module
from neuromod_rl.experiment.errors import UserError

GOOD = {"hyperparameters.learning_rate": {"loguniform": [1.0e-4, 1.0e-2]}}


@pytest.fixture
def no_ray(monkeypatch):
    """A validation error must stop the sweep before Ray is even joined."""

    def refuse(address=None):
        raise AssertionError("Ray was started for a search space that should have been refused")

    monkeypatch.setattr("neuromod_rl.agents.es.ray_cluster.connect", refuse)


def _sweep(tmp_path: Path, space: dict | None, *extra: str) -> int:
    cfg = write_config(tmp_path / "tiny.yaml")
    args = ["sweep", str(cfg), "--runs-dir", str(tmp_path / "runs"), *extra]
    if space is not None:
        path = tmp_path / "space.yaml"
        path.write_text(yaml.safe_dump(space))
        args += ["--search", str(path)]
    return main(args)


@pytest.mark.parametrize(
    "space, extra, names",
    [({"samples": "many", "space": GOOD}, [], ["`samples`", "'many'"]),
     ({"samples": True, "space": GOOD}, [], ["`samples`"]),
     ({"metric": 5, "space": GOOD}, [], ["`metric`", "5"]),
     ({"mode": "maximum", "space": GOOD}, [], ["`mode`", "'maximum'"]),
     ({"space": {"n_envs.foo": {"choice": [1, 2]}}}, [], ["`n_envs.foo`", "`n_envs` is 2, not a mapping"]),
     ({"space": {"hyperparameters.gamma": {"uniform": ["a", "b"]}}}, [], ["`hyperparameters.gamma`", "numbers"]),
     ({"space": {"hyperparameters.learning_rate": {"loguniform": [0, 0.1]}}}, [],
      ["`hyperparameters.learning_rate`", "above 0"]),
     ({"space": {"hyperparameters.gamma": {"uniform": [0.99, 0.9]}}}, [], ["`hyperparameters.gamma`", "below"]),
     ({"space": {"policy_kwargs.hidden_size": {"randint": [8.5, 16]}}}, [], ["`policy_kwargs.hidden_size`",
                                                                               "integers"]),
     ({"space": {"hyperparameters.gamma": {"quniform": [0.9, 0.99, 0]}}}, [], ["`hyperparameters.gamma`", "step"]),
     ({"space": {"policy_kwargs.no_such_key": {"choice": [1, 2]}}}, [], ["`policy_kwargs.no_such_key`",
                                                                           "no_such_key"]),
     ({"space": {"policy_kwargs.hidden_size": {"choice": [8, -4]}}}, [], ["`policy_kwargs.hidden_size`", "-4"]),
     ({"space": {"seed": {"choice": [1, 2]}}}, [], ["`seed`", "--seeds"]),
     ({"space": {"hyperparameters..gamma": {"uniform": [0.9, 0.99]}}}, [], ["`hyperparameters..gamma`"]),
     ({"space": GOOD}, ["--samples", "0"], ["--samples"]),
     (None, ["--samples", "0"], ["--samples"]),
     (None, ["--max-concurrent", "0"], ["--max-concurrent"]),
     (None, ["--cpus-per-trial", "-1"], ["--cpus-per-trial"])],
)  # fmt: skip
def test_a_bad_search_space_or_option_exits_2_naming_it_before_ray_starts(tmp_path, capsys, no_ray, space, extra,
                                                                          names):
    assert _sweep(tmp_path, space, *extra) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "\x1b[" not in err
    for name in names:
        assert name in err, err
    assert not (tmp_path / "runs").exists()  # no empty sweep folder left behind


def _trial(score, error=None) -> dict:
    return {"point": {"hyperparameters.gamma": 0.9}, "score": score, "rungs_done": 1, "stopped_early": False,
            "score_per_rung": [] if score is None else [score], "run_dirs": [], "error": error}  # fmt: skip


def test_a_sweep_whose_trials_all_failed_raises_with_every_cause(tmp_path):
    trials = [_trial(None, "ValueError: first cause"), _trial(None, "KeyError: 'second cause'")]
    with pytest.raises(UserError) as err:
        sweep_module._summarize(tmp_path, trials, "train/x", "max", "tiny")
    assert "every trial (2) failed" in str(err.value)
    assert "first cause" in str(err.value) and "second cause" in str(err.value)
    assert json.loads((tmp_path / "sweep.json").read_text())["trials"][0]["error"] == "ValueError: first cause"


def test_a_sweep_with_some_failed_trials_succeeds_and_reports_each_failure(tmp_path, capsys):
    trials = [_trial(1.0), _trial(None, "ValueError: first cause"), _trial(None, "KeyError: 'second cause'")]
    assert sweep_module._summarize(tmp_path, trials, "train/x", "max", "tiny") == tmp_path
    err = capsys.readouterr().err
    assert "2 of 3 trial(s) failed" in err and "first cause" in err and "second cause" in err
    assert "Best of 3 trial(s)" in err


def test_the_error_of_a_ray_task_is_its_cause_in_plain_text():
    from ray.exceptions import RayTaskError

    wrapped = RayTaskError("run_trial", "Traceback ...\nValueError: boom", ValueError("boom"),
                           proctitle="\x1b[36mray::ImplicitFunc.train()\x1b[39m").as_instanceof_cause()  # fmt: skip
    assert sweep_module.error_text(wrapped) == "ValueError: boom"
    assert sweep_module.error_text(UserError("run x has no metric")) == "run x has no metric"
    assert sweep_module.error_text(RuntimeError("\x1b[31mred\x1b[0m\nsecond line")) == "RuntimeError: red second line"


@pytest.mark.slow
def test_a_one_rung_sweep_succeeds(tmp_path, ray_session, capsys):
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert _sweep(tmp_path, None, "--rungs", "1") == 0
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # not Tune's
    (sweep_dir,) = (tmp_path / "runs").iterdir()
    (trial,) = json.loads((sweep_dir / "sweep.json").read_text())["trials"]
    assert trial["error"] is None and trial["rungs_done"] == 1 and len(trial["run_dirs"]) == 1
    assert "failed" not in capsys.readouterr().err


@pytest.mark.slow
def test_a_sweep_whose_trials_fail_exits_2_with_the_real_exception(tmp_path, ray_session, capsys):
    assert _sweep(tmp_path, None, "--rungs", "1", "--metric", "train/no_such_metric") == 2
    err = capsys.readouterr().err
    summary = err[err.index("neuromod-rl sweep: error:"):]
    assert "has no metric 'train/no_such_metric'" in summary and "\x1b[" not in summary
    assert "Best of" not in err
    (sweep_dir,) = (tmp_path / "runs").iterdir()
    (trial,) = json.loads((sweep_dir / "sweep.json").read_text())["trials"]
    assert "has no metric 'train/no_such_metric'" in trial["error"]

