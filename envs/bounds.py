"""The three reference agents of an adaptation task, by what their input holds:

- **oracle**: the reactive input plus the task in force (``TaskInObservation`` over ``PrevActionReward``).
  Nothing is left to infer: the best return any agent can hope for. It keeps the previous action and
  reward because on a task whose state is partly hidden (the dark corridor, the hidden goal) knowing the
  task is not enough to act on it: the reward is what says the goal has been reached.
- **Markov**: the raw observation (no wrapper). What a memoryless policy can do when the
  observation alone must tell it what to do.
- **reactive**: the observation plus the previous action and reward (``PrevActionReward``, the
  input of RL^2-style agents, without their memory). What one step of feedback can reveal.

On the older adaptation tasks one step of feedback reveals the task, so the reactive bound is
already the oracle's: a memory agent has nothing to add. On the tasks of docs/envs.md "Tasks where
memory is necessary" it is not, and the gap between the reactive and the oracle bound is what memory
can buy. (The classic tasks already carry previous action and reward in their observation, so for
them the Markov and reactive inputs differ only by that duplication.)

``bound_env("neuromod_rl/HalfCheetahHiddenGoal-v0", "oracle")`` builds any of the three.
"""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from neuromod_rl.envs.base import check_choice
from neuromod_rl.envs.wrappers import _flat_box, make_task_env

Bound = Literal["oracle", "markov", "reactive"]
BOUNDS: tuple[str, ...] = ("oracle", "markov", "reactive")


class TaskInObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """The oracle bound: append ``task_features`` of the task in force to the (flattened) observation.

    Layout: ``[obs, task features]``; the features are a fixed-size encoding of the task with entries
    in ``[-1, 1]`` (``TaskEnvMixin.task_features``). They follow the task in force, so a mid-episode
    switch (``change_at``) shows in the observation of the step where it happens. Needs a task
    distribution of this package that encodes its tasks (the memory tasks of ``recall`` and the
    velocity-masked tasks have none).
    """

    def __init__(self, env: gym.Env):
        """Args:
        env: a task env of ``neuromod_rl.envs`` (possibly wrapped) with a Box observation space.
        """
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        base = env.unwrapped
        if not callable(getattr(base, "task_feature_space", None)):
            raise ValueError(
                f"TaskInObservation needs a task distribution of neuromod_rl.envs (e.g. "
                f"neuromod_rl/HalfCheetahVel-v0); {type(base).__name__} has no tasks to show"
            )
        try:
            features = base.task_feature_space()
        except NotImplementedError as err:
            raise ValueError(str(err)) from None
        obs_space = _flat_box(env.observation_space, "TaskInObservation")
        self.task_space = features
        self.observation_space = spaces.Box(
            np.concatenate([obs_space.low.ravel(), features.low]).astype(np.float32),
            np.concatenate([obs_space.high.ravel(), features.high]).astype(np.float32),
            dtype=np.float32,
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """``observation`` (flattened, float32) followed by the features of the task in force."""
        features = self.env.unwrapped.task_features()
        return np.concatenate([np.asarray(observation, dtype=np.float32).ravel(), features])


def bound_env(env_id: str, bound: Bound, **kwargs: Any) -> gym.Env:
    """The env that the ``bound`` reference agent of ``env_id`` sees.

    Args:
        env_id: a registered id, e.g. ``"neuromod_rl/HiddenGoalCorridor-v0"``.
        bound: ``"oracle"`` (observation + previous action, reward and done + task features,
            ``TaskInObservation`` over ``PrevActionReward``), ``"markov"`` (the raw observation) or
            ``"reactive"`` (observation + previous action, reward and done, ``PrevActionReward``).
        kwargs: passed to :func:`~neuromod_rl.envs.wrappers.make_task_env` (the env's keyword arguments,
            and ``trial_episodes`` for multi-episode trials).
    """
    check_choice("bound", bound, BOUNDS)
    env = make_task_env(env_id, prev_action_reward=bound != "markov", **kwargs)
    if bound != "oracle":
        return env
    try:
        return TaskInObservation(env)
    except ValueError:
        env.close()
        raise
