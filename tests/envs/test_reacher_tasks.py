"""The Reacher tasks that need memory: what the arm sees and is paid, bad input, and the premises of the
reactive bound (nothing a memoryless agent sees depends on the hidden target until it is paid, or after the
cue-phase reset), checked with scripted policies; a scripted reach with the target in mind earns most of
the episode, so the bound leaves a gap."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import neuromod_rl  # noqa: F401  (registers the ids)
from neuromod_rl.envs import ReacherCue, ReacherHiddenGoal

HIDDEN, CUE = "neuromod_rl/ReacherHiddenGoal-v0", "neuromod_rl/ReacherCue-v0"
LINKS = (0.1, 0.11)  # shoulder-to-elbow and elbow-to-fingertip in Gymnasium's reacher.xml


def _joint_target(target) -> np.ndarray:
    """Joint angles that put the fingertip on ``target`` (two-link inverse kinematics, elbow one way)."""
    (l1, l2), (x, y) = LINKS, target
    elbow = np.arccos(np.clip((x * x + y * y - l1 * l1 - l2 * l2) / (2 * l1 * l2), -1.0, 1.0))
    return np.array([np.arctan2(y, x) - np.arctan2(l2 * np.sin(elbow), l1 + l2 * np.cos(elbow)), elbow])


def _reach(obs: np.ndarray, target) -> np.ndarray:
    """A PD controller towards ``target`` from the arm's observation (cos, sin, joint velocities)."""
    error = _joint_target(target) - np.arctan2(obs[2:4], obs[0:2])
    error = (error + np.pi) % (2 * np.pi) - np.pi
    return np.clip(2.0 * error - 0.2 * obs[4:6], -1.0, 1.0).astype(np.float32)


def _play(env_id: str, target, policy, seed: int = 0, **kwargs):
    """Observations, rewards and infos of one episode with ``target`` as the task."""
    env = gym.make(env_id, **kwargs)
    obs, _ = env.reset(seed=seed, options={"task": {"target": target}})
    observations, rewards, infos, done, t = [obs], [], [], False, 0
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy(obs, t))
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
        done, t = terminated or truncated, t + 1
    return observations, rewards, infos


def test_the_target_is_hidden_and_a_reach_towards_it_earns_most_of_the_episode():
    env = gym.make(HIDDEN)
    obs, info = env.reset(seed=0)
    assert obs.shape == (6,) and info["task"]["target"] not in [tuple(obs[i : i + 2]) for i in range(5)]
    returns = []
    for seed in range(4):
        target = env.unwrapped.sample_tasks(1)[0]["target"]
        _, rewards, infos = _play(HIDDEN, target, lambda o, t, g=target: _reach(o, g), seed)
        assert len(rewards) == 50 and max(i["reward_goal"] for i in infos) > 0.9
        returns.append(sum(rewards))
    assert min(returns) > 35.0  # of at most 50


def test_two_targets_look_the_same_until_one_of_them_pays():
    """The premise of the reactive bound: before the first goal reward no input depends on the target."""

    def sweep(obs, t):  # turn the shoulder, elbow half bent: the fingertip circles through both targets
        return np.array([0.4, 0.6 * (1.5 - np.arctan2(obs[3], obs[1]))], dtype=np.float32)

    near, far = (0.0, 0.15), (0.0, -0.15)
    a, b = _play(HIDDEN, near, sweep), _play(HIDDEN, far, sweep)
    first = next(t for t, i in enumerate(a[2]) if i["reward_goal"] > 0)
    assert 0 < first < 40 and all(i["reward_goal"] == 0 for i in b[2][: first + 1])
    for t in range(first + 1):
        np.testing.assert_array_equal(a[0][t], b[0][t])
    assert a[1][:first] == b[1][:first] and a[1][first] > b[1][first]


def test_the_cue_is_shown_for_cue_steps_then_the_arm_is_reset_and_nothing_depends_on_the_target():
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(50, 2)).astype(np.float32)

    def blind(obs, t):  # the same actions whatever it is shown
        return actions[t]

    a, b = (
        _play(CUE, (0.12, 0.05), blind, cue_steps=3, episode_length=12),
        _play(CUE, (-0.05, -0.18), blind, cue_steps=3, episode_length=12),
    )
    cues = [tuple(np.round(o[6:], 3)) for o in a[0]]
    assert cues[:3] == [(0.6, 0.25, 0.0)] * 3 and cues[3:] == [(0.0, 0.0, 1.0)] * 10
    assert [i["phase"] for i in a[2]] == ["cue"] * 2 + ["go"] * 10 and len(a[1]) == 12
    assert a[1][:3] == [0.0, 0.0, 0.0]  # nothing paid before the first step from the fresh arm
    for t in range(3, 13):  # after the reset the two targets' arms move the same, only the payment differs
        np.testing.assert_array_equal(a[0][t], b[0][t])

    def pushy(obs, t):  # in the cue phase, drive the arm hard towards the cue; in the go phase, act blind
        return np.sign(obs[6:8]).astype(np.float32) if obs[8] == 0 else actions[t]

    c = _play(CUE, (0.12, 0.05), pushy, cue_steps=3, episode_length=12)
    for t in range(3, 13):  # the reset wipes whatever the cue phase did to the arm
        np.testing.assert_array_equal(a[0][t], c[0][t])


def test_a_reach_that_remembers_the_cue_earns_most_of_the_go_phase_and_a_blind_one_does_not():
    def remember(obs, t, memory):
        if obs[8] == 0:
            memory["target"] = obs[6:8] * 0.2  # the cue is the target over target_range[1]
        return _reach(obs, memory["target"])

    earned, blind = [], []
    for seed, target in enumerate([(0.15, 0.05), (-0.08, 0.1), (0.02, -0.19)]):
        _, rewards, _ = _play(CUE, target, lambda o, t, m={}: remember(o, t, m), seed)  # noqa: B006
        earned.append(sum(rewards))
        _, rewards, _ = _play(CUE, target, lambda o, t: _reach(o, (0.1, 0.0)), seed)  # one place for every target
        blind.append(sum(rewards))
    assert min(earned) > 30.0 and max(blind) < min(earned) - 15.0  # of at most 45


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: ReacherHiddenGoal(target_range=(0.05, 0.3)), ["target_range[1]=0.3", "[0.05, 0.21]"]),
        (lambda: ReacherHiddenGoal(target_range=0.1), ["(low, high) pair"]),
        (lambda: ReacherHiddenGoal(radius=0.0), ["radius=0.0"]),
        (lambda: ReacherHiddenGoal(reward_dist_weight=1.0), ["reward_dist_weight", "ctrl_cost_weight"]),
        (lambda: ReacherCue(change_at=10), ["change_at=10 is not supported"]),
        (lambda: ReacherCue(cue_steps=5, episode_length=5), ["episode_length=5", "[6, 100000]"]),
        (lambda: gym.make(CUE).reset(options={"next_task": {"target": (0.1, 0.0)}}), ["unknown options", "['task']"]),
    ],
)
def test_bad_parameters_are_refused_naming_the_fix(make, words):
    with pytest.raises(ValueError) as err:
        make()
    assert all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize(
    ("task", "words"),
    [
        ({"target": (0.01, 0.0)}, ["0.010 m from the shoulder", "0.05 to 0.2"]),
        ({"target": (0.3, 0.0)}, ["task['target'][0]=0.3", "[-0.2, 0.2]"]),
        ({"target": 0.1}, ["(x, y) pair"]),
        ({"goal": (0.1, 0.0)}, ["missing keys ['target']"]),
    ],
)
@pytest.mark.parametrize("env_id", [HIDDEN, CUE])
def test_bad_targets_are_refused_naming_the_range(env_id, task, words):
    env = gym.make(env_id)
    for call in (env.unwrapped.set_task, lambda t: env.reset(seed=0, options={"task": t})):
        with pytest.raises(ValueError) as err:
            call(task)
        assert all(w in str(err.value) for w in words), str(err.value)


def test_targets_are_uniform_in_area_over_the_annulus():
    env = gym.make(HIDDEN).unwrapped
    env.reset(seed=0)
    radii = np.array([np.hypot(*t["target"]) for t in env.sample_tasks(4000)])
    assert radii.min() >= 0.05 and radii.max() <= 0.2
    inner = np.mean(radii < np.sqrt((0.05**2 + 0.2**2) / 2))  # the radius that halves the annulus' area
    assert abs(inner - 0.5) < 0.03
    np.testing.assert_allclose(env.task_features({"target": (0.1, -0.12)}), [0.5, -0.6], rtol=1e-6)
