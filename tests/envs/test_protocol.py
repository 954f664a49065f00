"""The task protocol: seeding, sampling, fixing tasks, splits, bad input, and SB3 VecEnvs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import neuromod_rl  # noqa: F401
from neuromod_rl.envs import Copy, CueReward, DelayedCue, Harlow, Majority, Maze, Recall, TMaze, TwoArmedBandit

CLASSIC = [
    lambda: TwoArmedBandit(),
    lambda: TwoArmedBandit(variant="dependent"),
    lambda: TwoArmedBandit(variant="fixed", difficulty="hard"),
    lambda: CueReward(),
    lambda: Maze(size=9),
    lambda: TMaze(n_trials=10),
    lambda: Harlow(),
    lambda: DelayedCue(),
]
MUJOCO_IDS = ["neuromod_rl/HalfCheetahVel-v0", "neuromod_rl/CrippledHalfCheetah-v0"]


def _same(a, b) -> bool:
    """Deep equality of tasks (dicts of scalars, tuples, arrays)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object)))


def _rollout(env: gym.Env, seed: int, episodes: int = 3, steps: int = 20):
    """Tasks and observations of a few episodes with scripted actions."""
    env.action_space.seed(123)
    actions = [env.action_space.sample() for _ in range(steps)]
    obs, info = env.reset(seed=seed)
    tasks, observations = [info["task"]], [obs]
    for _ in range(episodes):
        for a in actions:
            obs, _, terminated, truncated, info = env.step(a)
            observations.append(obs)
            if terminated or truncated:
                break
        obs, info = env.reset()
        tasks.append(info["task"])
        observations.append(obs)
    return tasks, observations


@pytest.mark.parametrize(
    "make", CLASSIC + [lambda i=i: gym.make(i, max_episode_steps=10) for i in MUJOCO_IDS]
)
def test_same_seed_same_tasks_and_observations(make):
    tasks_a, obs_a = _rollout(make(), seed=7)
    tasks_b, obs_b = _rollout(make(), seed=7)
    assert all(_same(a, b) for a, b in zip(tasks_a, tasks_b, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(obs_a, obs_b, strict=True))
    env = make()
    tasks_c, _ = _rollout(env, seed=8)
    if not (isinstance(env, TwoArmedBandit) and env.variant == "fixed"):  # that one has 2 tasks only
        assert not all(_same(a, c) for a, c in zip(tasks_a, tasks_c, strict=True))


@pytest.mark.parametrize("make", CLASSIC)
def test_reset_samples_set_task_fixes_options_override(make):
    env = make()
    _, info = env.reset(seed=0)
    seen = [info["task"]] + [env.reset()[1]["task"] for _ in range(9)]
    assert sum(not _same(seen[0], t) for t in seen) > 0, "each reset should draw a new task"
    assert _same(env.get_task(), seen[-1])

    task = env.sample_tasks(1)[0]
    env.set_task(task)
    for _ in range(3):
        _, info = env.reset()
        assert _same(info["task"], task)
        _, _, _, _, info = env.step(env.action_space.sample())
        assert _same(info["task"], task)
    other = next(t for t in env.sample_tasks(20) if not _same(t, task))
    assert _same(env.reset(options={"task": other})[1]["task"], other)  # this episode only
    assert _same(env.reset()[1]["task"], task)
    env.set_task(None)
    assert any(not _same(env.reset()[1]["task"], task) for _ in range(10))


def test_sample_tasks_is_seeded_and_valid():
    a, b = Maze(), Maze()
    a.reset(seed=3)
    b.reset(seed=3)
    tasks = a.sample_tasks(5)
    assert [t["goal"] for t in tasks] == [t["goal"] for t in b.sample_tasks(5)]
    for t in tasks:
        assert a.validate_task(t) == t


def test_task_split_fixed_by_seed_and_disjoint():
    env = Maze()
    env.reset(seed=0)
    state = env.np_random.bit_generator.state
    train, test = env.task_split(seed=1, n_test=10)
    assert env.np_random.bit_generator.state == state, "task_split must not consume np_random"
    assert (train, test) == Maze().task_split(seed=1, n_test=10)
    assert len(test) == 10 and len(train) == len(env.goal_cells) - 10
    assert not {t["goal"] for t in train} & {t["goal"] for t in test}
    assert Maze().task_split(seed=2)[1] != test

    bandit = TwoArmedBandit()
    tr1, te1 = bandit.task_split(seed=5, n_train=4, n_test=3)
    tr2, te2 = TwoArmedBandit().task_split(seed=5, n_train=4, n_test=3)
    assert (tr1, te1) == (tr2, te2) and len(tr1) == 4 and len(te1) == 3


@pytest.mark.parametrize(
    ("make", "task", "words"),
    [
        (Maze, {"goal": (0, 3)}, ["task['goal'][0]", "[1, 11]"]),
        (Maze, {"goal": (2, 2)}, ["wall", "free cells"]),
        (Maze, {"goal": (3, 3), "extra": 1}, ["extra", "valid keys"]),
        (Maze, [3, 3], ["not a dict"]),
        (TwoArmedBandit, {"p": (0.5, 1.5)}, ["task['p'][1]", "[0.0, 1.0]"]),
        (TMaze, {"high_arm": 2, "switch_trial": 5}, ["task['high_arm']", "[0, 1]"]),
        (DelayedCue, {"cue": 3}, ["task['cue']", "[0, 1]"]),
        (Harlow, {"objects": np.zeros((2, 8)), "rewarded": 0}, ["task['objects']", "-1/+1"]),
        (CueReward, {"cues": np.ones((4, 20)), "target": 7}, ["task['target']", "[0, 3]"]),
        (Recall, {"symbols": (0,) * 51 + (4,)}, ["task['symbols'][51]=4", "[0, 3]"]),
        (Recall, {"symbols": (0, 1)}, ["2 symbols", "shows 52"]),
        (Recall, {"symbols": (0,) * 51 + (True,)}, ["task['symbols'][51]=True", "not an integer"]),
        (Recall, {"symbols": "0123"}, ["not a sequence"]),
        (Recall, {"symbols": (0,) * 52, "k": 2}, ["unknown keys ['k']", "valid keys"]),
        (Recall, [0] * 52, ["not a dict"]),
        (Majority, {"symbols": (0, 0, 1, 1, 2, 2, 3, 3, 0, 1)}, ["no single most frequent", "[0, 1]"]),
        (Copy, {"symbols": (1, 2, -1)}, ["task['symbols'][2]=-1", "[0, 3]"]),
    ],
)
def test_invalid_task_names_field_and_range(make, task, words):
    env = make()
    for call in (env.set_task, lambda t: env.reset(seed=0, options={"task": t})):
        with pytest.raises(ValueError) as err:
            call(task)
        for w in words:
            assert w in str(err.value)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: Maze(size=10), ["size=10", "[9, 11, 13]"]),
        (lambda: TwoArmedBandit(variant="restless"), ["variant", "independent"]),
        (lambda: TwoArmedBandit(n_pulls=0), ["n_pulls=0", "[1, inf]"]),
        (lambda: DelayedCue(n_cues=5), ["n_cues=5", "[2, 4]"]),
        (lambda: gym.make("neuromod_rl/HalfCheetahVel-v0", change_at=0), ["change_at=0", "[1, inf]"]),
        (lambda: gym.make("neuromod_rl/AntGoal-v0", change_at=(50, 10)), ["change_at[1]=10", "[50, inf]"]),
    ],
)
def test_out_of_range_parameter_names_field_and_range(make, words):
    with pytest.raises(ValueError) as err:
        make()
    for w in words:
        assert w in str(err.value)


def _episode_tasks(venv, steps: int) -> list:
    """The task of every step of every sub-env, as SB3's auto-resetting VecEnv reports them."""
    venv.reset()
    tasks = []
    for _ in range(steps):
        _, _, _, infos = venv.step(np.array([venv.action_space.sample() for _ in range(venv.num_envs)]))
        tasks.append([info["task"]["goal"] for info in infos])
    return tasks


@pytest.mark.parametrize("vec_cls", [DummyVecEnv, SubprocVecEnv])
def test_vecenv_autoreset_resamples_and_env_method_fixes(vec_cls):
    # the module form imports neuromod_rl inside SubprocVecEnv workers too
    fns = [lambda: gym.make("neuromod_rl:neuromod_rl/Maze-v0", episode_length=5) for _ in range(2)]
    venv = vec_cls(fns)
    venv.seed(0)
    tasks = _episode_tasks(venv, 30)  # 6 episodes per sub-env
    for k in range(2):
        per_episode = {tasks[5 * e][k] for e in range(6)}
        assert len(per_episode) > 1, "auto-resets must draw new tasks"
    venv.env_method("set_task", {"goal": (1, 1)}, indices=[0])
    venv.env_method("set_task", {"goal": (3, 5)}, indices=[1])
    tasks = _episode_tasks(venv, 15)
    assert all(t == [(1, 1), (3, 5)] for t in tasks)
    assert venv.env_method("get_task") == [{"goal": (1, 1)}, {"goal": (3, 5)}]
    venv.close()
