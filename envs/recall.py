"""Pure memory tasks: Recall (repeat-k), Majority (count over a stream) and Copy (reproduce after a delay).

Each episode is a stream of random symbols (one-hot among ``n_symbols``); the task is the stream itself,
drawn from ``self.np_random`` at every reset. Some steps are *scored*: the action taken on them must
name a symbol the stream showed earlier. Nothing else is rewarded, and nothing but memory helps:

- **Recall** (``length`` 52, ``n_symbols`` 4, ``k`` 4): one symbol per step; from step ``k`` on, name
  the symbol shown ``k`` steps earlier. ``N = length - k`` scored steps. Observation: the symbol.
- **Majority** (``length`` 10, ``n_symbols`` 4): ``length`` symbols, then a query step; name the symbol
  that occurred most often (streams are drawn without ties: uniform over the streams whose most frequent
  symbol is unique). ``N = 1``. Observation: the symbol, query flag.
- **Copy** (``sequence_length`` 3, ``delay`` 10, ``n_symbols`` 4): ``sequence_length`` symbols, ``delay``
  blank steps, then ``sequence_length`` recall steps; name the sequence in order, one symbol per recall
  step. ``N = sequence_length``. Observation: the symbol, recall flag.

Reward, the same rule for every task. With ``n = n_symbols``, ``c = (n + 2) / (2 (n - 1))``, ``h`` hits
and ``m`` misses among the ``N`` scored steps so far, the score is ``S = (h - c m) / N``. A scored step
pays ``+1/N`` for the right symbol and ``-c/N`` for a wrong one (unscored steps pay 0), so the episode
return is ``S`` and lies in ``[-c, 1]`` (``c <= 1`` because ``n >= 4``): perfect play returns ``1.0``,
uniformly random play ``1/n - c (n - 1)/n = -0.5`` in expectation (``c = 1`` at 4 symbols, ``5/7`` at 8).

The memoryless bound is ``-0.5``, the same as chance: a policy that sees only the current observation
cannot beat it in expectation. In Recall the scored symbol ``s[t-k]`` is independent of the symbol on
screen ``s[t]``; in Copy and Majority the screen at a scored step is the same flag in every episode, and
the answer is uniform over the symbols (by symmetry), so any memoryless answer, deterministic or random,
is right with probability ``1/n``. ``tests/envs/test_recall.py`` checks this by brute force over every
deterministic memoryless policy on small cases (a random memoryless policy is a mixture of those).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from neuromod_rl.envs.base import Task, TaskEnvMixin, check_int_range, check_task_keys, renders_observation

MAX_SYMBOLS = 64
MAX_LENGTH = 100_000


def wrong_penalty(n_symbols: int) -> float:
    """``c``: what a wrong answer costs (times ``1/N``) so that uniformly random play returns -0.5."""
    return (n_symbols + 2) / (2 * (n_symbols - 1))


class _ScoredStream(TaskEnvMixin, gym.Env):
    """Shared machinery: at reset a subclass lays out the episode as a table of observations and, per
    step, the symbol the action must name (-1 where the step is not scored); ``step`` scores against it.
    Tasks are ``{"symbols": tuple of ints}``."""

    _task_has_arrays = False

    n_symbols: int
    n_steps: int  # actions per episode
    n_scored: int  # N, the same in every episode
    obs_dim: int

    def _setup(self, n_symbols: int, n_steps: int, n_scored: int, obs_dim: int, stream_length: int) -> None:
        """Sizes, the scoring constants and the spaces (subclasses call it once their kwargs are checked)."""
        self.n_symbols, self.n_steps, self.n_scored, self.obs_dim = n_symbols, n_steps, n_scored, obs_dim
        self.stream_length = stream_length
        self.wrong_penalty = wrong_penalty(n_symbols)
        # the score is an integer ratio: one division, so perfect play scores exactly 1.0
        self._hit_weight, self._miss_weight = 2 * (n_symbols - 1), n_symbols + 2
        self._score_denominator = 2 * (n_symbols - 1) * n_scored
        self.action_space = spaces.Discrete(n_symbols)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(obs_dim,), dtype=np.float32)

    # -- to implement ---------------------------------------------------------------------------
    def _layout(self, symbols: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``(observations [n_steps + 1, obs_dim] float32, targets [n_steps] int)`` for one episode."""
        raise NotImplementedError

    def _check_stream(self, symbols: tuple[int, ...]) -> None:
        """Raise ``ValueError`` if the task's stream is one this task never draws (default: none)."""

    # -- task protocol --------------------------------------------------------------------------
    def _sample_task(self, rng: np.random.Generator) -> Task:
        return {"symbols": tuple(rng.integers(self.n_symbols, size=self.stream_length).tolist())}

    def validate_task(self, task: Any) -> Task:
        name = type(self).__name__
        check_task_keys(task, ["symbols"], name)
        raw = task["symbols"]
        if isinstance(raw, str | bytes) or not isinstance(raw, Sequence | np.ndarray):
            raise ValueError(f"task['symbols']={raw!r} is not a sequence; pass {self.stream_length} integers")
        if len(raw) != self.stream_length:
            raise ValueError(
                f"task['symbols'] has {len(raw)} symbols; this {name} shows {self.stream_length} per episode"
            )
        top = self.n_symbols - 1
        symbols = tuple(check_int_range(f"task['symbols'][{i}]", v, 0, top) for i, v in enumerate(raw))
        self._check_stream(symbols)
        return {"symbols": symbols}

    # -- dynamics -------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = self._choose_task(options)
        self._observations, self._targets = self._layout(task["symbols"])
        self._t = self._hits = self._misses = 0
        self._paid = 0.0
        return self._observations[0].copy(), {"task": self._task_info()}

    def step(self, action):
        a = self._check_action(action)
        target = int(self._targets[self._t])
        reward = 0.0
        if target >= 0:
            if a == target:
                self._hits += 1
            else:
                self._misses += 1
            score = (self._hit_weight * self._hits - self._miss_weight * self._misses) / self._score_denominator
            # pay the change of score rather than a fixed 1/N: summed in order (as SB3's Monitor sums
            # them) the rewards then add up to the score itself, where 48 x (1/48) gives 1.0000000000000007
            reward = score - self._paid
            self._paid += reward
        self._t += 1
        terminated = self._t >= self.n_steps
        info = {"task": self._task_info(), "target": target, "correct": target >= 0 and a == target}
        return self._observations[self._t].copy(), reward, terminated, False, info


def _one_hot_rows(observations: np.ndarray, rows: np.ndarray, symbols: Sequence[int]) -> None:
    """Show ``symbols[i]`` on observation row ``rows[i]``."""
    observations[rows, np.asarray(symbols, dtype=np.int64)] = 1.0


@renders_observation
class Recall(_ScoredStream):
    """Repeat-k: name the symbol seen ``k`` steps earlier, on every step from step ``k`` on."""

    def __init__(self, length: int = 52, n_symbols: int = 4, k: int = 4):
        length = check_int_range("length", length, 2, MAX_LENGTH)
        self.k = check_int_range("k", k, 1, length - 1)
        self.length = length
        n_symbols = check_int_range("n_symbols", n_symbols, 4, MAX_SYMBOLS)
        self._setup(n_symbols, n_steps=length, n_scored=length - self.k, obs_dim=n_symbols, stream_length=length)

    def _layout(self, symbols: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        obs = np.zeros((self.length + 1, self.obs_dim), dtype=np.float32)  # the last row: after the end
        _one_hot_rows(obs, np.arange(self.length), symbols)
        targets = np.full(self.length, -1, dtype=np.int64)
        targets[self.k :] = symbols[: self.length - self.k]
        return obs, targets


@renders_observation
class Majority(_ScoredStream):
    """Name the most frequent symbol of the stream on the query step that follows it."""

    def __init__(self, length: int = 10, n_symbols: int = 4):
        self.length = check_int_range("length", length, 1, MAX_LENGTH)
        n_symbols = check_int_range("n_symbols", n_symbols, 4, MAX_SYMBOLS)
        self._setup(n_symbols, n_steps=self.length + 1, n_scored=1, obs_dim=n_symbols + 1, stream_length=self.length)

    def _sample_task(self, rng: np.random.Generator) -> Task:
        while True:  # rejection keeps the draw uniform over the streams with one most frequent symbol
            symbols = rng.integers(self.n_symbols, size=self.length)
            counts = np.bincount(symbols, minlength=self.n_symbols)
            if np.count_nonzero(counts == counts.max()) == 1:
                return {"symbols": tuple(symbols.tolist())}

    def _check_stream(self, symbols: tuple[int, ...]) -> None:
        counts = np.bincount(np.asarray(symbols, dtype=np.int64), minlength=self.n_symbols)
        tied = np.flatnonzero(counts == counts.max())
        if len(tied) > 1:
            raise ValueError(
                f"task['symbols'] has no single most frequent symbol (symbols {tied.tolist()} each occur "
                f"{counts.max()} times); Majority needs a stream whose most frequent symbol is unique"
            )

    def _layout(self, symbols: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        obs = np.zeros((self.length + 2, self.obs_dim), dtype=np.float32)
        _one_hot_rows(obs, np.arange(self.length), symbols)
        obs[self.length, self.n_symbols] = 1.0  # the query
        targets = np.full(self.length + 1, -1, dtype=np.int64)
        targets[self.length] = int(np.bincount(np.asarray(symbols), minlength=self.n_symbols).argmax())
        return obs, targets


@renders_observation
class Copy(_ScoredStream):
    """Reproduce a sequence in order after ``delay`` blank steps."""

    def __init__(self, sequence_length: int = 3, delay: int = 10, n_symbols: int = 4):
        self.sequence_length = m = check_int_range("sequence_length", sequence_length, 1, MAX_LENGTH)
        self.delay = check_int_range("delay", delay, 0, MAX_LENGTH)
        n_symbols = check_int_range("n_symbols", n_symbols, 4, MAX_SYMBOLS)
        self._setup(n_symbols, n_steps=2 * m + self.delay, n_scored=m, obs_dim=n_symbols + 1, stream_length=m)

    def _layout(self, symbols: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        m, recall = self.sequence_length, self.sequence_length + self.delay
        obs = np.zeros((self.n_steps + 1, self.obs_dim), dtype=np.float32)
        _one_hot_rows(obs, np.arange(m), symbols)
        obs[recall : recall + m, self.n_symbols] = 1.0  # recall flag
        targets = np.full(self.n_steps, -1, dtype=np.int64)
        targets[recall:] = symbols
        return obs, targets
