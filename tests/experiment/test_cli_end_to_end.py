"""The whole workflow through the CLI on a tiny PlasticPPO config: train -> eval -> report -> resume
-> compare -> export and reload; plus the console script in a subprocess and bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from support import only_run, write_config

from neuromod_rl.cli import main


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_train_eval_report_resume_compare_export(tmp_path, trained_run, capsys):
    run = trained_run
    # train: the run directory has everything the issue lists
    assert (run / "config.yaml").is_file() and (run / "model.zip").is_file()
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 80
    assert list((run / "monitor").glob("*.monitor.csv"))
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert _metrics(run)["train"]["num_timesteps"] == 80
    assert "plastic_ppo" in (run / "config.yaml").read_text()

    # eval on training tasks
    assert main(["eval", str(run), "--tasks", "train", "--episodes", "3", "--no-progress"]) == 0
    summary = json.loads((run / "eval" / "train.json").read_text())
    assert summary["episodes"] == 3 and summary["mean_length"] == 10
    with np.load(run / "eval" / "train.npz") as traces:
        assert traces["rewards"].shape == (3, 10)
        assert np.array_equal(traces["returns"], traces["rewards"].sum(1))

    # report: every plot the issue asks for a bandit with a plastic policy, as real PNGs
    assert main(["report", str(run), "--episodes", "4", "--no-progress"]) == 0
    report = (run / "report.md").read_text()
    for name in ("adaptation", "regret", "learning_curve", "fast_weights", "modulation"):
        png = run / "plots" / f"{name}.png"
        assert f"plots/{name}.png" in report
        with Image.open(png) as im:
            assert im.format == "PNG" and im.size[0] > 200
    assert "thompson" in report and "ucb1" in report
    metrics = _metrics(run)
    assert metrics["report"]["regret"]["agent"] == pytest.approx(metrics["eval_test"]["mean_cumulative_regret"])

    # resume a finished run to train longer
    assert main(["train", "--resume", str(run), "--set", "n_timesteps=100", "--no-progress"]) == 0
    assert _metrics(run)["train"]["num_timesteps"] == 100
    assert len(list((run / "monitor").glob("*.monitor.csv"))) == 2

    # compare with a second seed of the same config
    runs2 = tmp_path / "runs2"
    assert main(["train", str(write_config(tmp_path / "c.yaml")), "--seed", "1", "--runs-dir", str(runs2),
                 "--no-progress"]) == 0
    other = only_run(runs2)
    out = tmp_path / "cmp"
    assert main(["compare", str(run), str(other), "--out", str(out)]) == 0
    text = (out / "compare.md").read_text()
    assert "| tiny | 2 |" in text
    assert (out / "learning_curves.png").is_file() and (out / "adaptation.png").is_file()

    # export: weights only, read back without unpickling, and the rebuilt policy acts identically
    assert main(["export", str(run), "--format", "safetensors"]) == 0
    tensors = load_file(str(run / "model.safetensors"))
    from neuromod_rl.agents import PlasticPPO
    from neuromod_rl.experiment.export import load_exported_model

    original = PlasticPPO.load(run / "model.zip")
    assert set(tensors) == set(original.policy.state_dict())
    rebuilt = load_exported_model(run / "model.safetensors")
    obs = np.random.default_rng(0).random((5, 4)).astype(np.float32)
    s1 = s2 = None
    for t in range(5):
        start = np.array([t == 0])
        a1, s1 = original.predict(obs[t:t + 1], state=s1, episode_start=start, deterministic=True)
        a2, s2 = rebuilt.predict(obs[t:t + 1], state=s2, episode_start=start, deterministic=True)
        assert np.array_equal(a1, a2) and np.allclose(s1, s2)
    for k, v in original.policy.state_dict().items():
        assert torch.equal(tensors[k], v)
    capsys.readouterr()


def test_bad_inputs_exit_2_with_a_message(tmp_path, trained_run, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "not a neuromod-rl run directory" in capsys.readouterr().err
    assert main(["eval", str(trained_run), "--episodes", "0"]) == 2
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["bench", "nosuch"]) == 2
    assert main(["train", "--resume", str(trained_run), "--set", "n_envs=3"]) == 2
    assert "cannot be used with --resume" in capsys.readouterr().err


def test_corrupt_checkpoint_and_model_are_reported_and_kept(tmp_path, tiny_config, capsys):
    runs = tmp_path / "runs"
    assert main(["train", str(tiny_config), "--runs-dir", str(runs), "--no-progress",
                 "--set", "n_timesteps=40"]) == 0
    run = only_run(runs)
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    state = run / "checkpoints" / latest["state"]
    state.write_bytes(b"garbage")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--set", "n_timesteps=60", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and state.name in err and "Traceback" not in err
    assert state.is_file() and (run / "model.zip").is_file()  # nothing deleted on the user's behalf
    (run / "model.zip").write_bytes(b"not a zip")
    assert main(["eval", str(run), "--no-progress"]) == 2
    assert "cannot load the model" in capsys.readouterr().err


def test_console_script_runs_as_a_subprocess(tmp_path):
    script = Path(sys.executable).with_name("neuromod-rl")
    assert script.is_file(), "install the package (pip install -e .) to get the console script"
    out = subprocess.run([str(script), "envs"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "neuromod_rl/TwoArmedBanditDependent-v0" in out.stdout and "neuromod_rl/CrippledAnt-v0" in out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nenv: [unclosed\n")
    out = subprocess.run([str(script), "train", str(bad)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "not valid YAML" in out.stderr and "Traceback" not in out.stderr
