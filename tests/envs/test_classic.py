"""Classic tasks: observation layouts and reward rules checked on scripted actions."""

from __future__ import annotations

import numpy as np
import pytest

from neuromod_rl.envs import CueReward, DelayedCue, Harlow, Maze, TMaze, TwoArmedBandit
from neuromod_rl.envs.cue_reward import GO


def test_bandit_rewards_observation_and_regret():
    env = TwoArmedBandit()
    obs, info = env.reset(seed=0, options={"task": {"p": (1.0, 0.0)}})
    np.testing.assert_array_equal(obs, [0, 0, 0, 0])
    total, regret = 0.0, 0.0
    for t in range(100):
        a = t % 2
        obs, r, terminated, truncated, info = env.step(a)
        assert r == (1.0 if a == 0 else 0.0)
        np.testing.assert_allclose(obs, [a == 0, a == 1, r, (t + 1) / 100])
        total, regret = total + r, regret + info["regret"]
        assert terminated == (t == 99) and not truncated
    assert (total, regret) == (50.0, 50.0)


def test_bandit_variants_sample_their_distribution():
    dep = TwoArmedBandit(variant="dependent")
    dep.reset(seed=0)
    assert all(abs(sum(t["p"]) - 1.0) < 1e-12 for t in dep.sample_tasks(50))
    fixed = TwoArmedBandit(variant="fixed", difficulty="easy")
    fixed.reset(seed=0)
    assert {t["p"] for t in fixed.sample_tasks(50)} == {(0.1, 0.9), (0.9, 0.1)}
    ind = TwoArmedBandit()
    ind.reset(seed=0)
    p = np.array([t["p"] for t in ind.sample_tasks(2000)])
    assert abs(p.mean() - 0.5) < 0.03 and abs(np.corrcoef(p.T)[0, 1]) < 0.1


def test_bandit_empirical_reward_rate_matches_p():
    env = TwoArmedBandit(n_pulls=4000)
    env.reset(seed=1, options={"task": {"p": (0.3, 0.8)}})
    rewards = [env.step(1)[1] for _ in range(4000)]
    assert abs(np.mean(rewards) - 0.8) < 0.03


def _cue_oracle_episode(env: CueReward, seed: int, flip: bool = False) -> tuple[float, int]:
    """Answer every go cue correctly (or always wrongly with ``flip``); return (return, #go steps)."""
    obs, info = env.reset(seed=seed)
    target = info["task"]["cues"][info["task"]["target"]]
    seen, total, n_go, done = False, 0.0, 0, False
    while not done:
        is_go = obs[env.cue_bits] == 1.0
        seen = seen or bool(np.array_equal(obs[: env.cue_bits], target))
        a = int(seen != flip) if is_go else 0
        obs, r, done, _, info = env.step(a)
        assert obs[env.cue_bits + 3] == r, "the reward is the next observation's previous reward"
        total += r
        if is_go:
            n_go += 1
            seen = False
        if info["answered"]:
            assert r == (-1.0 if flip else 1.0)
    return total, n_go


def test_cue_reward_trials_and_rewards():
    env = CueReward()
    total, n_go = _cue_oracle_episode(env, seed=0)
    assert env._t == 120 and n_go >= 120 // 11
    assert total == n_go
    assert _cue_oracle_episode(CueReward(), seed=0, flip=True) == (-n_go, n_go)
    env.reset(seed=4)
    for _ in range(30):  # trial layout as in the paper code
        trial = env._trial
        shown = [c for c in trial if c >= 0]
        assert trial[0] < 0 and trial[-1] < 0 and trial[-2] == GO
        assert len(shown) == len(set(shown)) == 2 and 5 <= len(trial) <= 8
        env._new_trial()


def test_maze_layout_view_and_rewards():
    env = Maze(size=13, wall_penalty=0.5)
    lab = env.lab
    assert lab[0].all() and lab[-1].all() and lab[:, 0].all() and lab[:, -1].all()
    assert lab[2, 2] == 1 and lab[2, 3] == 0 and lab[6, 6] == 0  # pillar, free, start
    obs, info = env.reset(seed=0, options={"task": {"goal": (6, 7)}})
    np.testing.assert_array_equal(obs[:9], lab[5:8, 5:8].ravel())
    np.testing.assert_array_equal(obs[9:], [1, 0, 0, 0, 0, 0, 0])
    obs, r, *_ = env.step(0)  # up to (5, 6)
    assert r == 0.0 and env._pos == (5, 6)
    obs, r, _, _, info = env.step(0)  # (4, 6) is a pillar: stay, pay the wall penalty
    assert r == -0.5 and info["position"] == (5, 6)
    np.testing.assert_allclose(obs[10:], [2 / 200, -0.5, 1, 0, 0, 0])
    env.step(1)  # back to the start
    _, r, _, _, info = env.step(3)  # right onto the goal: +10 and teleport away from it
    assert r == 10.0 and info["reached_goal"]
    assert info["position"] != (6, 7) and lab[info["position"]] == 0


@pytest.mark.parametrize("size", [9, 11, 13])
def test_maze_episode_length_and_goal_set(size):
    env = Maze(size=size)
    env.reset(seed=0)
    free = (size - 2) ** 2 - ((size - 3) // 2) ** 2 + (1 if (size // 2) % 2 == 0 else 0)
    assert len(env.free_cells) == free and len(env.goal_cells) == free - 1
    steps = 0
    done = False
    while not done:
        _, _, done, _, _ = env.step(env.action_space.sample())
        steps += 1
    assert steps == 200


def test_tmaze_rewards_swap_once_and_crashes():
    env = TMaze(n_trials=10, corridor_length=2)
    obs, _ = env.reset(seed=0, options={"task": {"high_arm": 0, "switch_trial": 4}})
    np.testing.assert_array_equal(obs[:3], [1, 0, 0])
    rewards = []
    for trial in range(10):
        for _ in range(2):
            obs, r, *_ = env.step(0)
            assert r == 0.0
        np.testing.assert_array_equal(obs[:3], [0, 0, 1])  # at the junction
        obs, r, done, _, info = env.step(1)  # always turn left
        rewards.append(r)
        assert info["trial_over"] and info["trial"] == trial + 1 and done == (trial == 9)
    assert rewards == [1.0] * 4 + [0.2] * 6
    env.reset(seed=0)
    assert env.step(2)[1] == -0.4  # turning inside the corridor crashes
    env.step(0)
    env.step(0)
    assert env.step(0)[1] == -0.4  # going straight at the junction crashes


def test_tmaze_switch_trial_range():
    env = TMaze(n_trials=100)
    env.reset(seed=0)
    switches = [t["switch_trial"] for t in env.sample_tasks(300)]
    assert 25 <= min(switches) and max(switches) <= 75 and len(set(switches)) > 20


def test_harlow_oracle_and_side_shuffling():
    env = Harlow()
    returns, lefts = [], []
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        d = env.object_dim
        rewarded, total, done = None, 0.0, False
        while not done:
            left, right = obs[:d], obs[d : 2 * d]
            if rewarded is None:
                a = 0
            else:
                a = 0 if np.array_equal(left, rewarded) else 1
            obs_next, r, done, _, info = env.step(a)
            lefts.append(info["left_object"])
            chosen = left if a == 0 else right
            other = right if a == 0 else left
            rewarded = chosen if r > 0 else other
            assert obs_next[2 * d + 2] == r
            total += r
            obs = obs_next
        returns.append(total)
    assert set(returns) <= {4.0, 6.0} and 4.0 in returns and 6.0 in returns
    assert 0.3 < np.mean(lefts) < 0.7


@pytest.mark.parametrize("delay", [0, 3])
def test_delayed_cue(delay):
    env = DelayedCue(n_cues=3, delay=delay)
    for answer_offset, expected in [(0, 1.0), (1, 0.0)]:
        obs, info = env.reset(seed=delay, options={"task": {"cue": 2}})
        np.testing.assert_array_equal(obs, [0, 0, 1, 0])
        for t in range(delay + 1):
            obs, r, done, *_ = env.step(0)
            assert r == 0.0 and not done
            np.testing.assert_array_equal(obs, [0, 0, 0, float(t == delay)])  # blanks, then go
        obs, r, done, *_ = env.step((2 + answer_offset) % 3)
        assert done and r == expected
