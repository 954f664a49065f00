"""Bad input to the tasks: actions outside the action space, mistyped reset options, and tasks changed
by the caller after they were handed over. Each must be refused (or ignored) with a clear message, never
turned into a reward."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import neuromod_rl  # noqa: F401
from neuromod_rl.envs import CueReward, DelayedCue, Harlow, Maze, TMaze, TwoArmedBandit

CLASSIC = [TwoArmedBandit, CueReward, Maze, TMaze, Harlow, DelayedCue]
MUJOCO_IDS = ["neuromod_rl/HalfCheetahVel-v0", "neuromod_rl/CrippledHalfCheetah-v0"]


@pytest.mark.parametrize("cls", CLASSIC)
@pytest.mark.parametrize("action", [-1, "n", 1.0, True, np.array([0, 1]), None])
def test_discrete_tasks_refuse_actions_outside_their_space(cls, action):
    env = cls()
    env.reset(seed=0)
    bad = env.action_space.n if isinstance(action, str) else action
    space = rf"Discrete\({env.action_space.n}\)"
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.step: action .* action space {space}"):
        env.step(bad)


@pytest.mark.parametrize("cls", CLASSIC)
def test_discrete_tasks_take_every_integer_type(cls):
    env = cls()
    env.reset(seed=0)
    for action in (0, np.int64(1), np.array(0), np.array([1], dtype=np.int32)):
        env.step(action)


def test_bandit_pays_nothing_for_an_arm_that_does_not_exist():
    env = TwoArmedBandit(variant="fixed", difficulty="easy")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action -1 is outside the action space Discrete\(2\)"):
        env.step(-1)  # before: p[-1], the second arm, paid a reward


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_mujoco_tasks_refuse_actions_outside_their_box(env_id):
    env = gym.make(env_id)
    env.reset(seed=0)
    space = r"Box\(-1\.0, 1\.0, \(6,\), float32\)"
    with pytest.raises(ValueError, match=rf"shape \(3,\) does not fit the action space {space}"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match=rf"outside the action space {space} \(entry 2 is 5"):
        env.step(np.array([0, 0, 5.0, 0, 0, 0]))
    with pytest.raises(ValueError, match=rf"holds NaN/inf; the action space is {space}"):
        env.step(np.full(6, np.nan))
    env.step(np.ones(6, dtype=np.float64))  # float64 within the bounds is fine
    env.close()


@pytest.mark.parametrize(
    "env_id, bad, space",
    [
        ("neuromod_rl/PendulumNoVel-v1", np.array([5.0]), r"Box\(-2\.0, 2\.0, \(1,\), float32\)"),
        ("neuromod_rl/CartPoleNoVel-v1", 2, r"Discrete\(2\)"),
    ],
)
def test_masked_tasks_refuse_actions_outside_their_space(env_id, bad, space):
    env = gym.make(env_id)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=rf"{env_id} \(masked\)\.step: action .* action space {space}"):
        env.step(bad)


@pytest.mark.parametrize("make", [*CLASSIC, *(lambda i=i: gym.make(i).unwrapped for i in MUJOCO_IDS)])
def test_reset_refuses_unknown_or_mistyped_options(make):
    env = make()
    name = type(env).__name__
    with pytest.raises(ValueError, match=rf"{name}\.reset: unknown options key\(s\) \['tsk'\]; valid keys are"):
        env.reset(seed=0, options={"tsk": env.sample_tasks(1)[0]})
    with pytest.raises(ValueError, match=rf"{name}\.reset: options=\['task'\] is not a dict"):
        env.reset(seed=0, options=["task"])
    env.reset(seed=0, options={"task": None})  # None: sample as usual
    env.close()


@pytest.mark.parametrize("cls, key", [(Harlow, "objects"), (CueReward, "cues")])
def test_tasks_are_copied_in_and_out(cls, key):
    env = cls()
    env.reset(seed=0)
    task = env.sample_tasks(1)[0]
    kept = task[key].copy()
    env.set_task(task)
    task[key][:] = 0.0  # the caller reuses its array
    _, info = env.reset(seed=1)
    np.testing.assert_array_equal(info["task"][key], kept)
    env.get_task()[key][:] = 0.0  # nor does changing what get_task returned
    np.testing.assert_array_equal(env.get_task()[key], kept)

    given = env.sample_tasks(1)[0]
    kept = given[key].copy()
    env.reset(seed=2, options={"task": given})
    given[key][:] = 0.0
    np.testing.assert_array_equal(env.get_task()[key], kept)
