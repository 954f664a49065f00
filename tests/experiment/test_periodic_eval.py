"""Evaluation during training (``eval.every_steps``): held-out tasks every N env steps, ``eval/*`` in the
progress CSV, TensorBoard and W&B; it leaves the trained agent unchanged; bad values are refused."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from support import TINY, only_run, write_config

from neuromod_rl.cli import main
from neuromod_rl.experiment import train as tr
from neuromod_rl.experiment.config import load_config, validate
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.evaluate import load_model


def _eval_rows(run) -> pd.DataFrame:
    frames = [pd.read_csv(p) for p in sorted((run / "tb").glob("progress-*.csv"))]
    df = pd.concat(frames, ignore_index=True)
    return df[df["eval/mean_return"].notna()] if "eval/mean_return" in df else df.iloc[:0]


def test_training_logs_held_out_evaluations_every_n_steps(tmp_path):
    cfg = write_config(tmp_path / "tiny.yaml", eval={**TINY["eval"], "every_steps": 40, "periodic_episodes": 3})
    runs = tmp_path / "runs"
    assert main(["train", str(cfg), "--runs-dir", str(runs), "--no-progress", "--wandb"]) == 0
    import wandb

    wandb.teardown()  # closes the offline run's files (what the CLI's exit does)
    run = only_run(runs)
    rows = _eval_rows(run)
    assert rows["time/total_timesteps"].tolist() == [40, 80]
    assert ((rows["eval/episodes"] == 3) & rows["eval/mean_length"].eq(10)).all()  # 10-pull bandit episodes
    assert rows["eval/mean_return"].between(0, 10).all()
    events = b"".join(p.read_bytes() for p in (run / "tb").glob("events.out.tfevents.*"))
    assert b"eval/mean_return" in events
    wandb_log = next((run / "wandb").glob("offline-run-*/run-*.wandb")).read_bytes()
    assert b"eval/mean_return" in wandb_log and b"eval/adaptation_gain" in wandb_log


def test_no_evaluation_during_training_by_default(trained_run):
    assert _eval_rows(trained_run).empty


#: one agent of each kind: on-policy with normalised observations (evaluation reads the live statistics),
#: off-policy, and RecurrentPPO (an LSTM state of its own)
AGENTS = {
    "plastic_ppo_normalize": {"normalize": True},
    "plastic_sac": {"algo": "plastic_sac", "env": "neuromod_rl/PendulumNoVel-v1",
                    "env_kwargs": {"max_episode_steps": 12}, "policy_kwargs": {"hidden_size": 4, "net_arch": [8]},
                    "hyperparameters": {"sequence_length": 4, "burn_in": 1, "batch_size": 8, "learning_starts": 10,
                                        "buffer_size": 1000}},
    "recurrent_ppo": {"algo": "recurrent_ppo", "policy": "MlpLstmPolicy", "policy_kwargs": {"lstm_hidden_size": 8}},
}


def _final_weights(tmp_path, name: str, every_steps: int, changes: dict) -> dict[str, torch.Tensor]:
    path = write_config(tmp_path / f"{name}.yaml", **changes,
                        eval={**TINY["eval"], "every_steps": every_steps, "periodic_episodes": 2})
    cfg = load_config(path)
    result = tr.train(cfg, tr.TrainOptions(runs_dir=tmp_path / name, progress=False))
    return load_model(result.run, cfg).policy.state_dict()


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_evaluating_during_training_does_not_change_the_trained_agent(tmp_path, agent):
    # sampled evaluation actions draw random numbers: they must not come out of the training's stream
    plain = _final_weights(tmp_path, "plain", 0, AGENTS[agent])
    evaluated = _final_weights(tmp_path, "evaluated", 20, AGENTS[agent])
    assert len(_eval_rows(only_run(tmp_path / "evaluated"))) == 4  # at steps 20, 40, 60 and 80
    assert plain.keys() == evaluated.keys()
    for key in plain:
        torch.testing.assert_close(plain[key], evaluated[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("key, value", [("every_steps", -5), ("every_steps", 2.5), ("every_steps", "1e4"),
                                        ("every_steps", True), ("periodic_episodes", 0),
                                        ("periodic_episodes", 1.0)])
def test_bad_evaluation_settings_are_refused_with_the_key_and_an_example(key, value):
    with pytest.raises(UserError, match=rf"key `eval\.{key}` has value .*e\.g\. eval\.{key}: \d+"):
        validate({**TINY, "eval": {**TINY["eval"], key: value}})


def test_zero_turns_evaluation_during_training_off():
    assert validate({**TINY, "eval": {"every_steps": 0}}).eval.every_steps == 0
    assert validate(dict(TINY)).eval.every_steps == 0
