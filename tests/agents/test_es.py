"""ESTrainer without Ray: learning, determinism, batched evaluation, parameter selection, save/load/resume."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.utils import ConstantSchedule

import neuromod_rl  # noqa: F401
from neuromod_rl.agents import ESTrainer, MlpPlasticPolicy, PlasticPPO
from neuromod_rl.agents.es import PRESETS, Evaluator, select_parameters
from neuromod_rl.agents.es.algorithms import ALGORITHMS

CUE = dict(policy_kwargs=dict(rule="neuromod", hidden_size=8), popsize=16, episodes_per_member=4, chunk_size=4,
           num_actors=0, seed=1)  # fmt: skip
ABCD_MLP = dict(rule="abcd", core="mlp", hidden_size=8, alpha_shape="none", rule_kwargs=dict(slow_weights=False))


def cue_env(delay: int = 2) -> gym.Env:
    return gym.make("neuromod_rl/DelayedCue-v0", delay=delay)


def state(model: ESTrainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.policy.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_es_solves_the_delayed_cue_memory_task_in_fixed_generations():
    """A plastic RNN must carry the cue over the delay: a feed-forward policy stays at chance (0.5)."""
    model = ESTrainer("MlpPlasticPolicy", cue_env(), popsize=16, lr=0.2, sigma=0.1, episodes_per_member=8,
                      num_actors=0, seed=0, policy_kwargs=dict(rule="neuromod", core="rnn", hidden_size=8))  # fmt: skip
    before = model.score(episodes=100, seed=123).mean()
    model.learn(10**9, generations=15)
    after = model.score(episodes=100, seed=123).mean()
    assert before < 0.7, before
    assert after == 1.0, f"ES should solve DelayedCue(delay=2) in 15 generations; scored {after}"
    assert model.generation == 15 and model.num_timesteps == 15 * 16 * 8 * 4  # popsize x episodes x 4 steps


def test_openai_es_climbs_a_quadratic():
    from evotorch import Problem

    from neuromod_rl.agents.es.openai_es import OpenAIES

    target = torch.linspace(-1, 1, 10)
    problem = Problem("max", lambda x: -((x - target) ** 2).sum(), solution_length=10, initial_bounds=(-0.1, 0.1),
                      seed=0, vectorized=False)  # fmt: skip
    es = OpenAIES(problem, popsize=20, sigma=0.1, lr=0.05, sigma_decay=0.99, lr_decay=0.99, center_init=torch.zeros(10))
    for _ in range(150):
        es.step()
    assert (es.status["center"] - target).abs().max() < 0.15  # from 1.0 at the start
    assert es.status["stdev"] == pytest.approx(0.1 * 0.99**150) and es.status["lr"] == pytest.approx(0.05 * 0.99**150)
    with pytest.raises(ValueError, match="popsize must be even"):
        OpenAIES(problem, popsize=7, sigma=0.1, lr=0.1)


def test_same_seed_same_search_other_seed_another():
    runs = [ESTrainer("MlpPlasticPolicy", cue_env(), **{**CUE, "seed": s}).learn(10**9, generations=2)
            for s in (1, 1, 2)]
    assert same(state(runs[0]), state(runs[1]))
    assert not same(state(runs[0]), state(runs[2]))


@pytest.mark.parametrize(
    "env_id, policy_kwargs, redraw",
    [("neuromod_rl/DelayedCue-v0", dict(rule="neuromod", hidden_size=8), False),
     ("Pendulum-v1", ABCD_MLP, True),
     ("Pendulum-v1", dict(rule="retroactive", core="lstm", hidden_size=8, modulation="fanout"), False),
     ("neuromod_rl/TwoArmedBanditDependent-v0", dict(rule="neuromod", hidden_size=8, modulation_source="reward",
                                                     reward_index=2), False)],
)  # fmt: skip
def test_batched_evaluation_scores_like_one_member_at_a_time(env_id, policy_kwargs, redraw):
    env = gym.make(env_id, max_episode_steps=30)
    model = ESTrainer("MlpPlasticPolicy", env, params="rule" if redraw else "all", redraw_initial_weights=redraw,
                      num_actors=0, seed=0, policy_kwargs=policy_kwargs)  # fmt: skip
    evaluator = Evaluator(model.eval_spec())
    center = torch.cat([p.detach().reshape(-1) for n, p in model.policy.named_parameters() if n in model.param_names])
    vectors = center + 0.3 * torch.randn(6, center.numel(), generator=torch.Generator().manual_seed(0))
    batched = evaluator.evaluate(vectors, generation=3, batched=True)
    one_by_one = evaluator.evaluate(vectors, generation=3, batched=False)
    np.testing.assert_allclose(batched.fitness, one_by_one.fitness, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(batched.lengths, one_by_one.lengths)
    assert np.unique(batched.fitness).size > 1  # the members really differ


def test_redrawn_initial_weights_differ_per_episode_and_repeat_per_seed():
    env = gym.make("Pendulum-v1")
    model = ESTrainer("MlpPlasticPolicy", env, params="rule", redraw_initial_weights=True, num_actors=0,
                      policy_kwargs=ABCD_MLP)  # fmt: skip
    evaluator = Evaluator(model.eval_spec())
    a, b = evaluator.episode_start_state([5, 6]), evaluator.episode_start_state([5, 7])
    assert torch.equal(a["pi.F0"][0], b["pi.F0"][0]) and not torch.equal(a["pi.F0"][0], a["pi.F0"][1])
    assert a["pi.F0"].abs().max() <= 0.1  # U[-init_scale, init_scale], the rule's default scale
    with pytest.raises(ValueError, match="needs a rule that draws its episode-start weights"):
        ESTrainer("MlpPlasticPolicy", cue_env(), redraw_initial_weights=True, **CUE).learn(10**9, generations=1)


def test_parameter_selection():
    env = gym.make("Pendulum-v1")
    policy = MlpPlasticPolicy(env.observation_space, env.action_space, ConstantSchedule(0.0), **ABCD_MLP)
    rule = select_parameters(policy, "rule")
    assert rule and all(".rule." in n for n in rule)
    every = select_parameters(policy, "all")
    assert set(rule) < set(every) and not any(n.startswith(("value_net", "log_std")) for n in every)
    assert "action_net.weight" in every
    assert select_parameters(policy, ["core.layers.0.rule.A", "action_net.*"]) == [
        "core.layers.0.rule.A", "action_net.weight", "action_net.bias"]  # fmt: skip
    with pytest.raises(ValueError, match="selects no parameter"):
        select_parameters(policy, ["nothing.*"])
    with pytest.raises(ValueError, match="use 'rule', 'all' or a list"):
        select_parameters(policy, "weights")


def test_najarro_risi_preset_and_overrides():
    model = ESTrainer("MlpPlasticPolicy", gym.make("Pendulum-v1"), preset="najarro_risi", num_actors=0,
                      policy_kwargs=ABCD_MLP)  # fmt: skip
    assert {k: model.settings[k] for k in PRESETS["najarro_risi"]} == PRESETS["najarro_risi"]
    assert model.settings["popsize"] == 200 and model.settings["l2_penalty"] == 0.01
    assert all(".rule." in n for n in model.param_names)
    small = ESTrainer("MlpPlasticPolicy", gym.make("Pendulum-v1"), preset="najarro_risi", popsize=8, num_actors=0,
                      policy_kwargs=ABCD_MLP)  # fmt: skip
    assert small.settings["popsize"] == 8 and small.settings["lr_decay"] == 0.995


@pytest.mark.parametrize(
    "kwargs, message",
    [(dict(algorithm="adam"), "algorithm='adam' is not valid"),
     (dict(preset="salimans"), "preset='salimans' is not valid"),
     (dict(popsize=15), "popsize must be even"),
     (dict(algorithm="snes", lr_decay=0.9), "apply to algorithm='openai_es' only"),
     (dict(num_actors=-1), "num_actors must be 'auto' or an int >= 0"),
     (dict(ray_address="my-cluster"), "ray_address='my-cluster' is not valid"),
     (dict(batched=True, deterministic=False), "batched evaluation rolls out the deterministic action"),
     (dict(policy_kwargs=dict(rule="neuromod", hidden_size=4, modulation_source="td_error", reward_index=2)),
      "modulation_source='td_error' has no TD error")],
)  # fmt: skip
def test_bad_arguments_say_what_to_do(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ESTrainer("MlpPlasticPolicy", cue_env(), **{**CUE, **kwargs})


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_save_load_resumes_the_search_bit_identically(algorithm):
    kwargs = {**CUE, "algorithm": algorithm}
    straight = ESTrainer("MlpPlasticPolicy", cue_env(), **kwargs).learn(10**9, generations=4)
    first = ESTrainer("MlpPlasticPolicy", cue_env(), **kwargs).learn(10**9, generations=2)
    buf = io.BytesIO()
    first.save(buf)
    buf.seek(0)
    resumed = ESTrainer.load(buf, env=cue_env())
    assert same(state(resumed), state(first)) and resumed.generation == 2
    resumed.learn(10**9, generations=2, reset_num_timesteps=False)
    assert same(state(resumed), state(straight))
    assert resumed.num_timesteps == straight.num_timesteps and resumed.generation == 4


def test_evolved_model_acts_through_the_ppo_policy_api():
    """The saved zip is an ordinary plastic policy: ``predict`` with a state, like PlasticPPO's."""
    model = ESTrainer("MlpPlasticPolicy", cue_env(), **CUE).learn(10**9, generations=1)
    buf = io.BytesIO()
    model.save(buf)
    buf.seek(0)
    loaded = ESTrainer.load(buf)
    assert isinstance(loaded.policy, MlpPlasticPolicy)
    assert loaded.policy.net_arch == []  # ES keeps linear heads unless told otherwise: a smaller genome
    ppo = PlasticPPO("MlpPlasticPolicy", cue_env(), policy_kwargs={**CUE["policy_kwargs"], "net_arch": []}, seed=0,
                     n_steps=64, batch_size=64)
    ppo.policy.load_state_dict(loaded.policy.state_dict())  # same class, same layout
    obs = np.eye(3, dtype=np.float32)[:2]
    starts = np.ones(2, dtype=bool)
    a1, s1 = loaded.predict(obs, state=None, episode_start=starts, deterministic=True)
    a2, s2 = ppo.predict(obs, state=None, episode_start=starts, deterministic=True)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_allclose(s1, s2)
