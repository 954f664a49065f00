"""The pure memory tasks (Recall, Majority, Copy): the documented returns of perfect, random and memoryless
play, the observation layout, seeding, the task protocol and refused input."""

from __future__ import annotations

import itertools
import warnings

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env

import neuromod_rl  # noqa: F401  (registers the ids)
from neuromod_rl.envs import Copy, Majority, Recall
from neuromod_rl.envs.base import observation_image
from neuromod_rl.envs.recall import wrong_penalty

IDS = ["Recall", "RecallHard", "Majority", "MajorityHard", "Copy", "CopyHard"]
CLASSES = [Recall, Majority, Copy]


def _make(name: str) -> gym.Env:
    return gym.make(f"neuromod_rl/{name}-v0").unwrapped


def _remembering_policy(env, obs: np.ndarray, memory: list[int]) -> int:
    """The answer a policy with perfect memory gives, from observations only (``memory``: symbols seen)."""
    n = env.n_symbols
    if obs[:n].any():
        memory.append(int(obs[:n].argmax()))
    if isinstance(env, Recall):
        return memory[-1 - env.k] if len(memory) > env.k else 0
    if isinstance(env, Majority):
        return int(np.bincount(memory, minlength=n).argmax()) if obs[n] == 1.0 else 0
    return memory.pop(0) if obs[n] == 1.0 else 0  # Copy: the recall steps name the sequence in order


def _play(env, choose, seed: int) -> tuple[float, list[float], list[int]]:
    """One episode: (return summed in order, rewards, targets); ``choose(obs, memory)`` picks the action."""
    obs, _ = env.reset(seed=seed)
    memory: list[int] = []
    rewards, targets, done = [], [], False
    while not done:
        obs, r, done, truncated, info = env.step(choose(obs, memory))
        assert not truncated
        rewards.append(r)
        targets.append(info["target"])
    total = 0.0
    for r in rewards:  # left to right, as SB3's Monitor sums an episode
        total += r
    return total, rewards, targets


@pytest.mark.parametrize("name", IDS)
def test_perfect_play_returns_exactly_one_and_all_wrong_minus_c(name):
    env = _make(name)
    c = wrong_penalty(env.n_symbols)
    for seed in range(5):
        total, rewards, targets = _play(env, lambda o, m: _remembering_policy(env, o, m), seed)
        assert total == 1.0
        scored = [r for r, t in zip(rewards, targets, strict=True) if t >= 0]
        assert len(scored) == env.n_scored and len(rewards) == env.n_steps
        assert scored == pytest.approx([1.0 / env.n_scored] * env.n_scored, abs=1e-15)
        assert all(r == 0.0 for r, t in zip(rewards, targets, strict=True) if t < 0)

        def wrong(obs, memory):
            return (_remembering_policy(env, obs, memory) + 1) % env.n_symbols

        total, rewards, targets = _play(env, wrong, seed)
        assert total == pytest.approx(-c, abs=1e-15) and -1.0 <= total
        assert [r for r, t in zip(rewards, targets, strict=True) if t >= 0] == pytest.approx(
            [-c / env.n_scored] * env.n_scored, abs=1e-15
        )


@pytest.mark.parametrize("name", IDS)
def test_uniformly_random_play_averages_minus_half(name):
    env = _make(name)
    env.action_space.seed(0)
    episodes = 600 if name.startswith("Recall") else 3000
    returns = [_play(env, lambda o, m: env.action_space.sample(), seed)[0] for seed in range(episodes)]
    n, c = env.n_symbols, wrong_penalty(env.n_symbols)
    p = 1.0 / n
    sd = (1.0 + c) * np.sqrt(p * (1 - p) / env.n_scored)  # of one episode's return
    assert np.mean(returns) == pytest.approx(-0.5, abs=4.5 * sd / np.sqrt(episodes))
    if name == "Recall":
        assert abs(np.mean(returns) + 0.5) < 0.02


def _support(env) -> list[tuple[int, ...]]:
    """Every stream the task draws (all equally likely): those ``validate_task`` accepts."""
    out = []
    for symbols in itertools.product(range(env.n_symbols), repeat=env.stream_length):
        try:
            env.validate_task({"symbols": symbols})
        except ValueError:
            continue
        out.append(symbols)
    return out


@pytest.mark.parametrize(
    "make", [lambda: Recall(length=3, k=1), lambda: Majority(length=3), lambda: Copy(sequence_length=2, delay=1)]
)
def test_no_memoryless_policy_beats_minus_half(make):
    """Brute force: every deterministic map from the current observation to an action, scored exactly over
    every stream the task can draw (a random memoryless policy is a mixture of these, so it does no better)."""
    env = make()
    streams = _support(env)
    keys: dict[bytes, int] = {}
    seen, targets = [], []  # per stream and step: which observation was on screen, which symbol is scored
    for symbols in streams:
        obs, _ = env.reset(options={"task": {"symbols": symbols}})
        row_obs, row_targets, done = [], [], False
        while not done:
            row_obs.append(keys.setdefault(obs.tobytes(), len(keys)))
            obs, _, done, _, info = env.step(0)
            row_targets.append(info["target"])
        seen.append(row_obs)
        targets.append(row_targets)
    seen_a, targets_a = np.array(seen), np.array(targets)
    policies = np.array(list(itertools.product(range(env.n_symbols), repeat=len(keys))))
    actions = policies[:, seen_a]  # [policy, stream, step]
    scored = targets_a >= 0
    hits = ((actions == targets_a) & scored).sum(-1)
    misses = scored.sum(-1) - hits
    returns = (hits - wrong_penalty(env.n_symbols) * misses) / env.n_scored
    expected = returns.mean(axis=1)
    assert expected.max() == pytest.approx(-0.5, abs=1e-12), f"a memoryless policy returns {expected.max()}"
    assert expected.min() == pytest.approx(-0.5, abs=1e-12)  # chance, whatever the map

    best = policies[expected.argmax()]
    replayed = []
    for symbols in streams:  # the count above agrees with what the env pays
        obs, _ = env.reset(options={"task": {"symbols": symbols}})
        total, done = 0.0, False
        while not done:
            obs, r, done, _, _ = env.step(int(best[keys[obs.tobytes()]]))
            total += r
        replayed.append(total)
    assert np.mean(replayed) == pytest.approx(expected.max(), abs=1e-12)


def test_observation_layouts_and_targets():
    env = Recall(length=5, k=2)
    obs, _ = env.reset(options={"task": {"symbols": (3, 1, 0, 0, 2)}})
    shown, targets = [obs], []
    for _ in range(5):
        obs, _, done, _, info = env.step(0)
        shown.append(obs)
        targets.append(info["target"])
    np.testing.assert_array_equal(np.array(shown)[:5].argmax(1), [3, 1, 0, 0, 2])
    np.testing.assert_array_equal(shown[5], np.zeros(4))
    assert targets == [-1, -1, 3, 1, 0] and done

    env = Majority(length=4)
    obs, _ = env.reset(options={"task": {"symbols": (2, 0, 2, 1)}})
    rows = [obs] + [env.step(0)[0] for _ in range(4)]
    np.testing.assert_array_equal(rows[4], [0, 0, 0, 0, 1])  # the query
    _, r, done, _, info = env.step(2)
    assert (r, done, info["target"], info["correct"]) == (1.0, True, 2, True)

    env = Copy(sequence_length=2, delay=2)
    obs, _ = env.reset(options={"task": {"symbols": (1, 3)}})
    rows, targets = [obs], []
    for _ in range(6):
        obs, _, done, _, info = env.step(0)
        rows.append(obs)
        targets.append(info["target"])
    expected = np.zeros((7, 5))
    expected[0, 1] = expected[1, 3] = expected[4, 4] = expected[5, 4] = 1.0
    np.testing.assert_array_equal(np.array(rows), expected)
    assert targets == [-1, -1, -1, -1, 1, 3] and done


@pytest.mark.parametrize("name", IDS)
def test_same_seed_same_symbol_stream(name):
    def run(seed: int):
        env = _make(name)
        obs, info = env.reset(seed=seed)
        tasks, observations = [info["task"]], [obs]
        for _ in range(3):
            done = False
            while not done:
                obs, _, done, _, _ = env.step(0)
                observations.append(obs)
            obs, info = env.reset()
            tasks.append(info["task"])
            observations.append(obs)
        return tasks, np.array(observations)

    tasks_a, obs_a = run(7)
    tasks_b, obs_b = run(7)
    assert tasks_a == tasks_b and np.array_equal(obs_a, obs_b)
    assert run(8)[0] != tasks_a
    assert len({t["symbols"] for t in tasks_a}) > 1, "each reset draws a new stream"


@pytest.mark.parametrize("cls", CLASSES)
def test_set_task_fixes_the_stream_and_options_override_one_episode(cls):
    env = cls()
    env.reset(seed=0)
    task, other = env.sample_tasks(2)
    assert all(env.validate_task(t) == t for t in env.sample_tasks(50))
    env.set_task({"symbols": list(task["symbols"])})  # any sequence of ints; kept as a tuple
    assert env.reset()[1]["task"] == task and env.step(0)[4]["task"] == task
    assert env.reset(options={"task": other})[1]["task"] == other
    assert env.reset()[1]["task"] == task and env.get_task() == task
    env.set_task(None)
    assert any(env.reset()[1]["task"] != task for _ in range(5))


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("action", [-1, "n", 1.0, True, np.array([0, 1]), None])
def test_actions_outside_the_space_are_refused(cls, action):
    env = cls()
    env.reset(seed=0)
    bad = env.action_space.n if isinstance(action, str) else action
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.step: action .* action space Discrete\(4\)"):
        env.step(bad)
    for good in (np.int64(1), np.array(0), np.array([1], dtype=np.int32)):
        env.step(good)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: Recall(k=0), ["k=0", "[1, 51]"]),
        (lambda: Recall(length=10, k=10), ["k=10", "[1, 9]"]),
        (lambda: Recall(n_symbols=3), ["n_symbols=3", "[4, 64]"]),
        (lambda: Recall(length=2.5), ["length=2.5", "not an integer"]),
        (lambda: Majority(length=0), ["length=0", "[1, 100000]"]),
        (lambda: Copy(delay=-1), ["delay=-1", "[0, 100000]"]),
        (lambda: Copy(sequence_length=True), ["sequence_length=True", "not an integer"]),
    ],
)
def test_bad_parameters_are_refused_naming_the_range(make, words):
    with pytest.raises(ValueError) as err:
        make()
    for w in words:
        assert w in str(err.value)


@pytest.mark.parametrize("cls", CLASSES)
def test_reset_refuses_unknown_or_mistyped_options(cls):
    env = cls()
    name = cls.__name__
    with pytest.raises(ValueError, match=rf"{name}\.reset: unknown options key\(s\) \['tsk'\]; valid keys are"):
        env.reset(seed=0, options={"tsk": None})
    with pytest.raises(ValueError, match=rf"{name}\.reset: options=\['task'\] is not a dict"):
        env.reset(seed=0, options=["task"])
    env.reset(seed=0, options={"task": None})


@pytest.mark.parametrize("name", IDS)
def test_rgb_array_shows_the_current_observation_and_vec_envs_are_quiet(name):
    env = gym.make(f"neuromod_rl/{name}-v0", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(env.render(), observation_image(obs))
    obs, *_ = env.step(0)
    np.testing.assert_array_equal(env.render(), observation_image(obs))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_vec_env(f"neuromod_rl/{name}-v0", n_envs=2, seed=0).close()
