"""``neuromod-rl sweep``: a config over seeds and a search space on Ray Tune (real local Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support import write_config

from neuromod_rl.cli import main

SPACE = {"samples": 2, "space": {"hyperparameters.learning_rate": {"loguniform": [1.0e-4, 1.0e-2]},
                                 "policy_kwargs.hidden_size": {"choice": [4, 8]}}}  # fmt: skip


def write_space(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_two_trial_sweep_makes_two_runs_and_a_comparison(tmp_path, ray_session, capsys):
    cfg = write_config(tmp_path / "tiny.yaml")
    space = write_space(tmp_path / "space.yaml", SPACE)
    runs = tmp_path / "runs"
    args = ["--search", str(space), "--seeds", "1", "--rungs", "2", "--runs-dir", str(runs)]
    assert main(["sweep", str(cfg), *args]) == 0
    (sweep_dir,) = runs.iterdir()
    summary = json.loads((sweep_dir / "sweep.json").read_text())
    assert len(summary["trials"]) == 2 and all(t["error"] is None for t in summary["trials"])
    run_dirs = [Path(d) for t in summary["trials"] for d in t["run_dirs"]]
    assert len(run_dirs) == 2 and all((d / "model.zip").is_file() and d.parent == sweep_dir for d in run_dirs)
    for trial in summary["trials"]:
        assert set(trial["point"]) == set(SPACE["space"])
        saved = yaml.safe_load((Path(trial["run_dirs"][0]) / "config.yaml").read_text())
        assert saved["policy_kwargs"]["hidden_size"] == trial["point"]["policy_kwargs.hidden_size"]
        lr = trial["point"]["hyperparameters.learning_rate"]
        assert saved["hyperparameters"]["learning_rate"] == pytest.approx(lr)
        # trained rung by rung (40 steps, then resumed to 80) unless ASHA stopped it after the first rung
        assert saved["n_timesteps"] == 40 * trial["rungs_done"] and trial["rungs_done"] in (1, 2)
    assert max(t["rungs_done"] for t in summary["trials"]) == 2  # ASHA lets the first trial at a rung go on
    comparison = (sweep_dir / "compare" / "compare.md").read_text()
    assert all(d.name.rsplit("-", 2)[0] in comparison for d in run_dirs)  # one group per trial
    assert "Sweep:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "space, message",
    [({"space": {}}, "non-empty `space:`"),
     ({"space": {"hyperparameters.gamma": {"normal": [0, 1]}}}, "must be one of {name: args}"),
     ({"space": {"hyperparameters.gamma": {"uniform": [0.9]}}}, "needs a list of bounds"),
     ({"space": {"hyperparameters.gama": {"uniform": [0.9, 0.99]}}}, "`hyperparameters.gama` is not an argument"),
     ({"space": {"hyperparameters.gamma": {"uniform": [0.9, 0.99]}}, "budget": 3}, "unknown keys ['budget']")],
)  # fmt: skip
def test_bad_search_spaces_are_user_errors(tmp_path, capsys, space, message):
    cfg = write_config(tmp_path / "tiny.yaml")
    path = write_space(tmp_path / "space.yaml", space)
    assert main(["sweep", str(cfg), "--search", str(path), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing started


def test_bad_sweep_options_are_user_errors(tmp_path, capsys):
    cfg = write_config(tmp_path / "tiny.yaml")
    assert main(["sweep", str(cfg), "--ray-address", "nowhere", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "--ray-address 'nowhere' is not valid" in capsys.readouterr().err
    assert main(["sweep", str(cfg), "--metric", "score", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "must be <section>/<key>" in capsys.readouterr().err
