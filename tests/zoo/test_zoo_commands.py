"""rl-zoo3's own scripts train, replay, tune and share the plastic algorithms, through ``python -m
neuromod_rl.zoo`` and through the stock ``python -m rl_zoo3.train``. rl-zoo3 runs in a child process
(importing it patches Gymnasium's ``TimeLimit`` for the whole process), offline, on one or two rollouts."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from sb3_contrib import RecurrentPPO
from support import run_offline

from neuromod_rl.agents import MlpPlasticPolicy, PlasticPPO
from neuromod_rl.zoo import RECURRENT_PPO_CONF

pytestmark = pytest.mark.slow

RECALL = "neuromod_rl/Recall-v0"
RUN = "neuromod_rl-Recall-v0"  # rl-zoo3's folder and file name for the env id
#: one Recall episode (52 steps) per env and rollout, 2 envs, one epoch over one minibatch of both sequences
TINY = ["-n", "104", "--seed", "0", "--eval-freq", "-1",
        "-params", "n_envs:2", "n_steps:52", "batch_size:104", "n_epochs:1"]  # fmt: skip


def zoo(*args: str, cwd: Path):
    return run_offline(["-m", "neuromod_rl.zoo", *args], cwd)


def _ok(proc) -> str:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The log folder of one rl-zoo3 ``train`` of plastic_ppo on Recall, from the shipped zoo file."""
    logs = tmp_path_factory.mktemp("zoo")
    out = _ok(zoo("train", "--algo", "plastic_ppo", "--env", RECALL, "-f", str(logs), *TINY, cwd=logs))
    # the installed copy of the shipped file (this process may see the checkout's)
    assert "Loading hyperparameters from: " in out and "neuromod_rl/configs/zoo/plastic_ppo.yml" in out
    return logs


def test_train_runs_plastic_ppo_with_the_shipped_zoo_file(trained):
    run = trained / "plastic_ppo" / f"{RUN}_1"
    model = PlasticPPO.load(run / f"{RUN}.zip")
    assert model.num_timesteps == 104 and isinstance(model.policy, MlpPlasticPolicy)
    # the file's plastic core (the command line changed only the rollout sizes)
    assert (model.policy.core_config.rule, model.policy.core_config.hidden_size) == ("neuromod", 64)
    assert (model.n_steps, model.batch_size, model.bptt_length) == (52, 104, "episode")
    assert {p.name for p in (run / RUN).iterdir()} >= {"config.yml", "args.yml", "command.txt"}


def test_enjoy_replays_the_trained_plastic_model(trained):
    out = _ok(zoo("enjoy", "--algo", "plastic_ppo", "--env", RECALL, "-f", str(trained), "--no-render",
                  "-n", "104", "--deterministic", cwd=trained))  # fmt: skip
    assert f"{RUN}_1/{RUN}.zip" in out
    assert "2 Episodes" in out and "Mean episode length: 52.00" in out


def test_stock_rl_zoo3_train_runs_recurrent_ppo_with_the_plastic_policy(tmp_path):
    """The other way round: rl-zoo3's own script, our package named only in --gym-packages."""
    _ok(run_offline(["-m", "rl_zoo3.train", "--algo", "ppo_lstm", "--env", RECALL, "--gym-packages",
                     "neuromod_rl.agents", "-conf", str(RECURRENT_PPO_CONF), "-f", str(tmp_path), *TINY],
                    tmp_path))  # fmt: skip
    model = RecurrentPPO.load(tmp_path / "ppo_lstm" / f"{RUN}_1" / f"{RUN}.zip")
    assert model.num_timesteps == 104 and isinstance(model.policy, MlpPlasticPolicy)


def _tiny_trial(**changes) -> dict:
    """Optuna parameters of the plastic_ppo sampler for a trial of one 32-step rollout per env."""
    params = dict(n_steps_pow=5, bptt_chunks_pow=0, one_minus_gamma=0.01, one_minus_gae_lambda=0.05,
                  learning_rate=1e-3, ent_coef=0.01, max_grad_norm=0.5, net_arch="tiny", activation_fn="tanh",
                  sequences_per_batch_pow=1, clip_range=0.2, n_epochs=1, core="rnn", rule="neuromod",
                  hidden_size=16, alpha_shape="full", modulation="fanout")  # fmt: skip
    return {**params, **changes}


def test_optimize_runs_two_trials_of_the_plastic_sampler(tmp_path):
    """``-optimize`` with the real sampler and rl-zoo3's study loop; the two trials are queued in the study
    beforehand (the sampler's suggestions return them), so the test trains two small models."""
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.log")))
    study = optuna.create_study(storage=storage, study_name="tiny", direction="maximize")
    study.enqueue_trial(_tiny_trial())
    study.enqueue_trial(_tiny_trial(bptt_chunks_pow=1, sequences_per_batch_pow=0, rule="hebbian",
                                    alpha_shape="neuron", core="lstm"))  # fmt: skip
    _ok(zoo("train", "--algo", "plastic_ppo", "--env", RECALL, "-optimize", "--n-trials", "2", "-n", "64",
            "--n-evaluations", "1", "--eval-episodes", "1", "--sampler", "random", "--pruner", "none",
            "--no-optim-plots", "--storage", str(tmp_path / "study.log"), "--study-name", "tiny",
            "-f", str(tmp_path), "--seed", "0", "-params", "n_envs:2", cwd=tmp_path))  # fmt: skip
    trials = optuna.load_study(storage=storage, study_name="tiny").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert all(-1.0 <= t.value <= 1.0 for t in trials)  # a Recall return
    shapes = [(t.user_attrs["bptt_length"], t.user_attrs["batch_size"]) for t in trials]
    assert shapes == [("episode", 64), (16, 16)]  # minibatches of whole sequences: 2 x 32 steps, 1 x 16
    assert list((tmp_path / "plastic_ppo").glob(f"report_{RUN}_2-trials-64-random-none_*.csv"))


def test_push_to_hub_loads_the_model_and_stops_at_the_offline_hub(trained):
    """Everything before the upload runs (rl-zoo3's script imports, with huggingface_sb3 3; the model
    loads); then the Hub refuses in offline mode, before any request leaves the machine."""
    proc = zoo("push_to_hub", "--algo", "plastic_ppo", "--env", RECALL, "-f", str(trained), "-orga", "nobody",
               "--no-render", cwd=trained)  # fmt: skip
    assert proc.returncode != 0
    assert f"Loading {trained}/plastic_ppo/{RUN}_1/{RUN}.zip" in proc.stdout
    assert "OfflineModeIsEnabled" in proc.stderr and "ImportError" not in proc.stderr
