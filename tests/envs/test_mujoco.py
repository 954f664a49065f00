"""MuJoCo tasks: reward formulas on scripted actions, crippling, dynamics scaling and switching."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import neuromod_rl  # noqa: F401
from neuromod_rl.envs import (
    AntDir,
    AntGoal,
    CrippledAnt,
    CrippledHalfCheetah,
    HalfCheetahDir,
    HalfCheetahRandParams,
    HalfCheetahVel,
    HopperRandParams,
)

ACTIONS = np.random.default_rng(0).uniform(-1, 1, size=(12, 8)).astype(np.float32)


def _steps(env, task, n=10, **options):
    env.reset(seed=0, options={"task": task, **options})
    a_dim = env.action_space.shape[0]
    return [(ACTIONS[i, :a_dim], *env.step(ACTIONS[i, :a_dim])[1:]) for i in range(n)]


def test_half_cheetah_vel_reward():
    env = HalfCheetahVel()
    for a, r, _, _, info in _steps(env, {"velocity": 1.5}):
        assert r == pytest.approx(-abs(info["x_velocity"] - 1.5) - 0.05 * np.sum(a.astype(np.float64) ** 2))


def test_half_cheetah_dir_matches_raw_v5_reward():
    raw = gym.make("HalfCheetah-v5").unwrapped
    raw.reset(seed=0)
    env = HalfCheetahDir(ctrl_cost_weight=0.1)  # with the v5 weight, direction +1 is the v5 reward
    env.reset(seed=0, options={"task": {"direction": 1}})
    raw.set_state(env.data.qpos.copy(), env.data.qvel.copy())
    for a in ACTIONS[:10, :6]:
        obs_r, r_raw, *_ = raw.step(a)
        obs, r, *_ = env.step(a)
        np.testing.assert_allclose(obs, obs_r.astype(np.float32))
        assert r == pytest.approx(r_raw)
    for a, r, _, _, info in _steps(HalfCheetahDir(), {"direction": -1}):
        assert r == pytest.approx(-info["x_velocity"] - 0.05 * np.sum(a.astype(np.float64) ** 2))


def test_ant_dir_and_goal_rewards():
    angle = 2.0
    for a, r, _, _, info in _steps(AntDir(), {"angle": angle}):
        forward = info["x_velocity"] * np.cos(angle) + info["y_velocity"] * np.sin(angle)
        ctrl = -0.5 * np.sum(a.astype(np.float64) ** 2)
        assert info["reward_ctrl"] == pytest.approx(ctrl)
        assert r == pytest.approx(forward + 1.0 + ctrl + info["reward_contact"])
    goal = (1.0, -2.0)
    for a, r, terminated, _, info in _steps(AntGoal(), {"goal": goal}):
        dist = abs(info["x_position"] - goal[0]) + abs(info["y_position"] - goal[1])
        assert r == pytest.approx(-dist - 0.5 * np.sum(a.astype(np.float64) ** 2) + info["reward_contact"])
        assert not terminated
    env = AntGoal()
    env.reset(seed=0)
    goals = np.array([t["goal"] for t in env.sample_tasks(2000)])
    radii = np.hypot(goals[:, 0], goals[:, 1])
    assert radii.max() <= 3.0 and abs(np.mean(radii <= 1.5) - 0.25) < 0.04  # uniform over the disc


@pytest.mark.parametrize("cls", [CrippledHalfCheetah, CrippledAnt])
def test_crippled_zeroes_the_limb_and_charges_the_command(cls):
    env = cls()
    weight = env._ctrl_cost_weight
    limb = env.train_limbs[0]
    group = env.group_actuators[limb]
    env.reset(seed=0, options={"task": {"limb": limb}})
    for a in ACTIONS[:3, : env.action_space.shape[0]]:
        info = env.step(a)[-1]
        np.testing.assert_array_equal(env.data.ctrl[group], 0.0)
        others = [i for i in range(len(a)) if i not in group]
        np.testing.assert_allclose(env.data.ctrl[others], a[others])
        assert info["reward_ctrl"] == pytest.approx(-weight * np.sum(a.astype(np.float64) ** 2))
    env.reset(options={"task": {"limb": None}})
    env.step(ACTIONS[0, : env.action_space.shape[0]])
    np.testing.assert_allclose(env.data.ctrl, ACTIONS[0, : env.action_space.shape[0]])


def test_crippled_splits_hold_out_one_limb():
    train = CrippledAnt()
    train.reset(seed=0)
    assert {t["limb"] for t in train.sample_tasks(100)} == {0, 1, 2}
    test = CrippledAnt(split="test")
    test.reset(seed=0)
    assert {t["limb"] for t in test.sample_tasks(10)} == {3}
    assert train.task_split(seed=0) == ([{"limb": 0}, {"limb": 1}, {"limb": 2}], [{"limb": 3}])
    cheetah = CrippledHalfCheetah(groups="legs", test_limb=0)
    assert cheetah.task_split(seed=0) == ([{"limb": 1}], [{"limb": 0}])
    assert cheetah.limb_name(1) == "front"


def test_crippled_breaks_mid_episode_at_change_at():
    env = CrippledHalfCheetah(change_at=4)
    _, info = env.reset(seed=0, options={"task": {"limb": 2}})
    assert info["task"] == {"limb": None} and info["change_at"] == 4
    for t in range(8):
        _, _, _, _, info = env.step(np.ones(6, dtype=np.float32))
        assert info["task_switched"] == (t == 4)
        assert info["task"] == ({"limb": None} if t < 4 else {"limb": 2})
        assert env.data.ctrl[2] == (1.0 if t < 4 else 0.0)


@pytest.mark.parametrize("cls", [HalfCheetahRandParams, HopperRandParams])
def test_rand_params_scale_from_the_original_model(cls):
    env = cls()
    original = {p: getattr(env.model, p).copy() for p in env.rand_params}
    env.reset(seed=0)
    tasks = env.sample_tasks(2)
    for task in tasks:  # applying a second task must not compound on the first
        env.reset(options={"task": task})
        for p in env.rand_params:
            np.testing.assert_allclose(getattr(env.model, p), original[p] * np.asarray(task[p]))
    many = env.sample_tasks(200)
    mass = np.concatenate([np.ravel(t["body_mass"]) for t in many])
    damping = np.concatenate([np.ravel(t["dof_damping"]) for t in many])
    assert mass.min() >= 1.5**-3 and mass.max() <= 1.5**3 and mass.max() > 2.5 and mass.min() < 0.4
    assert damping.min() >= 1.3**-3 and damping.max() <= 1.3**3
    with pytest.raises(ValueError, match=r"task\['dof_damping'\].*valid range is \[0.4552, 2.197\]"):
        env.set_task({**tasks[0], "dof_damping": np.full(env.model.nv, 3.0)})
    neutral = env.neutral_task()
    env.reset(options={"task": neutral})
    np.testing.assert_allclose(env.model.body_mass, original["body_mass"])


@pytest.mark.parametrize("env_id", ["neuromod_rl/HalfCheetahVel-v0", "neuromod_rl/HopperRandParams-v0"])
def test_switch_happens_at_the_set_step(env_id):
    env = gym.make(env_id, change_at=5)
    _, info = env.reset(seed=1)
    first = info["task"]
    assert info["change_at"] == 5 and not info["task_switched"]
    for t in range(10):
        _, _, terminated, _, info = env.step(env.action_space.sample())
        assert info["task_switched"] == (t == 5)
        if t == 5:
            assert info["previous_task"] == first
            after = info["task"]
        if t >= 5:
            assert info["task"] == after
        if terminated:
            break
    assert after != first


def test_switch_range_next_task_and_new_reward():
    env = HalfCheetahVel(change_at=(3, 6))
    steps = []
    for seed in range(12):
        env.reset(seed=seed)
        steps.append(env._change_step)
    assert set(steps) <= {3, 4, 5, 6} and len(set(steps)) > 1
    assert steps == [HalfCheetahVel(change_at=(3, 6)).reset(seed=s)[1]["change_at"] for s in range(12)]
    env = HalfCheetahVel(change_at=2)
    records = _steps(env, {"velocity": 0.5}, n=5, next_task={"velocity": 2.5})
    for t, (a, r, _, _, info) in enumerate(records):
        goal = 0.5 if t < 2 else 2.5
        assert info["task"] == {"velocity": goal}
        assert r == pytest.approx(-abs(info["x_velocity"] - goal) - 0.05 * np.sum(a.astype(np.float64) ** 2))


@pytest.mark.parametrize(
    ("make", "task", "words"),
    [
        (HalfCheetahVel, {"velocity": 5.0}, ["task['velocity']=5.0", "[0.0, 3.0]"]),
        (HalfCheetahDir, {"direction": 0}, ["task['direction']=0", "[-1, 1]"]),
        (AntDir, {"angle": -1.0}, ["task['angle']", "[0.0, 6.28"]),
        (AntGoal, {"goal": (2.5, 2.5)}, ["||task['goal']||", "[0.0, 3.0]"]),
        (CrippledAnt, {"limb": 4}, ["task['limb']=4", "[0, 3]"]),
    ],
)
def test_invalid_mujoco_task_names_field_and_range(make, task, words):
    env = make()
    with pytest.raises(ValueError) as err:
        env.set_task(task)
    for w in words:
        assert w in str(err.value)
