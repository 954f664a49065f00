"""Learning check: PlasticSAC remembers where SB3's feed-forward SAC cannot.

``CueRecall`` (tests/agents/plastic_test_envs.py): a cue of +1 or -1 on the first step only, then
blank observations; every step pays ``-|action - cue|`` for 6 steps. After the first step a
memoryless policy can do no better than action 0 (return -5); an agent that carries the cue in its
plastic core scores near 0. Same SAC hyperparameters, networks after the core, seed and env steps.
"""

from __future__ import annotations

import pytest
from plastic_test_envs import CueRecall
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from neuromod_rl.agents import PlasticSAC

HPARAMS = dict(
    learning_rate=3e-3, batch_size=64, buffer_size=20_000, learning_starts=200, train_freq=2, gradient_steps=1,
    gamma=0.9, seed=0,
)
STEPS = 2_400  # 400 episodes over 2 envs; 1,100 gradient steps


@pytest.mark.slow
def test_plastic_sac_beats_feed_forward_sac_on_a_memory_task():
    env = make_vec_env(CueRecall, n_envs=2, seed=0)
    plastic = PlasticSAC(
        "MlpPlasticPolicy", env, sequence_length=6, policy_kwargs=dict(hidden_size=16, net_arch=[32, 32]), **HPARAMS
    ).learn(STEPS)
    feed_forward = SAC("MlpPolicy", env, policy_kwargs=dict(net_arch=[32, 32]), **HPARAMS).learn(STEPS)
    eval_env = make_vec_env(CueRecall, n_envs=4, seed=123)
    plastic_score, _ = evaluate_policy(plastic, eval_env, n_eval_episodes=100, deterministic=True)
    ff_score, _ = evaluate_policy(feed_forward, eval_env, n_eval_episodes=100, deterministic=True)
    assert plastic_score >= -2.0, f"PlasticSAC should carry the cue (0 is perfect), got {plastic_score:.2f}"
    assert ff_score <= -4.5, f"a memoryless policy cannot beat -5 here, got {ff_score:.2f}"
    assert plastic_score - ff_score >= 2.5
