"""Registration: every id exists, passes both env checkers, and is reachable the ways users reach it."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import neuromod_rl
from neuromod_rl.envs.registration import ENV_IDS, ENV_SPECS, register_envs

REQUIRED = [
    "TwoArmedBandit", "CueReward", "Maze", "TMaze", "Harlow", "DelayedCue", "HalfCheetahVel",
    "HalfCheetahDir", "AntDir", "AntGoal", "CrippledHalfCheetah", "CrippledAnt",
    "HalfCheetahRandParams", "HopperRandParams",
]  # fmt: skip
REPO = Path(__file__).resolve().parents[2]
# MuJoCo observations are unbounded; Gymnasium's checker warns about that for its own v5 envs too
UNBOUNDED = ("minimum value is -infinity", "maximum value is infinity")
# the velocity-masked tasks keep Gymnasium's classic envs as they are, with the checker's notes on them
UPSTREAM = (*UNBOUNDED, "recommend using a symmetric and normalized space", "symmetric and normalized Box action")


def test_required_ids_registered_on_import():
    assert neuromod_rl.__version__
    for name in REQUIRED:
        assert f"neuromod_rl/{name}-v0" in ENV_IDS
    for env_id in ENV_IDS:
        assert env_id in gym.registry, env_id


def test_register_envs_is_idempotent():
    before = {env_id: gym.registry[env_id] for env_id in ENV_IDS}
    register_envs()
    register_envs()
    assert all(gym.registry[env_id] is spec for env_id, spec in before.items())


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_env_checkers_pass(env_id):
    spec = next(s for s in ENV_SPECS if s.id == env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = gym.make(env_id)
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env, warn=True)
        env.close()
    messages = [str(w.message) for w in caught]
    if spec.mujoco:
        messages = [m for m in messages if not any(u in m for u in UNBOUNDED)]
        # the time limit is the documented episode length (None: the task ends its episodes itself)
        assert spec.max_episode_steps in (None, int(spec.episode_length))
    if "NoVel" in env_id:
        messages = [m for m in messages if not any(u in m for u in UPSTREAM)]
    assert messages == []
    assert env.observation_space.dtype.name == "float32"


# make_vec_env asks for render_mode="rgb_array"; the classic tasks have no renderer
@pytest.mark.filterwarnings("ignore:.*render_mode='rgb_array':UserWarning")
def test_sb3_accepts_the_id_string():
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env("neuromod_rl/Maze-v0", n_envs=2, seed=0)
    obs = venv.reset()
    assert obs.shape == (2, 16)
    venv.close()


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_module_form_and_light_import_in_fresh_interpreters():
    make = _fresh_python(
        "import gymnasium, sys\n"
        "env = gymnasium.make('neuromod_rl:neuromod_rl/Maze-v0')\n"
        "obs, info = env.reset(seed=0)\n"
        "print(obs.shape, 'goal' in info['task'])\n"
    )
    assert make.returncode == 0, make.stderr
    assert make.stdout.strip() == "(16,) True"
    light = _fresh_python(
        "import sys, neuromod_rl, gymnasium\n"
        "assert 'neuromod_rl/HalfCheetahVel-v0' in gymnasium.registry\n"
        "print([m for m in ('mujoco', 'ray', 'wandb') if m in sys.modules])\n"
    )
    assert light.returncode == 0, light.stderr
    assert light.stdout.strip() == "[]"


def test_lazy_mujoco_classes_resolve():
    from neuromod_rl import envs

    assert envs.CrippledAnt.__name__ == "CrippledAnt"
    with pytest.raises(AttributeError):
        envs.NoSuchTask  # noqa: B018


def test_docs_table_lists_every_id():
    text = (REPO / "docs" / "envs.md").read_text()
    for env_id in ENV_IDS:
        assert f"`{env_id}`" in text, env_id
