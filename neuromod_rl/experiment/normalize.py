"""Observation and reward normalisation of a run (rl-zoo's ``normalize``), saved without pickle.

Training wraps the envs in SB3's ``VecNormalize`` when the config says ``normalize``. Its running
statistics travel as plain arrays (``.npz``, read with ``allow_pickle=False``): in every checkpoint
(with the running discounted returns, so a resumed run normalises rewards exactly as an
uninterrupted one) and, at the end, as ``RUN_DIR/vecnormalize.npz``. Evaluation applies the
frozen observation statistics with :class:`ObsNormalizer` and reports raw rewards.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnvWrapper, VecNormalize

from neuromod_rl.experiment.config import ExperimentConfig
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.runs import Run, atomic_write_bytes

FILENAME = "vecnormalize.npz"


def wrap(cfg: ExperimentConfig, venv):
    """``venv`` inside a training ``VecNormalize`` when ``cfg.normalize`` is set, else ``venv``."""
    settings = cfg.normalize_settings()
    if settings is None:
        return venv
    if settings.norm_obs and not isinstance(venv.observation_space, spaces.Box):
        raise UserError(
            f"normalize.norm_obs needs a Box observation space; {cfg.env} has {venv.observation_space}. "
            "Set normalize: {norm_obs: false} (rewards only) or drop `normalize`."
        )
    return VecNormalize(venv, training=True, **settings.model_dump())


def find(env) -> Any | None:
    """The ``VecNormalize`` in a VecEnv stack, or ``None``."""
    while isinstance(env, VecEnvWrapper):
        if isinstance(env, VecNormalize):
            return env
        env = env.venv
    return None


def to_bytes(vn, with_returns: bool = True) -> bytes:
    """The statistics (and settings) of ``vn`` as ``.npz`` bytes."""
    arrays = {
        "obs_mean": vn.obs_rms.mean, "obs_var": vn.obs_rms.var, "obs_count": np.float64(vn.obs_rms.count),
        "ret_mean": vn.ret_rms.mean, "ret_var": vn.ret_rms.var, "ret_count": np.float64(vn.ret_rms.count),
        "norm_obs": np.bool_(vn.norm_obs), "norm_reward": np.bool_(vn.norm_reward),
        "clip_obs": np.float64(vn.clip_obs), "clip_reward": np.float64(vn.clip_reward),
        "gamma": np.float64(vn.gamma), "epsilon": np.float64(vn.epsilon),
    }  # fmt: skip
    if with_returns:
        arrays["returns"] = vn.returns
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _arrays(data: bytes, source: str) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as err:  # noqa: BLE001  (any damage becomes one clear message)
        raise UserError(f"{source} is damaged ({type(err).__name__}); retrain the run to re-create it.") from None


def decode(data: bytes | None) -> dict[str, np.ndarray] | None:
    """The arrays of :func:`to_bytes` (``None`` stays ``None``); damage is a :class:`UserError`."""
    return None if data is None else _arrays(data, "the checkpoint's normalisation statistics")


def restore(cfg: ExperimentConfig, venv, a: dict[str, np.ndarray] | None):
    """A training ``VecNormalize`` around ``venv`` with a checkpoint's statistics (from :func:`decode`);
    ``venv`` itself when the config does not normalise."""
    env = wrap(cfg, venv)
    vn = find(env)
    if vn is None or a is None:
        return env
    vn.obs_rms.mean, vn.obs_rms.var, vn.obs_rms.count = a["obs_mean"], a["obs_var"], float(a["obs_count"])
    vn.ret_rms.mean, vn.ret_rms.var, vn.ret_rms.count = a["ret_mean"], a["ret_var"], float(a["ret_count"])
    if "returns" in a and a["returns"].shape == vn.returns.shape:
        vn.returns = a["returns"]
    return env


def save(run: Run, model) -> None:
    """Write ``RUN_DIR/vecnormalize.npz`` when ``model`` trains on normalised envs."""
    vn = model.get_vec_normalize_env()
    if vn is not None:
        atomic_write_bytes(run.path / FILENAME, to_bytes(vn, with_returns=False))


@dataclass(frozen=True)
class ObsNormalizer:
    """Frozen observation normalisation: ``clip((obs - mean) / sqrt(var + eps), -clip, clip)``."""

    mean: np.ndarray
    var: np.ndarray
    clip: float
    epsilon: float
    active: bool = True

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if not self.active:
            return obs
        out = np.clip((obs - self.mean) / np.sqrt(self.var + self.epsilon), -self.clip, self.clip)
        return out.astype(np.float32)


def load(run: Run) -> ObsNormalizer | None:
    """The run's observation normaliser (``None`` when it trained on raw observations)."""
    path = run.path / FILENAME
    if not path.is_file():
        return None
    a = _arrays(path.read_bytes(), str(path))
    return ObsNormalizer(a["obs_mean"], a["obs_var"], float(a["clip_obs"]), float(a["epsilon"]), bool(a["norm_obs"]))
