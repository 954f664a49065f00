"""Wrappers: previous action/reward/done inputs, multi-episode trials of one task, the single-task control."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import neuromod_rl  # noqa: F401
from neuromod_rl.envs import CueReward, DelayedCue, FixedTask, PrevActionReward, Trial, make_task_env


def test_prev_action_reward_discrete_layout():
    env = PrevActionReward(DelayedCue(n_cues=2, delay=0))
    obs, _ = env.reset(seed=0, options={"task": {"cue": 1}})
    np.testing.assert_array_equal(obs, [0, 1, 0, 0, 0, 0, 0])  # cue, go | action one-hot, reward, done
    obs, *_ = env.step(0)
    np.testing.assert_array_equal(obs, [0, 0, 1, 1, 0, 0, 0])
    obs, r, done, *_ = env.step(1)
    assert done and r == 1.0
    np.testing.assert_array_equal(obs[-4:], [0, 1, 1, 0])


def test_prev_action_reward_box_actions_are_clipped():
    # the project's tasks refuse out-of-range actions; a plain Gymnasium env may take them (Pendulum clips)
    env = PrevActionReward(gym.make("Pendulum-v1"), include_done=False)
    assert env.observation_space.shape == (3 + 1 + 1,)
    env.reset(seed=0)
    obs, r, *_ = env.step(np.array([3.0], dtype=np.float32))
    assert obs[3] == 2.0
    assert obs[4] == np.float32(r)
    task_env = PrevActionReward(gym.make("neuromod_rl/HalfCheetahVel-v0"), include_done=False)
    task_env.reset(seed=0)
    with pytest.raises(ValueError, match=r"outside the action space Box\(-1.0, 1.0, \(6,\), float32\)"):
        task_env.step(np.array([2.0, -3.0, 0.5, 0, 0, 0], dtype=np.float32))


def test_trial_keeps_one_task_and_flags_inner_boundaries():
    env = PrevActionReward(Trial(DelayedCue(n_cues=4, delay=1), episodes=3))
    obs, info = env.reset(seed=3)
    task = info["task"]
    flags, dones, tasks, inner = [obs[5]], [], [], []
    for t in range(9):
        obs, r, terminated, truncated, info = env.step(0)
        flags.append(obs[5])
        dones.append(obs[-1])
        tasks.append(info["task"])
        inner.append(info["inner_episode"])
        assert terminated == (t == 8) and not truncated
    assert all(t == task for t in tasks)
    assert flags == [1, 0, 0, 1, 0, 0, 1, 0, 0, 0]
    assert dones == [0, 0, 1, 0, 0, 1, 0, 0, 0]
    assert inner == [0, 0, 1, 1, 1, 2, 2, 2, 2]
    _, info = env.reset()
    assert "task" in info  # a new lifetime draws a new task (checked over several below)
    lifetimes = {Trial(DelayedCue(n_cues=4), episodes=2).reset(seed=s)[1]["task"]["cue"] for s in range(12)}
    assert len(lifetimes) > 1


@pytest.mark.filterwarnings(
    "ignore:.*infinity:UserWarning", "ignore:.*different from the unwrapped:UserWarning"
)
def test_trial_on_mujoco_truncates_only_at_the_end_and_passes_checkers():
    env = Trial(gym.make("neuromod_rl/AntGoal-v0", max_episode_steps=4), episodes=2)
    _, info = env.reset(seed=0)
    goal = info["task"]
    ends = []
    for _ in range(8):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert info["task"] == goal
        ends.append((terminated, truncated, info.get("inner_done", False)))
    assert ends[3] == (False, False, True) and ends[7] == (False, True, False)
    assert not any(e[0] or e[1] for e in ends[:7])
    wrapped = make_task_env("neuromod_rl/Maze9-v0", trial_episodes=2, prev_action_reward=True)
    assert wrapped.observation_space.shape == (16 + 1 + 4 + 2,)
    gym_check_env(wrapped, skip_render_check=True)
    sb3_check_env(wrapped)


def test_trial_with_crippled_switch_reuses_the_episode_limb():
    env = Trial(gym.make("neuromod_rl/CrippledAnt-v0", change_at=2, max_episode_steps=3), episodes=2)
    env.reset(seed=0, options={"task": {"limb": 1}})
    limbs = []
    for _ in range(6):
        info = env.step(np.zeros(8, dtype=np.float32))[-1]
        limbs.append(info.get("inner_final_info", info)["task"]["limb"])  # the step's own info
    # every inner episode: intact, intact, then the lifetime's limb breaks at step 2
    assert limbs == [None, None, 1, None, None, 1]


def test_fixed_task_gives_every_episode_and_every_copy_the_same_task():
    def tasks(env, seeds):
        out = []
        for seed in seeds:
            env.reset(seed=seed)
            out.append(env.unwrapped.get_task())
        return out

    a = tasks(FixedTask(CueReward(), task_seed=3), [0, 1, 2])
    b = tasks(FixedTask(CueReward(), task_seed=3), [7])  # another vector-env copy: another reset seed
    for task in a[1:] + b:
        np.testing.assert_array_equal(task["cues"], a[0]["cues"])
        assert task["target"] == a[0]["target"]
    other = tasks(FixedTask(CueReward(), task_seed=4), [0])[0]
    assert not np.array_equal(other["cues"], a[0]["cues"])
    free = tasks(CueReward(), [0, 1])  # without the wrapper the task changes per episode
    assert not np.array_equal(free[0]["cues"], free[1]["cues"])
    env = FixedTask(CueReward(), task_seed=3)
    env.reset(seed=0, options={"task": other})  # an explicit task still wins for one episode
    assert env.unwrapped.get_task()["target"] == other["target"]


def test_fixed_task_refuses_an_env_without_tasks_and_a_bad_seed():
    with pytest.raises(ValueError, match="FixedTask needs a task env of neuromod_rl"):
        FixedTask(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="task_seed"):
        FixedTask(CueReward(), task_seed=-1)
