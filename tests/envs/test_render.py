"""Classic tasks render what the agent sees, so SB3's make_vec_env (render_mode='rgb_array') is clean."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env

import neuromod_rl  # noqa: F401  (registers the ids)
from neuromod_rl.envs.base import observation_image

CLASSIC = ["TwoArmedBandit", "CueReward", "DelayedCue", "Harlow", "Maze", "TMaze"]


@pytest.mark.parametrize("name", CLASSIC)
def test_rgb_array_shows_the_current_observation(name):
    env = gym.make(f"neuromod_rl/{name}-v0", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    img = env.render()
    assert img.dtype == np.uint8 and img.shape == (12, 12 * obs.size, 3)
    np.testing.assert_array_equal(img, observation_image(obs))
    obs, *_ = env.step(env.action_space.sample())
    np.testing.assert_array_equal(env.render(), observation_image(obs))


def test_colours_encode_sign_and_size():
    img = observation_image(np.array([1.0, 0.0, -1.0, 0.5]), cell=1)[0]
    assert img[0].tolist() == [255, 0, 0] and img[1].tolist() == [255, 255, 255] and img[2].tolist() == [0, 0, 255]
    assert img[3][0] == 255 and 0 < img[3][1] < 255


def test_make_vec_env_gives_no_render_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_vec_env("neuromod_rl/DelayedCue-v0", n_envs=2, seed=0).close()


def test_unsupported_render_mode_is_named():
    from neuromod_rl.envs.maze import Maze

    with pytest.raises(ValueError, match="render_mode='ansi' is not supported by Maze"):
        Maze(render_mode="ansi")
