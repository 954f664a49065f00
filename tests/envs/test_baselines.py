"""Baselines with known answers: bandit regret (published values) and maze floor/ceiling returns."""

from __future__ import annotations

import numpy as np
import pytest

from neuromod_rl.envs import Maze
from neuromod_rl.envs.baselines import _bfs_distances, bandit_regret, maze_return


@pytest.mark.parametrize(
    ("policy", "variant", "reference", "tol"),
    [
        ("thompson", "independent", 2.80, 0.25),
        ("ucb1", "independent", 5.58, 0.35),
        ("thompson", "dependent", 2.83, 0.25),
        ("ucb1", "dependent", 6.04, 0.35),
        ("greedy", "dependent", 2.32, 0.35),  # the greedy policy has a heavy tail (SE ~0.08)
    ],
)
def test_bandit_regret_reproduces_reference(policy, variant, reference, tol):
    assert bandit_regret(policy, variant, n_episodes=4000, seed=1) == pytest.approx(reference, abs=tol)


def test_bandit_regret_orders_policies_and_rejects_bad_input():
    dep = {
        p: bandit_regret(p, "dependent", n_episodes=2000) for p in ("greedy_dependent", "thompson", "ucb1")
    }
    assert dep["greedy_dependent"] < dep["thompson"] < dep["ucb1"]
    with pytest.raises(ValueError, match="policy='softmax'"):
        bandit_regret("softmax")
    with pytest.raises(ValueError, match="greedy_dependent"):
        bandit_regret("greedy_dependent", "independent")


def _run_in_env(env: Maze, policy: str, episodes: int, rng: np.random.Generator) -> float:
    total = 0.0
    for e in range(episodes):
        _, info = env.reset(seed=e)
        dist = _bfs_distances(env.lab, info["task"]["goal"])
        done = False
        while not done:
            if policy == "random":
                a = int(rng.integers(4))
            else:  # step to a neighbour one closer to the goal
                r, c = env._pos
                nbrs = [(r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)]
                a = next(i for i, p in enumerate(nbrs) if env.lab[p] == 0 and dist[p] == dist[r, c] - 1)
            _, reward, done, _, _ = env.step(a)
            total += reward
    return total / episodes


def test_maze_baselines_match_the_env():
    rng = np.random.default_rng(0)
    env = Maze(size=9)
    oracle = maze_return("oracle", size=9, n_episodes=2000)
    random = maze_return("random", size=9, n_episodes=2000)
    assert oracle > 20 * random > 0
    assert _run_in_env(env, "oracle", 60, rng) == pytest.approx(oracle, rel=0.05)
    assert _run_in_env(env, "random", 150, rng) == pytest.approx(random, abs=4.0)
    assert maze_return("oracle", size=13, n_episodes=500) < oracle  # bigger maze, longer paths
