"""ESTrainer on real Ray actors (one local 2-CPU cluster shared by the session): the number of actors
does not change a run, and a killed actor neither stops the run nor loses a generation."""

from __future__ import annotations

import threading

import gymnasium as gym
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

import neuromod_rl  # noqa: F401
from neuromod_rl.agents import ESTrainer

pytestmark = pytest.mark.slow
GENERATIONS = 4
SETTINGS = dict(policy_kwargs=dict(rule="neuromod", hidden_size=8), popsize=16, lr=0.2, episodes_per_member=4,
                chunk_size=4, seed=3)  # fmt: skip


def run(num_actors: int, callback=None) -> ESTrainer:
    model = ESTrainer("MlpPlasticPolicy", gym.make("neuromod_rl/DelayedCue-v0", delay=2), num_actors=num_actors,
                      **SETTINGS)  # fmt: skip
    return model.learn(10**9, generations=GENERATIONS, callback=callback)


def weights(model: ESTrainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.policy.state_dict().items()}


@pytest.fixture(scope="module")
def in_process() -> dict[str, torch.Tensor]:
    return weights(run(num_actors=0))


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_one_and_two_actors_give_the_in_process_result(ray_session, in_process):
    one, two = run(num_actors=1), run(num_actors=2)
    assert_same(weights(one), in_process)
    assert_same(weights(two), in_process)
    assert one.actor_failures == two.actor_failures == 0
    assert two._searcher.problem.actors is None  # released when learn() ends: their CPUs are free again


class KillAnActor(BaseCallback):
    """Kills one evaluation actor shortly after generation 2 starts (usually while it evaluates)."""

    def __init__(self, ray):
        super().__init__()
        self.ray, self.killed = ray, None

    def _on_rollout_start(self) -> None:
        if self.model.generation == 2:
            self.killed = self.model._searcher.problem.actors[0]
            threading.Timer(0.02, self.ray.kill, [self.killed]).start()

    def _on_step(self) -> bool:
        return True


def test_a_killed_actor_is_replaced_and_no_generation_is_lost(ray_session, in_process):
    killer = KillAnActor(ray_session)
    model = run(num_actors=2, callback=killer)
    assert killer.killed is not None
    assert model.actor_failures == 1, "the dead actor's chunk was redone on another actor"
    assert model.generation == GENERATIONS
    assert_same(weights(model), in_process)  # the same scores, hence the same search, as without the failure
