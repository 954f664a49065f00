"""The task protocol shared by every task distribution in ``neuromod_rl.envs``.

A *task distribution* is a Gymnasium env whose dynamics or reward depend on a hidden task
(a goal cell, a target velocity, a broken leg, ...). Following the meta-RL protocol of
PEARL / VariBAD / Backpropamine, every env here offers:

- ``sample_tasks(n)``: ``n`` tasks drawn from ``self.np_random``;
- ``set_task(task)``: fix the task for every following episode (``set_task(None)`` unfixes);
- ``get_task()``: the task currently in force;
- ``reset(options={"task": task})``: use ``task`` for this one episode only;
- ``task_split(seed, n_train, n_test)``: fixed train/test task lists that depend on ``seed`` only;
- ``task_features(task)``: a fixed-size numeric encoding of a task, for the oracle bound
  (``neuromod_rl.envs.bounds``; not every distribution has one).

Unless a task is fixed or given, each ``reset`` samples a new task from ``self.np_random``, so
SB3 VecEnvs (which reset without ``options``) see a fresh task every episode, and seeding the
env fixes the whole task sequence. The task in force is always reported as ``info["task"]``.

Tasks are plain ``dict``s of Python scalars, tuples or numpy arrays. The env keeps its own copy
of a task it is given (``set_task``, ``options["task"]``) and hands out copies (``get_task``,
``info["task"]``), so changing a task dict afterwards never changes the env.

Every task checks what it is given: ``step`` refuses an action outside its action space, and
``reset`` refuses ``options`` that are not a dict or hold an unknown key, each with a message
naming the space or the valid keys.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

Task = dict[str, Any]
ChangeAt = int | tuple[int, int] | None


# --------------------------------------------------------------------------- validation helpers
def check_range(field: str, value: Any, low: float, high: float) -> float:
    """Return ``value`` as float, or raise ``ValueError`` naming the field and its valid range."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field}={value!r} is not a number; valid range is [{low}, {high}]") from None
    if not (low <= v <= high) or not np.isfinite(v):
        raise ValueError(f"{field}={value!r} is out of range; valid range is [{low}, {high}]")
    return v


def check_int_range(field: str, value: Any, low: int, high: int | None = None) -> int:
    """Return ``value`` as int, or raise ``ValueError`` naming the field and its valid range."""
    hi = "inf" if high is None else high
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{field}={value!r} is not an integer; valid range is [{low}, {hi}]")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{field}={value!r} is out of range; valid range is [{low}, {hi}]")
    return int(value)


def check_choice(field: str, value: Any, choices: Sequence[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError`` listing them."""
    if value not in choices:
        raise ValueError(f"{field}={value!r} is not valid; valid values are {list(choices)}")
    return value


def check_array_range(field: str, value: Any, shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
    """Return ``value`` as a float64 array of ``shape`` with entries in ``[low, high]``."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"{field} has shape {arr.shape}; expected shape {shape}")
    if not np.all(np.isfinite(arr)) or arr.min(initial=low) < low or arr.max(initial=high) > high:
        bad = arr[(arr < low) | (arr > high) | ~np.isfinite(arr)]
        raise ValueError(
            f"{field} has values out of range (e.g. {bad.flat[0]:.4g}); "
            f"valid range is [{low:.4g}, {high:.4g}]"
        )
    return arr


def check_task_keys(task: Any, keys: Sequence[str], env_name: str) -> Mapping[str, Any]:
    """Check that ``task`` is a mapping with exactly the expected keys."""
    if not isinstance(task, Mapping):
        raise ValueError(f"task={task!r} is not a dict; {env_name} tasks are dicts with keys {list(keys)}")
    missing = [k for k in keys if k not in task]
    extra = [k for k in task if k not in keys]
    if missing or extra:
        raise ValueError(
            f"task for {env_name} has missing keys {missing} / unknown keys {extra}; "
            f"valid keys are {list(keys)}"
        )
    return task


def check_action(space: spaces.Space, action: Any, owner: str) -> Any:
    """``action`` if it lies in ``space`` (an ``int`` for ``Discrete``, an array of the space's dtype for
    ``Box``), else a ``ValueError`` naming ``owner`` and the space. Unlike ``space.contains`` it accepts
    any integer type for ``Discrete`` and any float array that fits a ``Box`` once cast to its dtype."""
    if isinstance(space, spaces.Discrete):
        value = action
        if isinstance(value, np.ndarray) and value.shape in ((), (1,)):
            value = value.reshape(())[()]
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
            raise ValueError(
                f"{owner}: action {action!r} is not in the action space {space}: pass one integer from "
                f"{space.start} to {space.start + space.n - 1}"
            )
        if not space.start <= value < space.start + space.n:
            raise ValueError(
                f"{owner}: action {int(value)} is outside the action space {space} "
                f"(valid actions: {space.start} to {space.start + space.n - 1})"
            )
        return int(value)
    if isinstance(space, spaces.Box):
        try:
            arr = np.asarray(action, dtype=space.dtype)
        except (TypeError, ValueError):
            raise ValueError(f"{owner}: action {action!r} is not numeric; the action space is {space}") from None
        if arr.shape != space.shape:
            raise ValueError(
                f"{owner}: action of shape {arr.shape} does not fit the action space {space} (shape {space.shape})"
            )
        if not np.isfinite(arr).all():
            raise ValueError(f"{owner}: action {arr} holds NaN/inf; the action space is {space}")
        outside = (arr < space.low) | (arr > space.high)
        if outside.any():
            i = int(np.flatnonzero(outside.ravel())[0])
            raise ValueError(
                f"{owner}: action {arr} is outside the action space {space} (entry {i} is {arr.ravel()[i]:.6g}, "
                f"bounds [{space.low.ravel()[i]:.6g}, {space.high.ravel()[i]:.6g}]); clip it to the bounds "
                "(SB3's algorithms and predict do)"
            )
        return arr
    if not space.contains(action):
        raise ValueError(f"{owner}: action {action!r} is not in the action space {space}")
    return action


def check_reset_options(options: Any, keys: Sequence[str], owner: str) -> Mapping[str, Any] | None:
    """``options`` if it is ``None`` or a mapping whose keys are all in ``keys``, else a ``ValueError``."""
    if options is None:
        return None
    if not isinstance(options, Mapping):
        raise ValueError(
            f"{owner}.reset: options={options!r} is not a dict; pass options=None or a dict with keys {list(keys)}"
        )
    unknown = [k for k in options if k not in keys]
    if unknown:
        raise ValueError(f"{owner}.reset: unknown options key(s) {unknown}; valid keys are {list(keys)}")
    return options


def validate_change_at(change_at: Any) -> ChangeAt:
    """Normalise ``change_at``: ``None``, an int step ``>= 1``, or a ``(low, high)`` step range."""
    if change_at is None:
        return None
    if isinstance(change_at, Sequence) and not isinstance(change_at, str):
        if len(change_at) != 2:
            raise ValueError(f"change_at={change_at!r} must be an int step or a (low, high) pair of steps")
        low = check_int_range("change_at[0]", change_at[0], 1)
        high = check_int_range("change_at[1]", change_at[1], low)
        return (low, high)
    return check_int_range("change_at", change_at, 1)


def sample_change_step(change_at: ChangeAt, rng: np.random.Generator) -> int | None:
    """The step index at which this episode's task switches (``low..high`` inclusive for a range)."""
    if change_at is None or isinstance(change_at, int):
        return change_at
    return int(rng.integers(change_at[0], change_at[1] + 1))


# --------------------------------------------------------------------------- the protocol
class TaskEnvMixin:
    """Task protocol for a ``gymnasium.Env`` subclass (put the mixin first in the bases).

    Subclasses implement ``_sample_task(rng)``, ``validate_task(task)`` (return a normalised copy
    or raise ``ValueError`` naming the field and valid range) and ``_apply_task(task)``.
    """

    _task: Task | None = None
    _fixed_task: Task | None = None
    _episode_task: Task | None = None
    _task_has_arrays: bool = True  # subclasses whose tasks hold only scalars/tuples set False
    _features_of: Task | None = None  # the task whose features are cached in _features
    _features: np.ndarray | None = None
    #: the keys ``reset(options=...)`` accepts
    reset_option_keys: tuple[str, ...] = ("task",)

    # -- to implement -------------------------------------------------------------------------
    def _sample_task(self, rng: np.random.Generator) -> Task:
        raise NotImplementedError

    def validate_task(self, task: Any) -> Task:
        raise NotImplementedError

    def _apply_task(self, task: Task) -> None:
        """Make ``task`` the task in force (default: just remember it)."""
        self._task = task

    def _encode_task(self, task: Task) -> np.ndarray:
        """``task`` (already valid) as a fixed-size float array with entries in ``[-1, 1]``."""
        raise NotImplementedError(
            f"{type(self).__name__} does not encode its tasks as features, so the oracle bound "
            "(TaskInObservation) is not defined for it; implement _encode_task to add one"
        )

    # -- public protocol ----------------------------------------------------------------------
    def sample_tasks(self, n: int) -> list[Task]:
        """``n`` tasks drawn from ``self.np_random`` (advances the env's generator)."""
        n = check_int_range("n", n, 0)
        return [self._sample_task(self.np_random) for _ in range(n)]

    def set_task(self, task: Any) -> None:
        """Fix ``task`` for every following episode (takes effect at the next reset);
        ``None`` goes back to sampling a new task per episode."""
        self._fixed_task = None if task is None else copy.deepcopy(self.validate_task(task))

    def get_task(self) -> Task | None:
        """A copy of the task in force (``None`` before the first reset, unless one was set)."""
        task = self._task if self._task is not None else self._fixed_task
        return None if task is None else self._task_info(task)

    def task_features(self, task: Any = None) -> np.ndarray:
        """A fixed-size ``float32`` encoding of ``task`` with entries in ``[-1, 1]``: what the oracle
        bound (``TaskInObservation``) appends to the observation.

        Args:
            task: a task of this distribution (checked as ``set_task`` checks it); ``None`` encodes
                the task in force, which exists from the first ``reset`` on.

        Raises ``NotImplementedError`` for a task distribution without an encoding (e.g. the memory
        tasks, whose "task" is the stream the agent must remember) and ``ValueError`` for a bad task.
        """
        if task is None:
            if self._task is None:
                raise ValueError(f"{type(self).__name__}.task_features(): no task in force yet; call reset() first")
            # the oracle asks on every step; the task in force changes only at resets and switches
            if self._features_of is not self._task:
                self._features_of = self._task
                self._features = np.asarray(self._encode_task(self._task), dtype=np.float32)
            return self._features.copy()
        return np.asarray(self._encode_task(self.validate_task(task)), dtype=np.float32)

    def task_feature_space(self) -> spaces.Box:
        """The ``Box(-1, 1)`` that ``task_features`` lies in (its size is read from one task drawn
        from a private generator, so ``self.np_random`` is left alone)."""
        sample = self._encode_task(self._sample_task(np.random.default_rng(0)))
        return spaces.Box(-1.0, 1.0, shape=np.shape(sample), dtype=np.float32)

    def episode_task(self) -> Task | None:
        """The task chosen at the last reset, before any mid-episode switch (``Trial`` reuses it)."""
        return self._episode_task

    def task_split(self, seed: int, n_train: int = 50, n_test: int = 10) -> tuple[list[Task], list[Task]]:
        """Fixed train/test task lists: they depend on ``seed`` only, not on the env's state.

        Drawn from a private generator, so calling this does not disturb ``self.np_random``.
        Task distributions with a finite task set override this to make the two sets disjoint.
        """
        rng = np.random.default_rng(check_int_range("seed", seed, 0))
        train = [self._sample_task(rng) for _ in range(check_int_range("n_train", n_train, 0))]
        test = [self._sample_task(rng) for _ in range(check_int_range("n_test", n_test, 0))]
        return train, test

    # -- used by reset and step --------------------------------------------------------------
    def _check_action(self, action: Any) -> Any:
        """``action`` checked against ``self.action_space`` (an ``int`` for ``Discrete``)."""
        return check_action(self.action_space, action, f"{type(self).__name__}.step")

    def _task_info(self, task: Task | None = None) -> Task:
        """A copy of ``task`` (default: the task in force) for ``info``: a shallow dict copy plus
        copies of arrays, so that returned infos never share mutable data (Gymnasium's rule)."""
        task = self._task if task is None else task
        if self._task_has_arrays:
            return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in task.items()}
        return task.copy()  # scalars and tuples are immutable: a shallow copy is enough (and fast)

    def _choose_task(self, options: Mapping[str, Any] | None) -> Task:
        """The task for a new episode: ``options["task"]``, else the fixed task, else a sample."""
        check_reset_options(options, self.reset_option_keys, type(self).__name__)
        if options is not None and options.get("task") is not None:
            task = copy.deepcopy(self.validate_task(options["task"]))
        elif self._fixed_task is not None:
            task = self._fixed_task
        else:
            task = self._sample_task(self.np_random)
        self._episode_task = task
        self._apply_task(task)
        return task


def split_finite(items: Sequence[Any], seed: int, n_test: int) -> tuple[list[Any], list[Any]]:
    """Shuffle a finite task set with ``seed`` and hold the last ``n_test`` out (disjoint split)."""
    rng = np.random.default_rng(check_int_range("seed", seed, 0))
    n_test = check_int_range("n_test", n_test, 0, len(items) - 1)
    order = rng.permutation(len(items))
    shuffled = [items[i] for i in order]
    return shuffled[: len(items) - n_test], shuffled[len(items) - n_test :]


def observation_image(obs: np.ndarray, cell: int = 12) -> np.ndarray:
    """An observation vector as an RGB strip, one ``cell`` x ``cell`` square per feature: white at 0,
    red towards +1, blue towards -1 (values beyond ±1 saturate)."""
    v = np.clip(np.asarray(obs, dtype=np.float32).ravel(), -1.0, 1.0)
    pos, neg = np.clip(v, 0, 1), np.clip(-v, 0, 1)
    rgb = np.stack([1 - neg, 1 - pos - neg, 1 - pos], axis=-1)  # [F, 3]
    strip = np.repeat(np.repeat(rgb[None], cell, axis=0), cell, axis=1)
    return (255 * strip).astype(np.uint8)


def renders_observation(cls):
    """Class decorator for the classic (non-MuJoCo) tasks: ``render_mode="rgb_array"`` renders the
    current observation with :func:`observation_image`.

    SB3's ``make_vec_env`` asks every env made from an id for ``render_mode="rgb_array"``; this makes
    that request valid (and the picture shows what the agent sees, which is what matters here).
    """
    init, reset, step = cls.__init__, cls.reset, cls.step

    def __init__(self, *args, render_mode: str | None = None, **kwargs):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} is not supported by {cls.__name__}; use None or 'rgb_array'")
        init(self, *args, **kwargs)
        self.render_mode = render_mode
        self._last_obs = None

    def reset_(self, *args, **kwargs):
        obs, info = reset(self, *args, **kwargs)
        self._last_obs = obs
        return obs, info

    def step_(self, action):
        out = step(self, action)
        self._last_obs = out[0]
        return out

    def render(self):
        if self.render_mode is None:
            return None
        if self._last_obs is None:
            raise RuntimeError(f"{cls.__name__}.render() needs a reset() first")
        return observation_image(self._last_obs)

    __init__.__doc__ = init.__doc__
    reset_.__doc__, step_.__doc__ = reset.__doc__, step.__doc__
    cls.__init__, cls.reset, cls.step, cls.render = __init__, reset_, step_, render
    cls.metadata = {**cls.metadata, "render_modes": ["rgb_array"], "render_fps": 4}
    return cls
