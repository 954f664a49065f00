"""Every registered ``neuromod_rl/*`` id renders an ``rgb_array`` frame after reset: the project's own
tasks, the NoVel tasks (pygame, from ``gymnasium[classic-control]``) and the MuJoCo tasks (off-screen,
``MUJOCO_GL=egl``, in a fresh process: MuJoCo picks its GL backend once, when it is first imported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import neuromod_rl  # noqa: F401  (registers the ids)
from neuromod_rl.envs.base import observation_image
from neuromod_rl.envs.registration import ENV_SPECS

MUJOCO = [s.id for s in ENV_SPECS if s.mujoco]
OTHERS = [s.id for s in ENV_SPECS if not s.mujoco]
NO_VEL = [i for i in OTHERS if "NoVel" in i]

_RENDER_MUJOCO = """
import json, sys
import gymnasium as gym
import neuromod_rl
frames = {}
for env_id in sys.argv[1:]:
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    frames[env_id] = [type(frame).__name__, str(frame.dtype), list(frame.shape), float(frame.std())]
    env.close()
print(json.dumps(frames))
"""


def _check_frame(frame, env_id: str) -> None:
    assert isinstance(frame, np.ndarray), (env_id, type(frame))
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3 and min(frame.shape[:2]) > 0, (
        env_id, frame.dtype, frame.shape)


def test_the_two_lists_cover_every_registered_id():
    registered = {i for i in gym.registry if i.startswith("neuromod_rl/")}
    assert registered == set(MUJOCO) | set(OTHERS) and len(MUJOCO) >= 8 and len(NO_VEL) == 4


@pytest.mark.parametrize("env_id", OTHERS)
def test_each_task_renders_an_rgb_frame_after_reset(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    try:
        assert "rgb_array" in env.metadata["render_modes"]
        obs, _ = env.reset(seed=0)
        frame = env.render()
        _check_frame(frame, env_id)
        if env_id in NO_VEL:  # Gymnasium's drawing of the scene (pygame)
            assert frame.std() > 0, f"{env_id} rendered a blank frame"
        else:  # the project's tasks draw what the agent sees
            np.testing.assert_array_equal(frame, observation_image(obs))
    finally:
        env.close()


def test_each_mujoco_task_renders_an_rgb_frame_off_screen_after_reset():
    backend = {"MUJOCO_GL": os.environ.get("MUJOCO_GL") or "egl"}
    backend["PYOPENGL_PLATFORM"] = backend["MUJOCO_GL"]
    proc = subprocess.run([sys.executable, "-c", _RENDER_MUJOCO, *MUJOCO], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **backend})
    assert proc.returncode == 0, proc.stderr[-3000:]
    frames = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(frames) == set(MUJOCO)
    for env_id, (kind, dtype, shape, std) in frames.items():
        assert kind == "ndarray" and dtype == "uint8" and len(shape) == 3 and shape[2] == 3, (env_id, dtype, shape)
        assert min(shape[:2]) > 0 and std > 0, (env_id, shape, std)
