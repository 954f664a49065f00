"""The command line of ``neuromod_rl.zoo``: rl-zoo3's flags go through unchanged, the shipped zoo file is
added only where ``train`` of a plastic algorithm names none, and ``--algo es`` is refused before rl-zoo3
is imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from neuromod_rl.zoo import PLASTIC_ALGOS, shipped_conf
from neuromod_rl.zoo.__main__ import main
from neuromod_rl.zoo.arguments import ZooUsageError, zoo_arguments

ENV = ["--env", "neuromod_rl/Recall-v0"]


@pytest.mark.parametrize("algo", PLASTIC_ALGOS)
def test_train_of_a_plastic_algorithm_reads_the_shipped_zoo_file(algo):
    args = ["--algo", algo, *ENV, "-n", "100"]
    assert zoo_arguments("train", args) == [*args, "--conf-file", str(shipped_conf(algo))]
    assert zoo_arguments("train", [f"--algo={algo}", *ENV])[-2:] == ["--conf-file", str(shipped_conf(algo))]


@pytest.mark.parametrize("conf", [["-conf", "mine.yml"], ["--conf-file", "mine.yml"], ["--conf-file=mine.yml"],
                                  ["--conf", "mine.yml"]])  # fmt: skip
def test_a_zoo_file_named_on_the_command_line_is_the_one_used(conf):
    args = ["--algo", "plastic_ppo", *ENV, *conf]
    assert zoo_arguments("train", args) == args


@pytest.mark.parametrize(("command", "args"), [
    ("train", ["--algo", "ppo_lstm", *ENV, "--gym-packages", "neuromod_rl.agents"]),  # rl-zoo3's own files
    ("train", ["--env", "CartPole-v1"]),  # rl-zoo3's default algorithm
    ("enjoy", ["--algo", "plastic_ppo", *ENV, "-f", "logs", "--no-render"]),
    ("record_video", ["--algo", "plastic_sac", "--env", "neuromod_rl/PendulumNoVel-v1", "-n", "50"]),
    ("push_to_hub", ["--algo", "plastic_ppo", *ENV, "-f", "logs", "-orga", "me"]),
])  # fmt: skip
def test_other_algorithms_and_scripts_get_their_flags_unchanged(command, args):
    assert zoo_arguments(command, args) == args


@pytest.mark.parametrize("command", ["train", "enjoy", "record_video"])
def test_es_is_refused_with_exit_2_naming_neuromod_rl_train(command, capsys):
    assert main([command, "--algo", "es", "--env", "neuromod_rl/DelayedCue-v0"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("neuromod-rl-zoo: error: --algo es is not offered")
    assert "`neuromod-rl train es_delayed_cue`" in err and "algo: es" in err


def test_an_unknown_script_exits_2_and_help_lists_the_scripts(capsys):
    assert main(["plot_everything"]) == 2
    assert "unknown command 'plot_everything'; choose one of train, enjoy, record_video, push_to_hub" in (
        capsys.readouterr().err)
    assert main(["--help"]) == 0 and main([]) == 2
    assert "{train,enjoy,record_video,push_to_hub}" in capsys.readouterr().out
    with pytest.raises(ZooUsageError):
        zoo_arguments("train", ["--algo=es"])


def test_the_console_script_is_installed_and_answers_help():
    script = Path(sys.executable).parent / "neuromod-rl-zoo"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "usage: neuromod-rl-zoo" in proc.stdout
