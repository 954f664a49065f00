"""The oracle, Markov and reactive bounds: what each input holds, their spaces, and every adaptation task
with each of them."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import neuromod_rl  # noqa: F401  (registers the ids)
from neuromod_rl.envs import BOUNDS, PrevActionReward, TaskInObservation, bound_env
from neuromod_rl.envs.registration import ENV_IDS

#: every registered task distribution that encodes its tasks (the oracle bound exists for it)
ADAPTATION_IDS = [f"neuromod_rl/{name}-v0" for name in (
    "HiddenGoalCorridor", "HalfCheetahHiddenGoal", "HalfCheetahCueDir", "ReacherHiddenGoal", "ReacherCue",
    "HalfCheetahVel", "HalfCheetahDir",
    "AntDir", "AntGoal", "CrippledHalfCheetah", "CrippledAnt", "HalfCheetahRandParams", "HopperRandParams")]
FEATURE_SIZES = {"HiddenGoalCorridor": 1, "HalfCheetahHiddenGoal": 1, "HalfCheetahCueDir": 1, "HalfCheetahVel": 1,
                 "ReacherHiddenGoal": 2, "ReacherCue": 2,
                 "HalfCheetahDir": 1, "AntDir": 2, "AntGoal": 2, "CrippledHalfCheetah": 6, "CrippledAnt": 4}


def test_the_adaptation_list_is_every_registered_id_with_a_task_encoding():
    encoded = []
    for env_id in ENV_IDS:
        base = gym.make(env_id).unwrapped
        try:
            base.task_feature_space()
        except (NotImplementedError, AttributeError):
            continue
        encoded.append(env_id)
    assert sorted(encoded) == sorted(ADAPTATION_IDS)


@pytest.mark.parametrize("env_id", ADAPTATION_IDS)
@pytest.mark.parametrize("bound", BOUNDS)
def test_every_adaptation_task_works_with_each_bound(env_id, bound):
    env = bound_env(env_id, bound)
    raw = gym.make(env_id)
    act = raw.action_space
    n_raw, n_act = raw.observation_space.shape[0], act.n if isinstance(act, gym.spaces.Discrete) else act.shape[0]
    n_task = env.unwrapped.task_feature_space().shape[0]
    expected = {"oracle": n_raw + n_act + 2 + n_task, "markov": n_raw, "reactive": n_raw + n_act + 2}[bound]
    assert env.observation_space.shape == (expected,) and env.observation_space.dtype == np.float32
    obs, info = env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(5):
        assert env.observation_space.contains(obs), (env_id, bound)
        if bound == "oracle":
            np.testing.assert_array_equal(obs[-n_task:], env.unwrapped.task_features(info["task"]))
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, info = env.reset()
    name = env_id.split("/")[1][:-3]
    assert n_task == FEATURE_SIZES.get(name, n_task)


def test_the_markov_bound_is_the_raw_observation_and_the_reactive_one_adds_previous_action_and_reward():
    markov, reactive = bound_env("neuromod_rl/HiddenGoalCorridor-v0", "markov"), bound_env(
        "neuromod_rl/HiddenGoalCorridor-v0", "reactive")
    assert markov.observation_space == markov.unwrapped.observation_space  # gymnasium.make's wrappers only
    assert isinstance(reactive, PrevActionReward)
    for env in (markov, reactive):
        env.reset(seed=0, options={"task": {"goal": 3}})
    for _ in range(3):
        m, *_ = markov.step(2)
        r, *_ = reactive.step(2)
    np.testing.assert_array_equal(m, [1.0])
    np.testing.assert_array_equal(r, [1.0, 0.0, 0.0, 1.0, 1.0, 0.0])  # obs, right one-hot, reward 1, done 0


def test_the_oracle_observation_carries_the_task_and_changes_with_it():
    env = bound_env("neuromod_rl/HalfCheetahVel-v0", "oracle")
    assert isinstance(env, TaskInObservation)
    space = env.observation_space
    body = gym.make("neuromod_rl/HalfCheetahVel-v0").observation_space.shape[0]
    assert space.low[-1] == -1.0 and space.high[-1] == 1.0 and np.isinf(space.low[:body]).all()
    low, _ = env.reset(seed=0, options={"task": {"velocity": 0.0}})
    high, _ = env.reset(seed=0, options={"task": {"velocity": 3.0}})
    mid, _ = env.reset(seed=0, options={"task": {"velocity": 1.5}})
    assert (low[-1], mid[-1], high[-1]) == (-1.0, 0.0, 1.0)
    np.testing.assert_array_equal(low[:-1], high[:-1])  # same seed, same body: only the task part differs


def test_the_oracle_follows_a_mid_episode_switch():
    env = bound_env("neuromod_rl/CrippledHalfCheetah-v0", "oracle", change_at=2)
    obs, _ = env.reset(seed=0, options={"task": {"limb": 3}})
    seen = [obs[-6:]]
    for _ in range(3):
        obs, *_ = env.step(np.zeros(6, dtype=np.float32))
        seen.append(obs[-6:])
    intact, fthigh = np.zeros(6), np.eye(6)[3]
    for features, want in zip(seen, [intact, intact, intact, fthigh], strict=True):
        np.testing.assert_array_equal(features, want)  # the limb breaks on step index 2


def test_task_features_of_the_locomotion_and_random_parameter_tasks():
    ant = gym.make("neuromod_rl/AntDir-v0").unwrapped
    np.testing.assert_allclose(ant.task_features({"angle": np.pi / 2}), [0.0, 1.0], atol=1e-7)
    goal = gym.make("neuromod_rl/AntGoal-v0").unwrapped
    np.testing.assert_allclose(goal.task_features({"goal": (-3.0, 0.0)}), [-1.0, 0.0])
    params = gym.make("neuromod_rl/HopperRandParams-v0").unwrapped
    np.testing.assert_array_equal(params.task_features(params.neutral_task()), 0.0)
    features = params.task_features(params.sample_tasks(1)[0])
    assert features.shape == params.task_feature_space().shape and np.abs(features).max() <= 1.0
    assert np.abs(features).max() > 0.5


def test_unknown_bound_and_tasks_without_an_encoding_are_refused():
    with pytest.raises(ValueError, match=r"bound='memory' is not valid; valid values are \['oracle', 'markov'"):
        bound_env("neuromod_rl/HiddenGoalCorridor-v0", "memory")
    with pytest.raises(ValueError, match="Recall does not encode its tasks"):
        bound_env("neuromod_rl/Recall-v0", "oracle")
    with pytest.raises(ValueError, match="has no tasks to show"):
        TaskInObservation(gym.make("neuromod_rl/CartPoleNoVel-v1"))
    with pytest.raises(ValueError, match="call reset"):
        gym.make("neuromod_rl/HiddenGoalCorridor-v0").unwrapped.task_features()


def test_bound_env_passes_trial_episodes_and_env_arguments_on():
    env = bound_env("neuromod_rl/HiddenGoalCorridor-v0", "oracle", trial_episodes=2, episode_length=20)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (8,)  # constant, first-step flag, previous action (one-hot), reward, done, goal
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(1)
        steps, done = steps + 1, terminated or truncated
    assert steps == 40
