"""The Optuna samplers of ``-optimize`` for the plastic algorithms: every draw is a model that builds,
with minibatches of whole training sequences, a plastic core that validates, and the converter turns the
trial's stored parameters back into the same hyperparameters (``--trial-id``). Sampled in a child
process (the samplers import rl-zoo3, which patches Gymnasium when imported)."""

from __future__ import annotations

import json

import pytest
from support import run_offline

from neuromod_rl.agents import CoreConfig
from neuromod_rl.plasticity.rules import get_rule_class
from neuromod_rl.zoo import PLASTIC_ALGOS

N_ENVS = 4
DRAWS = 12

SAMPLE = f"""
import json, warnings
import optuna
from stable_baselines3.common.env_util import make_vec_env
from neuromod_rl.experiment.algos import algo_class
from neuromod_rl.zoo.samplers import CONVERTERS, SAMPLERS
optuna.logging.set_verbosity(optuna.logging.WARNING)
envs = {{"plastic_ppo": "neuromod_rl/Recall-v0", "plastic_a2c": "neuromod_rl/Recall-v0",
        "plastic_sac": "neuromod_rl/PendulumNoVel-v1", "plastic_td3": "neuromod_rl/PendulumNoVel-v1"}}
for algo, sampler in SAMPLERS.items():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    env = make_vec_env(envs[algo], n_envs={N_ENVS} if algo in ("plastic_ppo", "plastic_a2c") else 1, seed=0)
    for _ in range({DRAWS}):
        trial = study.ask()
        hyper = sampler(trial, 1, {N_ENVS}, {{"using_her_replay_buffer": False, "her_kwargs": {{}}}})
        row = {{k: v for k, v in hyper.items() if k in ("n_steps", "bptt_length", "batch_size", "sequence_length",
                                                      "burn_in", "action_noise")}}
        row["plastic"] = {{k: v for k, v in hyper["policy_kwargs"].items() if k not in ("net_arch", "activation_fn")}}
        row["same_after_conversion"] = repr(CONVERTERS[algo](trial.params)) == repr(hyper)
        extra = {{"buffer_size": 2000}} if algo in ("plastic_sac", "plastic_td3") else {{}}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = algo_class(algo)("MlpPlasticPolicy", env, **hyper, **extra)
        row["built"] = type(model).__name__
        row["warnings"] = [str(w.message) for w in caught
                           if "sequence" in str(w.message) or "mini-batch" in str(w.message)]
        print("DRAW", json.dumps({{"algo": algo, **row}}), flush=True)
        study.tell(trial, 0.0)
"""


@pytest.fixture(scope="module")
def draws(tmp_path_factory) -> list[dict]:
    proc = run_offline(["-c", SAMPLE], tmp_path_factory.mktemp("samplers"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads(line[5:]) for line in proc.stdout.splitlines() if line.startswith("DRAW ")]


@pytest.mark.slow
def test_every_draw_builds_its_model_and_converts_back_the_same(draws):
    assert sorted({d["algo"] for d in draws}) == sorted(PLASTIC_ALGOS) and len(draws) == DRAWS * len(PLASTIC_ALGOS)
    classes = {"plastic_ppo": "PlasticPPO", "plastic_a2c": "PlasticA2C", "plastic_sac": "PlasticSAC",
               "plastic_td3": "PlasticTD3"}  # fmt: skip
    for d in draws:
        assert d["built"] == classes[d["algo"]] and d["same_after_conversion"], d
        assert d["warnings"] == [], d


@pytest.mark.slow
def test_on_policy_minibatches_are_whole_sequences_of_the_rollout(draws):
    on_policy = [d for d in draws if d["algo"] in ("plastic_ppo", "plastic_a2c")]
    assert {d["bptt_length"] == "episode" for d in on_policy} == {True, False}  # both kinds are drawn
    for d in on_policy:
        seq_len = d["n_steps"] if d["bptt_length"] == "episode" else d["bptt_length"]
        assert d["n_steps"] % seq_len == 0, d
        if d["algo"] == "plastic_ppo":
            assert d["batch_size"] % seq_len == 0 and 1 <= d["batch_size"] // seq_len <= N_ENVS, d
        else:
            assert "batch_size" not in d, d  # A2C trains on the whole rollout


@pytest.mark.slow
def test_off_policy_batches_are_whole_sequences_and_td3_explores_with_gaussian_noise(draws):
    for d in draws:
        if d["algo"] in ("plastic_sac", "plastic_td3"):
            assert d["batch_size"] % d["sequence_length"] == 0 and d["burn_in"] in (0, 4, 8, 16), d
            assert ("action_noise" in d) == (d["algo"] == "plastic_td3"), d


@pytest.mark.slow
def test_the_plastic_core_is_drawn_and_validates(draws):
    for d in draws:
        core = CoreConfig(**d["plastic"])
        takes_modulation = get_rule_class(core.rule).modulation != "never"
        assert (core.modulation is not None) == takes_modulation, d
    assert len({d["plastic"]["rule"] for d in draws}) > 3 and len({d["plastic"]["hidden_size"] for d in draws}) > 2
