"""Train a small plastic policy, export it to ONNX, and run the graph in onnxruntime next to ``predict``.

The exported graph is one step of the policy with the plastic state as an explicit input and output
(``docs/export.md``)::

    (obs [B, *obs_shape], state [B, D] float32, episode_start [B] bool) -> (action, value [B, 1], next_state [B, D])

so a deployment loop needs onnxruntime and numpy only: it keeps ``state`` between steps and sets
``episode_start`` where an episode begins. This script trains PlasticPPO for ``--steps`` steps, writes the
graph with ``neuromod_rl.experiment.export.export_onnx(model, path)`` (which itself refuses a file that does
not match the policy), then plays ``--episodes`` episodes on ``--n-envs`` envs in lockstep, taking the
actions from onnxruntime and checking at every step that they equal ``model.predict(obs, state,
episode_start, deterministic=True)`` and that the two states agree.

Needs the ``export`` extra: ``pip install 'neuromod-rl[export]'`` (onnx, onnxruntime).

Usage::

    python examples/export_onnx.py --steps 5000 --out policy.onnx
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env

from neuromod_rl.agents import PlasticPPO
from neuromod_rl.experiment.export import export_onnx

TOLERANCE = 1e-4  # on Box actions


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5_000, help="training env steps (default 5000)")
    parser.add_argument("--env", default="neuromod_rl/Recall-v0",
                        help="a Gymnasium id with Box observations and Discrete or Box actions (default Recall-v0)")
    parser.add_argument("--n-envs", type=int, default=4, help="parallel envs, also the ONNX batch (default 4)")
    parser.add_argument("--n-steps", type=int, default=64, help="rollout steps per env (default 64)")
    parser.add_argument("--hidden-size", type=int, default=16, help="neurons of the plastic core (default 16)")
    parser.add_argument("--core", default="lstm", choices=["rnn", "lstm", "mlp"], help="plastic core (default lstm)")
    parser.add_argument("--episodes", type=int, default=8, help="episodes compared (default 8)")
    parser.add_argument("--out", default=None, help="the .onnx file (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def compare(model: PlasticPPO, session: onnxruntime.InferenceSession, env, episodes: int) -> dict:
    """Play ``episodes`` episodes with the graph's actions; compare every step with ``predict`` (actions equal
    for Discrete, within ``TOLERANCE`` for Box)."""
    meta = session.get_modelmeta().custom_metadata_map
    graph_state = np.zeros((env.num_envs, int(meta["state_dim"])), np.float32)  # reset in-graph: any value works
    torch_state = None
    starts = np.ones(env.num_envs, dtype=bool)
    obs = env.reset()
    steps = mismatches = 0
    max_state_diff = max_action_diff = 0.0
    discrete = isinstance(env.action_space, spaces.Discrete)
    finished = 0
    while finished < episodes:
        # a VecEnv's observations already have the observation space's dtype, the graph's input dtype
        action, _value, graph_state = session.run(None, {"obs": obs, "state": graph_state, "episode_start": starts})
        expected, torch_state = model.predict(obs, state=torch_state, episode_start=starts, deterministic=True)
        # Box actions are floats computed by two engines: equal up to rounding (export_onnx checks 1e-4 too)
        differs = action != expected if discrete else np.abs(action - expected) > TOLERANCE
        mismatches += int(np.sum(np.any(np.reshape(differs, (env.num_envs, -1)), axis=1)))
        max_action_diff = max(max_action_diff, float(np.max(np.abs(action.astype(np.float64) - expected))))
        max_state_diff = max(max_state_diff, float(np.max(np.abs(graph_state - torch_state))))
        obs, _rewards, starts, _infos = env.step(action)
        steps += env.num_envs
        finished += int(starts.sum())
    return {"steps": steps, "mismatches": mismatches, "max_action_diff": max_action_diff,
            "max_state_diff": max_state_diff, "meta": meta}


def main() -> None:
    args = parse_args()
    env = make_vec_env(args.env, n_envs=args.n_envs, seed=args.seed)
    model = PlasticPPO("MlpPlasticPolicy", env, n_steps=args.n_steps, batch_size=args.n_steps, n_epochs=4,
                       learning_rate=1e-3, seed=args.seed,
                       policy_kwargs=dict(rule="neuromod", core=args.core, hidden_size=args.hidden_size))
    model.learn(args.steps)
    print(f"trained PlasticPPO ({args.core} core, {args.hidden_size} neurons) on {args.env} for "
          f"{model.num_timesteps} steps")

    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(model, args.out or Path(folder) / "policy.onnx")
        size = path.stat().st_size
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        result = compare(model, session, make_vec_env(args.env, n_envs=args.n_envs, seed=args.seed + 1000),
                         args.episodes)
    meta = result["meta"]
    print(f"exported {path if args.out else 'to a temporary file'} ({size} bytes): format {meta['format']}, "
          f"state of {meta['state_dim']} floats per env")
    print(f"onnxruntime vs predict over {result['steps']} steps ({args.episodes} episodes, batch {args.n_envs}): "
          f"{result['mismatches']} different actions, largest action difference {result['max_action_diff']:.2e}, "
          f"largest state difference {result['max_state_diff']:.2e}")
    if result["mismatches"]:
        raise SystemExit("the ONNX graph and predict chose different actions")


if __name__ == "__main__":
    main()
