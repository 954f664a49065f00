"""PlasticPPO as a Stable-Baselines3 drop-in, on a task only memory solves.

The task is ``neuromod_rl/Recall-v0`` (``envs/recall.py``): a stream of 52 random symbols (one-hot, 4 kinds);
from step 4 on, the action must name the symbol shown 4 steps earlier. An episode returns 1.0 for perfect
play and -0.5 for random play, and -0.5 is also the best a memoryless policy (SB3's ``MlpPolicy`` PPO) can
expect. A plastic policy remembers through its recurrent state and fast weights.

Everything below is SB3's API, unchanged: ``make_vec_env``, ``learn``, ``evaluate_policy`` (it passes the
plastic state from step to step by itself), ``predict`` with ``state`` and ``episode_start`` (as with
sb3-contrib's RecurrentPPO), ``save`` and ``load``. ``--baseline`` also trains SB3's PPO with the same settings;
with ``--tensorboard-log DIR`` the two land side by side as ``DIR/PPO_1`` and ``DIR/PlasticPPO_1``.

The hyperparameters are those of the memory study (``neuromod-rl reproduce pomdp``: 8 envs, 256-step rollouts,
minibatches of two whole sequences, 4 epochs, lr 3e-4, entropy 0.01), where Recall takes a few hundred
thousand steps to master; a short run shows the API, not the final score.

Usage::

    python examples/sb3_drop_in.py --steps 20000
    python examples/sb3_drop_in.py --steps 600000 --baseline --tensorboard-log runs/tb   # tensorboard --logdir runs/tb
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from neuromod_rl.agents import PlasticPPO

RANDOM_RETURN, PERFECT_RETURN = -0.5, 1.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="training env steps (default 20000)")
    parser.add_argument("--env", default="neuromod_rl/Recall-v0", help="a Gymnasium id (default Recall-v0)")
    parser.add_argument("--n-envs", type=int, default=8, help="parallel envs (default 8)")
    parser.add_argument("--n-steps", type=int, default=256, help="rollout steps per env (default 256)")
    parser.add_argument("--hidden-size", type=int, default=64, help="neurons of the plastic core (default 64)")
    parser.add_argument("--eval-episodes", type=int, default=20, help="episodes of evaluate_policy (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tensorboard-log", default=None, help="TensorBoard folder (default: no TensorBoard)")
    parser.add_argument("--baseline", action="store_true", help="also train SB3's PPO MlpPolicy (no memory)")
    return parser.parse_args()


def hyperparameters(args: argparse.Namespace) -> dict:
    """What PPO and PlasticPPO both take: the same keywords, the same meaning."""
    return dict(n_steps=args.n_steps, batch_size=2 * args.n_steps, n_epochs=4, learning_rate=3e-4, ent_coef=0.01,
                tensorboard_log=args.tensorboard_log, seed=args.seed)


def play_with_predict(model: PlasticPPO, env, episodes: int) -> float:
    """Mean return of ``episodes`` episodes played with ``predict``, carrying the state by hand."""
    obs = env.reset()
    state, starts = None, np.ones(env.num_envs, dtype=bool)  # None: every env starts from the initial state
    returns, running = [], np.zeros(env.num_envs)
    while len(returns) < episodes:
        actions, state = model.predict(obs, state=state, episode_start=starts, deterministic=True)
        obs, rewards, dones, _ = env.step(actions)
        running += rewards
        returns.extend(running[dones])
        running[dones] = 0.0
        starts = dones  # the next predict resets the plastic state of the envs that just finished
    return float(np.mean(returns[:episodes]))


def main() -> None:
    args = parse_args()
    env = make_vec_env(args.env, n_envs=args.n_envs, seed=args.seed)
    eval_env = make_vec_env(args.env, n_envs=1, seed=args.seed + 1000)
    print(f"task {args.env}: random play {RANDOM_RETURN}, memoryless at most {RANDOM_RETURN}, perfect {PERFECT_RETURN}")

    model = PlasticPPO("MlpPlasticPolicy", env, policy_kwargs=dict(rule="neuromod", hidden_size=args.hidden_size),
                       **hyperparameters(args))
    model.learn(args.steps)
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True)
    print(f"PlasticPPO: trained {model.num_timesteps} steps; evaluate_policy over {args.eval_episodes} episodes: "
          f"{mean:.3f} +/- {std:.3f}")

    played = play_with_predict(model, eval_env, args.eval_episodes)
    print(f"PlasticPPO: predict(obs, state, episode_start) loop over {args.eval_episodes} episodes: {played:.3f}")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "plastic_recall.zip"
        model.save(path)
        loaded = PlasticPPO.load(path, env=env)
        obs = env.reset()
        starts = np.ones(env.num_envs, dtype=bool)
        before, state_before = model.predict(obs, state=None, episode_start=starts, deterministic=True)
        after, state_after = loaded.predict(obs, state=None, episode_start=starts, deterministic=True)
        same = np.array_equal(before, after) and np.allclose(state_before, state_after)
    print(f"PlasticPPO: save and load: the loaded model acts {'the same' if same else 'DIFFERENTLY'} "
          f"(state of {state_after.shape[1]} floats per env)")

    if args.baseline:
        baseline = PPO("MlpPolicy", env, **hyperparameters(args)).learn(args.steps)
        mean, std = evaluate_policy(baseline, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True)
        print(f"PPO MlpPolicy (no memory): trained {baseline.num_timesteps} steps; evaluate_policy: "
              f"{mean:.3f} +/- {std:.3f}")
    if args.tensorboard_log:
        runs = sorted(p.name for p in Path(args.tensorboard_log).iterdir() if p.is_dir())
        print(f"TensorBoard runs in {args.tensorboard_log}: {', '.join(runs)}")


if __name__ == "__main__":
    main()
