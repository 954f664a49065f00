"""A NaN/inf outside PlasticPPO is traced to its source too, never trained on nor returned as an action:
evolution strategies (every search algorithm, batched or member by member) and PlasticSAC / PlasticTD3
name the env's reward or observation (with where and when), the weights, the state passed in or the
traces, with a ``FloatingPointError`` (exit code 2 in the CLI). Sizes that cannot work are refused
before anything is allocated: an ES population beyond the machine's memory, and a replay buffer saved
by a model with another plastic core or number of envs."""

from __future__ import annotations

import sys

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.vec_env import DummyVecEnv
from support import write_config

import neuromod_rl  # noqa: F401
from neuromod_rl.agents import ESTrainer, PlasticSAC, PlasticTD3
from neuromod_rl.agents.es import Evaluator, algorithms
from neuromod_rl.agents.es.algorithms import ALGORITHMS
from neuromod_rl.agents.es.params import get_vector
from neuromod_rl.cli import main


class NonFiniteAt(gym.Env):
    """Three-float observations, ``length``-step episodes; at step ``at`` of every episode the reward is
    ``value`` (``bad="reward"``) or the observation's second entry is (``bad="observation"``); ``at=0``
    spoils the observation ``reset`` returns. As a buggy env would."""

    def __init__(self, bad: str = "reward", at: int = 3, value: float = float("nan"), length: int = 6,
                 continuous: bool = False):  # fmt: skip
        self.observation_space = spaces.Box(-1, 1, (3,), np.float32)
        self.action_space = spaces.Box(-1, 1, (1,), np.float32) if continuous else spaces.Discrete(2)
        self.bad, self.at, self.value, self.length = bad, at, value, length

    def _obs(self) -> np.ndarray:
        obs = np.full(3, 0.1 * self.t, np.float32)
        if self.bad == "observation" and self.t == self.at:
            obs[1] = self.value
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        reward = self.value if self.bad == "reward" and self.t == self.at else 0.5
        return self._obs(), reward, self.t >= self.length, False, {}


gym.register("neuromod_rl_test/NonFiniteAt-v0", entry_point=NonFiniteAt)

NAN, INF = float("nan"), float("inf")


# ------------------------------------------------------------------------------ evolution strategies
def es(env: gym.Env, **kw) -> ESTrainer:
    settings = dict(policy_kwargs=dict(rule="neuromod", hidden_size=4), popsize=4, episodes_per_member=2,
                    chunk_size=4, num_actors=0, seed=0)  # fmt: skip
    return ESTrainer("MlpPlasticPolicy", env, **{**settings, **kw})


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_es_names_a_nan_reward_for_every_search_algorithm(algorithm):
    model = es(NonFiniteAt("reward", at=3), algorithm=algorithm)
    with pytest.raises(FloatingPointError, match=r"non-finite reward \(nan\) in episode 0 of population member 0 "
                                                 r"\(generation 0\) at step 3"):  # fmt: skip
        model.learn(10**9, generations=1)


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "member-by-member"])
def test_es_names_an_inf_reward_and_a_nan_observation(batched):
    with pytest.raises(FloatingPointError, match=r"non-finite reward \(inf\) in episode 0 of population member 0"):
        es(NonFiniteAt("reward", at=2, value=INF), batched=batched).learn(10**9, generations=1)
    with pytest.raises(FloatingPointError, match=r"observation holding NaN/inf in episode 0 of population member 0 "
                                                 r"\(generation 0\) at step 4"):  # fmt: skip
        es(NonFiniteAt("observation", at=4), batched=batched).learn(10**9, generations=1)
    with pytest.raises(FloatingPointError, match=r"observation holding NaN/inf in episode 0 .* at step 0 \(reset\)"):
        es(NonFiniteAt("observation", at=0), batched=batched).learn(10**9, generations=1)


def test_es_names_a_fitness_that_leaves_the_float_range():
    # finite rewards, but the mean return of two episodes of 1.7e308 each overflows
    with pytest.raises(FloatingPointError, match=r"population member 0 \(generation 0\) scored a non-finite "
                                                 r"fitness \(inf\).*scale the env's rewards down"):  # fmt: skip
        es(NonFiniteAt("reward", at=3, value=1.7e308)).learn(10**9, generations=1)


@pytest.mark.slow
def test_es_on_ray_actors_names_the_source_without_the_actor_traceback(ray_session):
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import this test module
    try:
        with pytest.raises(FloatingPointError) as info:
            es(NonFiniteAt("reward", at=3), num_actors=1).learn(10**9, generations=1)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert str(info.value).startswith("the env returned a non-finite reward (nan) in episode 0 of population member 0")
    assert "Traceback" not in str(info.value)


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "member-by-member"])
def test_es_names_the_member_whose_weights_are_not_finite(batched):
    model = es(NonFiniteAt("reward", at=99), batched=batched)
    vectors = get_vector(model.policy, model.param_names).repeat(3, 1)
    vectors[1, :] = NAN
    with pytest.raises(FloatingPointError, match=r"population member 1 \(generation 0\): .*weight '.*' holds NaN/inf"):
        Evaluator(model.eval_spec()).evaluate(vectors, generation=0)


def test_es_score_refuses_a_nan_observation():
    model = es(NonFiniteAt("reward", at=99))
    assert np.isfinite(model.score(episodes=2)).all()
    with pytest.raises(FloatingPointError, match=r"observation holding NaN/inf in episode 0"):
        model.score(env=NonFiniteAt("observation", at=1), episodes=2)


def test_es_refuses_a_population_beyond_memory_before_allocating(monkeypatch):
    monkeypatch.setattr(algorithms, "physical_memory", lambda: 2**30)  # a 1 GiB machine, whatever runs the test
    with pytest.raises(ValueError, match=r"popsize=100,000,000 .* needs at least [\d,]+ bytes \([\d.]+ GiB.*"
                                         r"more than this machine.s 1\.0 GiB.*lower popsize"):  # fmt: skip
        es(NonFiniteAt(), popsize=100_000_000)
    # CMA-ES's full covariance counts too: D x D, whatever the population
    with pytest.raises(ValueError, match=r"covariance"):
        es(NonFiniteAt(), algorithm="cmaes", policy_kwargs=dict(rule="neuromod", hidden_size=48))
    es(NonFiniteAt(), algorithm="cmaes", policy_kwargs=dict(rule="neuromod", hidden_size=48),
       algorithm_kwargs={"separable": True})  # fmt: skip
    assert es(NonFiniteAt(), popsize=64).settings["popsize"] == 64


def test_cli_es_exits_2_naming_the_population_size_or_the_nan_reward(tmp_path, capsys):
    es_keys = dict(algo="es", n_envs=1, n_timesteps=200, checkpoint_freq=1)
    cfg = write_config(tmp_path / "huge.yaml", **es_keys, hyperparameters={"popsize": 10**12, "num_actors": 0})
    assert main(["train", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "popsize=1,000,000,000,000" in err and "GiB" in err and "Traceback" not in err
    cfg = write_config(tmp_path / "nan.yaml", **es_keys, env="neuromod_rl_test/NonFiniteAt-v0",
                       env_kwargs={"bad": "reward", "at": 3},
                       hyperparameters={"popsize": 4, "episodes_per_member": 2, "chunk_size": 4, "num_actors": 0})
    assert main(["train", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "non-finite reward (nan) in episode 0 of population member 0" in err and "Traceback" not in err


# ------------------------------------------------------------------------------ PlasticSAC / PlasticTD3
OFF_POLICY = [PlasticSAC, PlasticTD3]


def off_policy(algo, env, **kw):
    settings = dict(buffer_size=2_000, learning_starts=8, batch_size=8, sequence_length=4, seed=0,
                    policy_kwargs=dict(hidden_size=4, net_arch=[8]))  # fmt: skip
    if algo is PlasticTD3:
        settings["action_noise"] = NormalActionNoise(np.zeros(1), 0.1 * np.ones(1))
    return algo("MlpPlasticPolicy", env, **{**settings, **kw})


def vec(*envs: NonFiniteAt) -> DummyVecEnv:
    return DummyVecEnv([lambda e=e: e for e in envs])


@pytest.mark.parametrize("value", [NAN, INF], ids=["nan", "inf"])
@pytest.mark.parametrize("algo", OFF_POLICY, ids=["sac", "td3"])
def test_off_policy_names_a_non_finite_reward_before_it_reaches_the_weights(algo, value):
    # 2 envs; env 1 pays the bad reward at its step 9 (global step 18), after updates have begun (from
    # step 10): before, it reached the critic and the error blamed the weights, or nothing was said
    good = NonFiniteAt("reward", at=99, continuous=True)
    model = off_policy(algo, vec(good, NonFiniteAt("reward", at=9, value=value, length=10, continuous=True)))
    with pytest.raises(FloatingPointError, match=rf"non-finite reward \({value}\) in env 1 at step 18"):
        model.learn(100)
    assert all(bool(torch.isfinite(p).all()) for p in model.policy.parameters())


@pytest.mark.parametrize("algo", OFF_POLICY, ids=["sac", "td3"])
def test_off_policy_names_a_nan_observation_and_its_env(algo):
    good = NonFiniteAt("reward", at=99, continuous=True)
    model = off_policy(algo, vec(good, NonFiniteAt("observation", at=4, continuous=True)))
    with pytest.raises(FloatingPointError, match=r"observation holding NaN/inf in env 1 at step 8"):
        model.learn(100)
    # the last observation of an episode reaches the buffer as a next observation, not through reset
    model = off_policy(algo, vec(NonFiniteAt("observation", at=6, length=6, continuous=True)))
    with pytest.raises(FloatingPointError, match=r"observation holding NaN/inf \(the terminal observation\) in env 0 "
                                                 r"at step 6"):  # fmt: skip
        model.learn(100)


def _predict(model, obs, state=None, start=True):
    return model.predict(obs, state=state, episode_start=np.full(len(obs), start), deterministic=True)


@pytest.mark.parametrize("algo", OFF_POLICY, ids=["sac", "td3"])
def test_off_policy_predict_never_returns_a_nan_action(algo):
    model = off_policy(algo, NonFiniteAt(continuous=True))
    obs = np.zeros((3, 3), np.float32)
    actions, state = _predict(model, obs)
    assert np.isfinite(actions).all() and np.isfinite(state).all()
    bad = obs.copy()
    bad[2, 1] = np.nan
    with pytest.raises(FloatingPointError, match=r"the observation holds NaN/inf in env 2"):
        _predict(model, bad)
    state[1, 0] = np.nan
    with pytest.raises(FloatingPointError, match=r"the plastic state passed in holds NaN/inf \(field 'pi\.h'\)"):
        _predict(model, obs, state, start=False)
    with torch.no_grad():
        model.policy.actor.features_extractor.core.w[0, 0] = NAN
    with pytest.raises(FloatingPointError, match=r"weight 'actor\.features_extractor\.core\.w' holds NaN/inf"):
        _predict(model, obs)


@pytest.mark.parametrize("algo", OFF_POLICY, ids=["sac", "td3"])
def test_off_policy_runaway_traces_are_named(algo):
    # as in the PPO test: finite weights, a rate and bound so large that the traces overflow in a few steps
    kw = dict(core="rnn", rule="clipped", rule_kwargs={"clip": 1e38, "eta": 1e37}, hidden_size=4, net_arch=[8])
    model = off_policy(algo, NonFiniteAt(continuous=True), policy_kwargs=kw)
    with torch.no_grad():
        model.policy.actor.features_extractor.core.rule.alpha.fill_(1e30)
    obs, state = np.ones((1, 3), np.float32), None
    with pytest.raises(FloatingPointError, match=r"plastic traces became NaN/inf in this step .* grew without bound"):
        for t in range(20):
            _, state = _predict(model, obs, state, start=t == 0)


def test_cli_off_policy_nan_reward_exits_2_naming_the_env(tmp_path, capsys):
    cfg = write_config(tmp_path / "sac.yaml", algo="plastic_sac", env="neuromod_rl_test/NonFiniteAt-v0",
                       env_kwargs={"bad": "reward", "at": 5, "continuous": True}, n_envs=1, n_timesteps=40,
                       hyperparameters={"learning_starts": 8, "batch_size": 8, "sequence_length": 4},
                       policy_kwargs={"hidden_size": 4})  # fmt: skip
    assert main(["train", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "non-finite reward (nan) in env 0 at step 5" in err and "Traceback" not in err


# ------------------------------------------------------------------------------ replay buffers
@pytest.mark.parametrize(
    "change, message",
    [(dict(policy_kwargs=dict(hidden_size=6, net_arch=[8])), r"hidden_size: 4 in the buffer, 6 in this model"),
     (dict(policy_kwargs=dict(hidden_size=4, net_arch=[8], core="rnn")), r"core: 'lstm' in the buffer, 'rnn'"),
     (dict(n_envs=2), r"n_envs: 1 in the buffer, 2 in this model")],
    ids=["hidden_size", "core", "n_envs"],
)  # fmt: skip
def test_a_replay_buffer_of_another_model_is_refused_at_load_naming_what_differs(tmp_path, change, message):
    saved = off_policy(PlasticSAC, vec(NonFiniteAt("reward", at=99, continuous=True))).learn(12)
    saved.save_replay_buffer(tmp_path / "buffer.pkl")
    n_envs = change.pop("n_envs", 1)
    envs = [NonFiniteAt("reward", at=99, continuous=True) for _ in range(n_envs)]
    other = off_policy(PlasticSAC, vec(*envs), **change)
    own = other.replay_buffer
    with pytest.raises(ValueError, match=message):
        other.load_replay_buffer(tmp_path / "buffer.pkl")
    assert other.replay_buffer is own  # the model keeps its own buffer and still trains
    other.learn(12)
    same = off_policy(PlasticSAC, vec(NonFiniteAt("reward", at=99, continuous=True)))
    same.load_replay_buffer(tmp_path / "buffer.pkl")
    assert same.replay_buffer.pos == saved.replay_buffer.pos


def test_a_replay_buffer_saved_without_its_plastic_configuration_is_checked_by_state_width(tmp_path):
    saved = off_policy(PlasticSAC, vec(NonFiniteAt("reward", at=99, continuous=True))).learn(12)
    del saved.replay_buffer.plastic_config  # as saved before buffers recorded it
    saved.save_replay_buffer(tmp_path / "buffer.pkl")
    other = off_policy(PlasticSAC, vec(NonFiniteAt("reward", at=99, continuous=True)),
                       policy_kwargs=dict(hidden_size=6, net_arch=[8]))  # fmt: skip
    with pytest.raises(ValueError, match=r"plastic state width: \d+ in the buffer, \d+ in this model"):
        other.load_replay_buffer(tmp_path / "buffer.pkl")


# ------------------------------------------------------------------------------ PlasticPPO's remaining paths
def test_ppo_names_a_nan_terminal_observation_and_its_env():
    from neuromod_rl.agents import PlasticPPO

    model = PlasticPPO("MlpPlasticPolicy", vec(NonFiniteAt("observation", at=6, length=6)), n_steps=12,
                       batch_size=12, policy_kwargs=dict(hidden_size=4), seed=0)  # fmt: skip
    with pytest.raises(FloatingPointError, match=r"\(the terminal observation\) in env 0 at step 6"):
        model.learn(24)


def test_ppo_names_a_non_finite_head_weight_instead_of_torchs_invalid_values():
    from neuromod_rl.agents import PlasticPPO

    model = PlasticPPO("MlpPlasticPolicy", NonFiniteAt(continuous=True), n_steps=12, batch_size=12,
                       policy_kwargs=dict(hidden_size=4), seed=0)  # fmt: skip
    with torch.no_grad():
        model.policy.action_net.weight[0, 0] = NAN
    with pytest.raises(FloatingPointError, match="action_net.weight"):
        model.predict(np.zeros((1, 3), np.float32), episode_start=np.ones(1, bool))
