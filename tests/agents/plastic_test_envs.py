"""Small, fast envs for the SB3 integration tests, and a logger spy (imported by the tests of this folder)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from neuromod_rl.envs import DelayedCue


class DictCue(gym.Wrapper):
    """DelayedCue with a Dict observation: the cue and the go flag under separate keys."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        n = env.unwrapped.n_cues
        self.observation_space = spaces.Dict(
            {"cue": spaces.Box(0.0, 1.0, (n,), np.float32), "go": spaces.Box(0.0, 1.0, (1,), np.float32)}
        )

    def _split(self, obs):
        return {"cue": obs[:-1], "go": obs[-1:]}

    def reset(self, **kw):
        obs, info = self.env.reset(**kw)
        return self._split(obs), info

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        return self._split(obs), r, term, trunc, info


class TinyImage(gym.Env):
    """A 36x36 one-channel image (NatureCNN's minimum) with a bright column; 5-step episodes."""

    observation_space = spaces.Box(0, 255, (36, 36, 1), np.uint8)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs(), {}

    def _obs(self):
        img = np.zeros((36, 36, 1), np.uint8)
        img[:, int(self.np_random.integers(36))] = 255
        return img

    def step(self, action):
        self._t += 1
        return self._obs(), self._reward(action), self._t >= 5, False, {}

    def _reward(self, action) -> float:
        return float(action == 1)


class TinyImageBox(TinyImage):
    """:class:`TinyImage` with a continuous action (rewarded by its value)."""

    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def _reward(self, action) -> float:
        return float(action[0])


class TinyMultiDiscrete(gym.Env):
    """Two sub-actions, reward when both equal the observed bit; 6-step episodes."""

    observation_space = spaces.Box(0.0, 1.0, (2,), np.float32)
    action_space = spaces.MultiDiscrete([2, 3])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t, self._bit = 0, int(self.np_random.integers(2))
        return np.array([self._bit, 1.0], np.float32), {}

    def step(self, action):
        self._t += 1
        r = float(action[0] == self._bit) + float(action[1] == self._bit)
        return np.array([self._bit, 0.0], np.float32), r, self._t >= 6, False, {}


def cue_env(delay: int = 2, **kw) -> gym.Env:
    return DelayedCue(delay=delay, **kw)


class CueRecall(gym.Env):
    """Continuous memory task: a cue of +1 or -1 is shown on the first step only, and every step pays
    ``-|action - cue|``. A memoryless policy sees ``[0, 0]`` after the first step and can do no better
    than action 0 (return ``-(length - 1)``); an agent that remembers the cue scores near 0."""

    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, length: int = 6):
        self.length = length

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t, self._cue = 0, float(self.np_random.choice([-1.0, 1.0]))
        return np.array([self._cue, 1.0], np.float32), {}

    def step(self, action):
        reward = -abs(float(np.asarray(action).reshape(-1)[0]) - self._cue)
        self._t += 1
        return np.zeros(2, np.float32), reward, self._t >= self.length, False, {}


class DictCueRecall(gym.ObservationWrapper):
    """CueRecall with a Dict observation: the cue and the first-step flag under separate keys."""

    def __init__(self, env: gym.Env | None = None):
        super().__init__(env or CueRecall())
        self.observation_space = spaces.Dict(
            {"cue": spaces.Box(-1.0, 1.0, (1,), np.float32), "first": spaces.Box(0.0, 1.0, (1,), np.float32)}
        )

    def observation(self, obs):
        return {"cue": obs[:1], "first": obs[1:]}


def record_log_dumps(model) -> list[dict]:
    """Every row ``model``'s logger dumps from now on (the values it held just before each dump)."""
    recorded: list[dict] = []
    dump = model.logger.dump

    def spy(step=0):
        recorded.append(dict(model.logger.name_to_value))
        dump(step)

    model.logger.dump = spy
    return recorded
