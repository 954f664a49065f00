"""The shipped zoo files (``configs/zoo/``): an entry for every task family each algorithm can run, plastic
cores that validate, minibatches of whole sequences, the memory suite's settings for the velocity-masked
tasks, shipped as package data, and every entry builds its model through rl-zoo3's experiment manager."""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import gymnasium as gym
import pytest
import torch
import yaml
from support import run_offline

from neuromod_rl.agents import CoreConfig
from neuromod_rl.agents.common.core_factory import PLASTIC_KEYS
from neuromod_rl.envs.registration import ENV_SPECS
from neuromod_rl.studies.memory.pomdp_suite import TASKS
from neuromod_rl.zoo import PLASTIC_ALGOS, RECURRENT_PPO_CONF, shipped_conf

ROOT = Path(__file__).resolve().parents[2]
FILES = {algo: yaml.safe_load(shipped_conf(algo).read_text()) for algo in PLASTIC_ALGOS}
STOCK = yaml.safe_load(RECURRENT_PPO_CONF.read_text())
ALL = {**FILES, "ppo_lstm": STOCK}
SPECS = {spec.id: spec for spec in ENV_SPECS}
RECALL_IDS = {spec.id for spec in ENV_SPECS if spec.entry_point.startswith("neuromod_rl.envs.recall:")}
NOVEL = {task.env_id: task for task in TASKS.values()}
CONTINUOUS_NOVEL = {"neuromod_rl/PendulumNoVel-v1", "neuromod_rl/MountainCarContinuousNoVel-v0"}
PPO_ONLY = ("batch_size", "n_epochs", "clip_range")
RUN_KEYS = {"n_envs", "n_timesteps", "normalize", "policy", "policy_kwargs"}


def _policy_kwargs(entry: dict) -> dict:
    """What rl-zoo3 makes of an entry's ``policy_kwargs`` string (it evaluates it with torch's ``nn``)."""
    return eval(entry.get("policy_kwargs", "dict()"), {"__builtins__": {}, "dict": dict, "nn": torch.nn})


def _same(value, expected) -> bool:
    """Equal settings, reading rl-zoo3's linear schedules ``lin_X`` by their number."""
    if isinstance(value, str) and isinstance(expected, str) and value.startswith("lin_"):
        return expected.startswith("lin_") and float(value[4:]) == float(expected[4:])
    return value == expected


def test_every_algorithm_has_entries_for_each_task_family_it_can_run():
    for name in ("plastic_ppo", "plastic_a2c", "ppo_lstm"):
        assert RECALL_IDS | set(NOVEL) <= set(ALL[name]), name
    for name in ("plastic_sac", "plastic_td3"):  # continuous actions only
        assert set(FILES[name]) & (set(NOVEL) | RECALL_IDS) == CONTINUOUS_NOVEL
    for name, entries in FILES.items():
        assert any(SPECS[env_id].mujoco for env_id in entries), f"{name}: no MuJoCo adaptation task"


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_entry_names_a_registered_task_and_a_plastic_core_that_validates(name):
    for env_id, entry in ALL[name].items():
        assert env_id in gym.registry and entry["policy"] == "MlpPlasticPolicy"
        CoreConfig(**{k: v for k, v in _policy_kwargs(entry).items() if k in PLASTIC_KEYS})
        if name in ("plastic_sac", "plastic_td3") and not SPECS[env_id].mujoco:  # MuJoCo bodies: Box actions
            env = gym.make(env_id)
            assert isinstance(env.action_space, gym.spaces.Box), env_id
            env.close()


def test_minibatches_are_whole_training_sequences():
    for env_id, entry in FILES["plastic_ppo"].items():  # bptt_length "episode": a sequence is the rollout
        assert entry["batch_size"] % entry["n_steps"] == 0, env_id
    assert not any(key in entry for entry in FILES["plastic_a2c"].values() for key in PPO_ONLY)
    for name in ("plastic_sac", "plastic_td3"):
        for env_id, entry in FILES[name].items():
            assert entry["batch_size"] % entry["sequence_length"] == 0, (name, env_id)


@pytest.mark.parametrize("name", ["plastic_ppo", "plastic_a2c", "ppo_lstm"])
def test_velocity_masked_entries_follow_the_memory_suite(name):
    """The settings of ``pomdp_suite.TASKS`` (rl-zoo3's tuned ppo_lstm values): PlasticPPO's batch_size is
    the minibatch it trains on with them (whole rollouts of n_steps), A2C drops PPO's own keys."""
    for env_id, task in NOVEL.items():
        entry = ALL[name][env_id]
        expected = dict(task.hyperparameters)
        if name == "plastic_ppo":
            n_steps = expected["n_steps"]
            expected["batch_size"] = n_steps * max(1, expected.get("batch_size", 64) // n_steps)
        if name == "plastic_a2c":
            expected = {k: v for k, v in expected.items() if k not in PPO_ONLY}
        assert (entry["n_envs"], entry["n_timesteps"], entry.get("normalize", False)) == (
            task.n_envs, task.budget, task.normalize), env_id
        assert set(entry) - RUN_KEYS == set(expected), env_id
        assert all(_same(entry[k], v) for k, v in expected.items()), env_id
        heads = {k: torch.nn.ReLU if v == "relu" else v for k, v in task.heads.items()}
        assert _policy_kwargs(entry) == heads, env_id


def test_the_zoo_files_ship_as_package_data(tmp_path):
    line = re.search(r'^"neuromod_rl.configs" = (\[.*\])$', (ROOT / "pyproject.toml").read_text(), re.M)
    patterns = ast.literal_eval(line[1])
    shipped = sorted(path.name for path in (ROOT / "configs" / "zoo").iterdir())
    assert all(any(fnmatch.fnmatch(f"zoo/{name}", p) for p in patterns) for name in shipped), patterns
    # the installed package (found from outside the checkout) holds them
    code = "from neuromod_rl.zoo import ZOO_CONFIG_DIR; print(sorted(p.name for p in ZOO_CONFIG_DIR.iterdir()))"
    proc = run_offline(["-c", code], tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == str(shipped), proc.stdout + proc.stderr


BUILD_EVERY_ENTRY = """
import argparse, warnings, yaml
from neuromod_rl.zoo import PLASTIC_ALGOS, RECURRENT_PPO_CONF, shipped_conf
from neuromod_rl.zoo.registry import register
register()
from rl_zoo3.exp_manager import ExperimentManager
files = {algo: shipped_conf(algo) for algo in PLASTIC_ALGOS}
files["ppo_lstm"] = RECURRENT_PPO_CONF
for algo, path in files.items():
    for env_id in yaml.safe_load(path.read_text()):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            manager = ExperimentManager(argparse.Namespace(), algo, env_id, "logs", eval_freq=-1, config=str(path),
                                        seed=0, verbose=0, device="cpu")
            model, _ = manager.setup_experiment()
        batch_warnings = [str(w.message) for w in caught if "mini-batch" in str(w.message)
                          or "training sequence" in str(w.message)]
        print("BUILT", algo, env_id, type(model).__name__, type(model.policy).__name__, batch_warnings, flush=True)
        model.env.close()
"""


@pytest.mark.slow
def test_every_shipped_entry_builds_its_model_through_rl_zoo3(tmp_path):
    proc = run_offline(["-c", BUILD_EVERY_ENTRY], tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    built = [line.split(" ", 5)[1:] for line in proc.stdout.splitlines() if line.startswith("BUILT ")]
    assert [(algo, env_id) for algo, env_id, *_ in built] == [(a, e) for a in ALL for e in ALL[a]]
    classes = {"plastic_ppo": ("PlasticPPO", "MlpPlasticPolicy"), "plastic_a2c": ("PlasticA2C", "MlpPlasticPolicy"),
               "plastic_sac": ("PlasticSAC", "PlasticSACPolicy"), "plastic_td3": ("PlasticTD3", "PlasticTD3Policy"),
               "ppo_lstm": ("RecurrentPPO", "MlpPlasticPolicy")}  # fmt: skip
    for algo, env_id, cls, policy, batch_warnings in built:
        assert (cls, policy) == classes[algo] and batch_warnings == "[]", (algo, env_id, batch_warnings)
