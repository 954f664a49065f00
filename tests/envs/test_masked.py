"""The velocity-masked memory tasks: registered, valid Gymnasium envs, velocities hidden, seeded."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import neuromod_rl  # noqa: F401
from neuromod_rl.envs.masked import VELOCITY_INDICES, MaskVelocity

IDS = {
    "neuromod_rl/CartPoleNoVel-v1": "CartPole-v1",
    "neuromod_rl/PendulumNoVel-v1": "Pendulum-v1",
    "neuromod_rl/MountainCarNoVel-v0": "MountainCar-v0",
    "neuromod_rl/MountainCarContinuousNoVel-v0": "MountainCarContinuous-v0",
}


@pytest.mark.parametrize("env_id", IDS)
def test_velocities_are_zero_and_positions_match_the_full_env(env_id):
    masked, full = gym.make(env_id), gym.make(IDS[env_id])
    check_env(masked.unwrapped, skip_render_check=True)
    o_m, _ = masked.reset(seed=3)
    o_f, _ = full.reset(seed=3)
    hidden = list(VELOCITY_INDICES[IDS[env_id]])
    for _ in range(20):
        assert np.all(o_m[hidden] == 0)
        keep = np.setdiff1d(np.arange(len(o_f)), hidden)
        np.testing.assert_array_equal(o_m[keep], o_f[keep])
        action = full.action_space.sample()
        o_m, *_ = masked.step(action)
        o_f, *_ = full.step(action)
    assert masked.get_wrapper_attr("_max_episode_steps") == full.spec.max_episode_steps  # the base env's limit


def test_unknown_env_needs_explicit_indices():
    with pytest.raises(ValueError, match="pass indices"):
        MaskVelocity(gym.make("Acrobot-v1"))
    with pytest.raises(ValueError, match="do not fit"):
        MaskVelocity(gym.make("Acrobot-v1"), indices=(9,))
    assert MaskVelocity(gym.make("Acrobot-v1"), indices=(4, 5)).reset(seed=0)[0][4] == 0
