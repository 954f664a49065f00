"""Learning check: a memory task that a feed-forward policy cannot solve.

``neuromod_rl/DelayedCue-v0``: a cue on step 0, 5 blank steps, then a go signal; the action on the
go step scores 1 if it names the cue. A feed-forward ``MlpPolicy`` sees no cue when it answers,
so it stays at chance (0.5); the plastic recurrent policy must carry the cue through the delay.
Same PPO hyperparameters, same seed, same env steps for both.
"""

from __future__ import annotations

import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from neuromod_rl.agents import PlasticPPO

HPARAMS = dict(n_steps=70, batch_size=140, n_epochs=4, learning_rate=3e-3, seed=0)
STEPS = 11_200  # 20 rollouts of 8 envs x 70 steps (10 episodes each)


@pytest.mark.slow
def test_plastic_policy_beats_feed_forward_on_delayed_cue():
    env = make_vec_env("neuromod_rl/DelayedCue-v0", n_envs=8, seed=0)
    plastic = PlasticPPO("MlpPlasticPolicy", env, policy_kwargs=dict(hidden_size=16), **HPARAMS).learn(STEPS)
    feed_forward = PPO("MlpPolicy", env, **HPARAMS).learn(STEPS)
    eval_env = make_vec_env("neuromod_rl/DelayedCue-v0", n_envs=8, seed=123)
    plastic_score, _ = evaluate_policy(plastic, eval_env, n_eval_episodes=200, deterministic=True)
    ff_score, _ = evaluate_policy(feed_forward, eval_env, n_eval_episodes=200, deterministic=True)
    assert plastic_score >= 0.95, f"the plastic policy should solve the task, got {plastic_score:.2f}"
    assert ff_score <= 0.7, f"a feed-forward policy cannot beat chance (0.5) here, got {ff_score:.2f}"
    assert plastic_score - ff_score >= 0.3
