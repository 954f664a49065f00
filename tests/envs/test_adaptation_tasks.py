"""Tasks where memory is necessary: protocol, checkers, bad input, and the claim that a reactive agent
(observation + previous action and reward) falls well short of the oracle, checked exactly on the
corridor and on its premises (with scripted policies) on the two HalfCheetah bodies (the Reacher arm's in
test_reacher_tasks.py)."""

from __future__ import annotations

import itertools
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import neuromod_rl  # noqa: F401  (registers the ids)
from neuromod_rl.envs import HiddenGoalCorridor, bound_env

CORRIDOR, HIDDEN_GOAL, CUE_DIR = (
    "neuromod_rl/HiddenGoalCorridor-v0", "neuromod_rl/HalfCheetahHiddenGoal-v0", "neuromod_rl/HalfCheetahCueDir-v0")
REACHER_HIDDEN, REACHER_CUE = "neuromod_rl/ReacherHiddenGoal-v0", "neuromod_rl/ReacherCue-v0"
NEW_IDS = [CORRIDOR, HIDDEN_GOAL, CUE_DIR, REACHER_HIDDEN, REACHER_CUE]  # the Reacher tasks' own: test_reacher_tasks
UNBOUNDED = ("minimum value is -infinity", "maximum value is infinity")  # the v5 bodies' observations

# open-loop sinusoid gaits of the HalfCheetah (found by a random search): 17-24 m forward / backward in
# 190 steps from a fresh body; scripted policies use them as a running skill
FORWARD = (1.075, np.array([5.95, 2.195, 4.745, 0.411, 1.044, 1.741]))
BACKWARD = (1.385, np.array([0.613, 2.365, 2.868, 5.603, 2.634, 1.664]))
STILL = np.zeros(6, dtype=np.float32)


def _gait(gait: tuple[float, np.ndarray], t: int) -> np.ndarray:
    return np.sin(gait[0] * t + gait[1]).astype(np.float32)


# --------------------------------------------------------------------------- protocol and checkers
@pytest.mark.parametrize("env_id", NEW_IDS)
def test_both_env_checkers_pass(env_id):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = gym.make(env_id)
        gym_check_env(env.unwrapped, skip_render_check=True)  # rendering: tests/envs/test_render_all.py
        sb3_check_env(env, warn=True)
        env.close()
    assert [str(w.message) for w in caught if not any(u in str(w.message) for u in UNBOUNDED)] == []


def _rollout(env: gym.Env, seed: int, episodes: int = 3, steps: int = 15):
    env.action_space.seed(5)
    actions = [env.action_space.sample() for _ in range(steps)]
    obs, info = env.reset(seed=seed)
    tasks, observations, rewards = [info["task"]], [obs], []
    for _ in range(episodes):
        for a in actions:
            obs, reward, _, _, info = env.step(a)
            observations.append(obs)
            rewards.append(reward)
        obs, info = env.reset()
        tasks.append(info["task"])
    return tasks, observations, rewards


@pytest.mark.parametrize("env_id", NEW_IDS)
def test_same_seed_same_tasks_observations_and_rewards(env_id):
    a, b, c = (_rollout(gym.make(env_id), seed) for seed in (3, 3, 4))
    assert a[0] == b[0] and a[2] == b[2]
    assert all(np.array_equal(x, y) for x, y in zip(a[1], b[1], strict=True))
    assert a[0] != c[0]


@pytest.mark.parametrize(
    ("env_id", "task", "other"),
    [(CORRIDOR, {"goal": -4}, {"goal": 6}), (HIDDEN_GOAL, {"goal": -2.5}, {"goal": 3.0}),
     (CUE_DIR, {"direction": -1}, {"direction": 1}), (REACHER_HIDDEN, {"target": (0.1, 0.0)}, {"target": (0.0, -0.2)}),
     (REACHER_CUE, {"target": (-0.1, 0.1)}, {"target": (0.05, 0.0)})],
)
def test_set_task_fixes_reset_option_overrides_and_info_reports_it(env_id, task, other):
    env = gym.make(env_id)
    u = env.unwrapped
    seen = [env.reset(seed=s)[1]["task"] for s in range(8)]
    assert len({tuple(t.values()) for t in seen}) > 1, "each reset should draw a new task"
    assert all(u.validate_task(t) == t for t in u.sample_tasks(20))
    u.set_task(task)
    assert env.reset()[1]["task"] == task and env.step(env.action_space.sample())[4]["task"] == task
    assert env.reset(options={"task": other})[1]["task"] == other and u.get_task() == other
    assert env.reset()[1]["task"] == task
    np.testing.assert_array_equal(u.task_features(), u.task_features(task))


@pytest.mark.parametrize(
    ("env_id", "task", "words"),
    [
        (CORRIDOR, {"goal": 2}, ["task['goal']=2", "too close", "3..6"]),
        (CORRIDOR, {"goal": 7}, ["task['goal']=7", "[-6, 6]"]),
        (CORRIDOR, {"goal": 4.0}, ["not an integer"]),
        (CORRIDOR, {"goal": 4, "side": 1}, ["unknown keys ['side']"]),
        (HIDDEN_GOAL, {"goal": 1.0}, ["too close", "2.0 <= |goal| <= 4.0"]),
        (HIDDEN_GOAL, {"goal": -5.0}, ["task['goal']=-5.0", "[-4.0, 4.0]"]),
        (HIDDEN_GOAL, [3.0], ["not a dict"]),
        (CUE_DIR, {"direction": 0}, ["task['direction']=0", "[-1, 1]"]),
        (CUE_DIR, {}, ["missing keys ['direction']"]),
    ],
)
def test_bad_tasks_are_refused_naming_the_field_and_range(env_id, task, words):
    env = gym.make(env_id)
    for call in (env.unwrapped.set_task, lambda t: env.reset(seed=0, options={"task": t}),
                 env.unwrapped.task_features):
        with pytest.raises(ValueError) as err:
            call(task)
        assert all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: HiddenGoalCorridor(distance_range=(0, 3)), ["distance_range[0]=0", "[1, 1000]"]),
        (lambda: HiddenGoalCorridor(distance_range=(3, 6), episode_length=10), ["episode_length=10", "[18,"]),
        (lambda: HiddenGoalCorridor(distance_range=3), ["(low, high) pair"]),
        (lambda: gym.make(HIDDEN_GOAL, radius=2.5), ["distance_range[0]=2.0", "radius=2.5"]),
        (lambda: gym.make(HIDDEN_GOAL, exclude_current_positions_from_observation=False), ["hides on purpose"]),
        (lambda: gym.make(CUE_DIR, exclude_current_positions_from_observation=False), ["hides on purpose"]),
        (lambda: gym.make(CUE_DIR, cue_steps=0), ["cue_steps=0", "[1, 100000]"]),
        (lambda: gym.make(CUE_DIR, change_at=50), ["change_at=50 is not supported"]),
        (lambda: gym.make(CUE_DIR, cue_steps=10, episode_length=10), ["episode_length=10", "[11, 100000]"]),
        (lambda: gym.make(CUE_DIR).reset(options={"next_task": {"direction": 1}}), ["unknown options", "['task']"]),
    ],
)
def test_bad_parameters_and_options_are_refused(make, words):
    with pytest.raises(ValueError) as err:
        make()
    assert all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize(("env_id", "action"), [(CORRIDOR, 3), (CORRIDOR, 1.0), (HIDDEN_GOAL, np.full(6, 2.0)),
                                                (CUE_DIR, np.zeros(5))])
def test_bad_actions_are_refused(env_id, action):
    env = gym.make(env_id)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action space"):
        env.step(action)


def test_the_cue_is_shown_only_in_the_cue_phase_and_the_run_is_paid_at_the_end():
    env = gym.make(CUE_DIR, cue_steps=3, episode_length=8)
    obs, info = env.reset(seed=0, options={"task": {"direction": -1}})
    cues, flags, rewards, infos = [obs[-2]], [obs[-1]], [], []
    for _ in range(8):
        obs, reward, terminated, truncated, info = env.step(_gait(BACKWARD, len(rewards)))
        cues.append(obs[-2])
        flags.append(obs[-1])
        rewards.append(reward)
        infos.append(info)
    assert cues == [-1, -1, -1, 0, 0, 0, 0, 0, 0] and flags == [0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert terminated and not truncated
    assert [i["phase"] for i in infos] == ["cue", "cue", "go", "go", "go", "go", "go", "go"]
    assert all(i["reward_direction"] == 0.0 for i in infos[:-1])
    assert infos[-1]["reward_direction"] == pytest.approx(-infos[-1]["displacement"])
    assert rewards[-1] == pytest.approx(infos[-1]["reward_direction"] + infos[-1]["reward_ctrl"])


# --------------------------------------------------------------------------- the corridor's bounds, exactly
def _corridor_returns(policies: np.ndarray, env: HiddenGoalCorridor) -> np.ndarray:
    """Exact expected return (mean over the task set) of reactive policies that stay once paid.

    ``policies[k, i]`` is policy k's action distribution while unpaid, given its previous action
    ``i`` in (none, left, stay, right). Staying after a reward earns every later step, the most any
    policy can, so these returns bound those of every reactive policy with the same unpaid behaviour.
    """
    low, high = env.distance_range
    T = env.episode_length
    goals = [s * d for d in range(low, high + 1) for s in (1, -1)]
    total = np.zeros(len(policies))
    for goal in goals:
        dist = np.zeros((len(policies), 2 * T + 1, 4))  # position (offset T) x previous action
        dist[:, T, 0] = 1.0
        for t in range(1, T + 1):
            new = np.zeros_like(dist)
            for a in range(3):
                mass = np.einsum("kpi,ki->kp", dist, policies[:, :, a])
                new[:, :, a + 1] = np.roll(mass, a - 1, axis=1)
            total += new[:, T + goal].sum(-1) * (T - t + 1) * env.goal_reward  # first reward at step t
            new[:, T + goal] = 0.0
            dist = new
    return total / len(goals)


def _play_corridor(policy, bound: str) -> float:
    """Mean return over the whole task set of a scripted policy playing ``bound_env(CORRIDOR, bound)``."""
    env = bound_env(CORRIDOR, bound)
    u = env.unwrapped
    goals = [s * d for d in range(u.distance_range[0], u.distance_range[1] + 1) for s in (1, -1)]
    returns = []
    for goal in goals:
        obs, _ = env.reset(seed=0, options={"task": {"goal": goal}})
        total, done, t = 0.0, False, 0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs, t))
            total, done, t = total + reward, terminated or truncated, t + 1
        returns.append(total)
    return float(np.mean(returns))


def _reactive_input(obs: np.ndarray) -> tuple[int, float]:
    """(previous action index in (none, left, stay, right), previous reward) from PrevActionReward's layout."""
    onehot = obs[1:4]
    return (0 if onehot.max() == 0 else int(onehot.argmax()) + 1), float(obs[4])


def test_no_deterministic_reactive_policy_beats_half_the_oracle_in_the_corridor():
    env = HiddenGoalCorridor()
    tables = np.array(list(itertools.product(range(3), repeat=4)))  # every unpaid behaviour: 81
    policies = np.eye(3)[tables]
    returns = _corridor_returns(policies, env)

    def oracle(obs, t):  # the oracle bound's observation ends with goal / 6: walk straight there and stay
        goal = round(float(obs[-1]) * env.distance_range[1])
        return 1 if t >= abs(goal) else (2 if goal > 0 else 0)

    oracle = _play_corridor(oracle, "oracle")
    assert oracle == pytest.approx(36.5)
    assert returns.max() == pytest.approx(oracle / 2) == pytest.approx(18.25)

    # the exact computation agrees with the env, played through the reactive bound's input
    for k in [int(returns.argmax()), 0, 40, 80, 17, 63]:
        def policy(obs, t, table=tables[k]):
            prev, reward = _reactive_input(obs)
            return 1 if reward > 0 else int(table[prev])
        assert _play_corridor(policy, "reactive") == pytest.approx(returns[k])


def test_stochastic_reactive_policies_stay_far_below_a_memory_sweep_and_the_oracle():
    env = HiddenGoalCorridor()
    rng = np.random.default_rng(0)
    random = rng.dirichlet(np.full(3, 0.5), size=(3000, 4))
    turns = np.linspace(0.0, 1.0, 101)  # walk right, turn left for good with this probability per step
    family = np.zeros((101, 4, 3))
    family[:, [0, 2], 2], family[:, 1, 0] = 1.0, 1.0
    family[:, 3, 0], family[:, 3, 2] = turns, 1 - turns
    best_random, best_family = _corridor_returns(random, env).max(), _corridor_returns(family, env).max()

    def sweep(obs, t):  # memory: a step counter
        _, reward = _reactive_input(obs)
        return 1 if reward > 0 else (2 if t < 6 else 0)

    memory = _play_corridor(sweep, "reactive")
    assert memory == pytest.approx(30.5)
    assert best_random < best_family == pytest.approx(22.57, abs=0.01)
    assert max(best_random, best_family) < memory - 7.5


def test_a_markov_policy_cannot_stop_on_the_goal_and_gets_almost_nothing():
    env = HiddenGoalCorridor()
    T, grid = env.episode_length, np.linspace(0, 1, 51)
    dists = np.array([(a, b, 1 - a - b) for a in grid for b in grid if a + b <= 1 + 1e-9]).clip(0, 1)
    visits = np.zeros(len(dists))
    goals = [s * d for d in range(3, 7) for s in (1, -1)]
    for goal in goals:  # one fixed action distribution everywhere: expected steps spent on the goal
        p = np.zeros((len(dists), 2 * T + 1))
        p[:, T] = 1.0
        for _ in range(T):
            p = sum(np.roll(p * dists[:, a : a + 1], a - 1, axis=1) for a in range(3))
            visits += p[:, T + goal]
    assert (visits / len(goals)).max() < 2.5 < 18.25


# --------------------------------------------------------------------------- the HalfCheetah tasks' premises
def _hidden_goal_stream(goal: float, actions: list[np.ndarray]):
    env = gym.make(HIDDEN_GOAL)
    obs, _ = env.reset(seed=1, options={"task": {"goal": goal}})
    stream = [(obs, 0.0, 0.0)]
    for a in actions:
        obs, reward, _, _, info = env.step(a)
        stream.append((obs, reward, info["reward_goal"]))
    return stream


def test_mirrored_hidden_goals_look_the_same_until_one_is_reached():
    """The premise of the reactive bound: before the first goal reward no input depends on the side."""
    actions = [_gait(FORWARD, t) for t in range(120)]
    right, left = _hidden_goal_stream(2.0, actions), _hidden_goal_stream(-2.0, actions)
    reached = next(t for t, s in enumerate(right[1:], 1) if s[2] > 0)
    assert 10 < reached < 120 and all(s[2] == 0 for s in left[1:])
    for t in range(reached):
        np.testing.assert_array_equal(right[t][0], left[t][0])
        assert right[t][1] == left[t][1]
    assert right[reached][1] != left[reached][1]


def _goal_steps(goal: float, policy, seed: int) -> int:
    """Steps paid by the goal in one 300-step episode with goals at 1.5-2.5 m."""
    env = gym.make(HIDDEN_GOAL, distance_range=(1.5, 2.5), max_episode_steps=300)
    obs, _ = env.reset(seed=seed, options={"task": {"goal": goal}})
    memory, paid, done, t, steps = {"x": 0.0, "back": False}, 0.0, False, 0, 0
    while not done:
        obs, _, terminated, truncated, info = env.step(policy(t, paid, memory))
        memory["x"] += float(obs[8]) * env.unwrapped.dt  # obs[8] is the forward velocity
        paid, done, t = info["reward_goal"], terminated or truncated, t + 1
        steps += paid > 0
    return steps


@pytest.mark.parametrize("seed", [0, 1])
def test_a_one_way_runner_never_finds_the_mirrored_goal_and_a_memory_sweep_finds_both(seed):
    def runner(gait):  # reactive: run, stand still while paid (the gait's clock is a rhythm, not a count)
        return lambda t, paid, memory: STILL if paid > 0 else _gait(gait, t)

    def sweep(t, paid, memory):  # memory: path integration, turn back once past the farthest goal
        memory["back"] = memory["back"] or memory["x"] > 3.0
        return STILL if paid > 0 else _gait(BACKWARD if memory["back"] else FORWARD, t)

    assert _goal_steps(2.0, runner(FORWARD), seed) > 0 and _goal_steps(-2.0, runner(FORWARD), seed) == 0
    assert _goal_steps(-2.0, runner(BACKWARD), seed) > 0 and _goal_steps(2.0, runner(BACKWARD), seed) == 0
    assert _goal_steps(2.0, sweep, seed) > 0 and _goal_steps(-2.0, sweep, seed) > 0


def _cue_run(direction: int, policy, seed: int) -> float:
    env = gym.make(CUE_DIR)
    obs, _ = env.reset(seed=seed, options={"task": {"direction": direction}})
    state, done, t, prev = {}, False, 0, (STILL, 0.0)
    while not done:
        action = policy(t, obs, prev, state)
        obs, reward, terminated, truncated, info = env.step(action)
        prev, done, t = (action, reward), terminated or truncated, t + 1
    return info["reward_direction"]


def test_cue_direction_payments_of_policies_blind_to_the_cue_cancel_exactly_and_memory_earns_metres():
    rng = np.random.default_rng(0)
    weights = [rng.normal(0, 0.5, size=(6, 19)) for _ in range(2)]

    def feedback(w):  # reactive: the current observation (the cue too, while shown) and the previous reward
        return lambda t, obs, prev, state: np.tanh(w @ obs + prev[1]).astype(np.float32)

    blind = [lambda t, obs, prev, state: STILL, lambda t, obs, prev, state: _gait(FORWARD, t),
             lambda t, obs, prev, state: _gait(BACKWARD, t), *map(feedback, weights)]
    for policy in blind:
        for seed in (0, 1):
            # the go phase starts from the same fresh body whatever the cue phase did, so the run is the same
            assert _cue_run(1, policy, seed) == pytest.approx(-_cue_run(-1, policy, seed), abs=1e-9)

    def remember(t, obs, prev, state):  # memory: keep the cue, run that way from the fresh body of the go phase
        state.setdefault("cue", obs[17])
        return _gait(FORWARD if state["cue"] > 0 else BACKWARD, t - 10)

    earned = [_cue_run(d, remember, seed) for d in (1, -1) for seed in (0, 1)]
    assert min(earned) > 5.0 and np.mean(earned) > 10.0
