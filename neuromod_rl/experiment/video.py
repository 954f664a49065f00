"""A GIF of one episode of the agent, for every task that renders ``rgb_array`` frames.

Which tasks render is the env's own word: ``rgb_array`` in its ``metadata["render_modes"]`` (the
project's grid and bandit tasks draw what the agent sees, Gymnasium's classic-control tasks and so the
NoVel ids draw with pygame, the MuJoCo tasks with MuJoCo's renderer). MuJoCo renders off-screen only
through ``MUJOCO_GL=egl`` (GPU or Mesa) or ``osmesa`` (software). A task that does not render, a
MuJoCo task without one of those, or any rendering failure skips the video with one clear message: a
report never fails because of a missing display.
"""

from __future__ import annotations

import io
import os
import sys
import warnings
from pathlib import Path

import gymnasium
import numpy as np

import neuromod_rl  # noqa: F401  (registers the task ids)
from neuromod_rl.experiment import normalize
from neuromod_rl.experiment.config import ExperimentConfig
from neuromod_rl.experiment.environment import make_env
from neuromod_rl.experiment.runs import Run, atomic_write_bytes

FRAME_EVERY = 2  # render every 2nd step: CPU rendering of MuJoCo is ~10 frames/s here
MAX_STEPS = 400
MIN_HEIGHT = 96  # frames smaller than this (the grid tasks draw 12 pixels per cell) are enlarged


def _is_mujoco(cfg: ExperimentConfig) -> bool:
    entry = str(gymnasium.spec(cfg.env).entry_point)
    return "mujoco" in entry or any(k in entry for k in ("locomotion", "crippled", "rand_params"))


def renders_rgb_array(env: gymnasium.Env) -> bool:
    """Whether ``env`` (made with ``render_mode="rgb_array"``) says it draws ``rgb_array`` frames.

    Args:
        env: the env, wrappers included (they pass the metadata of the env inside).
    """
    return env.render_mode == "rgb_array" and "rgb_array" in (env.metadata.get("render_modes") or ())


def _enlarged(frame: np.ndarray) -> np.ndarray:
    """``frame`` scaled up by a whole factor (each pixel a block) until it is :data:`MIN_HEIGHT` pixels high."""
    k = -(-MIN_HEIGHT // max(frame.shape[0], 1))
    return frame if k <= 1 else np.repeat(np.repeat(frame, k, axis=0), k, axis=1)


def record_video(run: Run, cfg: ExperimentConfig, model) -> Path | None:
    """Write ``RUN_DIR/videos/episode.gif`` (one episode, test seed, the run's frozen normalisation);
    ``None`` and one message on stderr when the task cannot render here.

    Args:
        run: the run directory (its ``vecnormalize.npz`` is applied, the GIF is written there).
        cfg: the run's config (env, wrappers, seed).
        model: the trained model, whose ``predict`` plays the episode.
    """
    backend = os.environ.get("MUJOCO_GL", "")
    mujoco = _is_mujoco(cfg)
    if mujoco and backend not in ("egl", "osmesa"):
        print("Video skipped: set MUJOCO_GL=egl (or osmesa) to render MuJoCo episodes off-screen.", file=sys.stderr)
        return None
    how = f" with MUJOCO_GL={backend}" if mujoco else ""
    see = normalize.load(run) or (lambda o: o)
    env = None
    try:
        import imageio.v2 as imageio  # video encoder: only for reports; a failure skips the video

        with warnings.catch_warnings():
            # Gymnasium warns when a task lacks rgb_array; that is answered below, in one message
            warnings.filterwarnings("ignore", message=".*render_mode.*", category=UserWarning)
            env = make_env(cfg, render_mode="rgb_array")
        if not renders_rgb_array(env):
            print(f"Video skipped: {cfg.env} does not render rgb_array frames (its render modes: "
                  f"{list(env.metadata.get('render_modes') or [])}).", file=sys.stderr)
            return None
        frames = []
        obs, _ = env.reset(seed=cfg.seed)
        state, start = None, np.ones(1, dtype=bool)
        for t in range(MAX_STEPS):
            action, state = model.predict(see(obs[None]), state=state, episode_start=start, deterministic=True)
            start = np.zeros(1, dtype=bool)
            obs, _, term, trunc, _ = env.step(action[0])
            if t % FRAME_EVERY == 0:
                frames.append(_enlarged(np.asarray(env.render())))
            if term or trunc:
                break
        buf = io.BytesIO()
        imageio.mimsave(buf, frames, format="GIF", duration=FRAME_EVERY / 30)
        path = run.path / "videos" / "episode.gif"
        atomic_write_bytes(path, buf.getvalue())
        return path
    except Exception as err:  # noqa: BLE001  (any rendering problem: skip, never fail the report)
        print(f"Video skipped: rendering {cfg.env}{how} failed ({type(err).__name__}: {err}).", file=sys.stderr)
        return None
    finally:
        if env is not None:
            env.close()
