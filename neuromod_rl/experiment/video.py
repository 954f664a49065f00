"""A GIF of one MuJoCo episode of the agent, when this machine can render.

MuJoCo renders off-screen through ``MUJOCO_GL=egl`` (GPU or Mesa) or ``osmesa`` (software). Without
one of them, or when rendering fails, the video is skipped with one clear message: a report never
fails because of a missing display.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import gymnasium
import numpy as np

import neuromod_rl  # noqa: F401  (registers the task ids)
from neuromod_rl.experiment import normalize
from neuromod_rl.experiment.config import ExperimentConfig
from neuromod_rl.experiment.environment import make_env
from neuromod_rl.experiment.runs import Run, atomic_write_bytes

FRAME_EVERY = 2  # render every 2nd step: CPU rendering is ~10 frames/s here
MAX_STEPS = 400


def _is_mujoco(cfg: ExperimentConfig) -> bool:
    entry = str(gymnasium.spec(cfg.env).entry_point)
    return "mujoco" in entry or any(k in entry for k in ("locomotion", "crippled", "rand_params"))


def record_video(run: Run, cfg: ExperimentConfig, model) -> Path | None:
    """Write ``RUN_DIR/videos/episode.gif`` for MuJoCo tasks; ``None`` (and one message) otherwise."""
    if not _is_mujoco(cfg):
        return None
    backend = os.environ.get("MUJOCO_GL", "")
    if backend not in ("egl", "osmesa"):
        print("Video skipped: set MUJOCO_GL=egl (or osmesa) to render MuJoCo episodes off-screen.", file=sys.stderr)
        return None
    see = normalize.load(run) or (lambda o: o)
    try:
        import imageio.v2 as imageio  # video encoder: only for MuJoCo reports; a failure skips the video

        env = make_env(cfg, render_mode="rgb_array")
        frames = []
        obs, _ = env.reset(seed=cfg.seed)
        state, start = None, np.ones(1, dtype=bool)
        for t in range(MAX_STEPS):
            action, state = model.predict(see(obs[None]), state=state, episode_start=start, deterministic=True)
            start = np.zeros(1, dtype=bool)
            obs, _, term, trunc, _ = env.step(action[0])
            if t % FRAME_EVERY == 0:
                frames.append(env.render())
            if term or trunc:
                break
        env.close()
        buf = io.BytesIO()
        imageio.mimsave(buf, frames, format="GIF", duration=FRAME_EVERY / 30)
        path = run.path / "videos" / "episode.gif"
        atomic_write_bytes(path, buf.getvalue())
        return path
    except Exception as err:  # noqa: BLE001  (any rendering problem: skip, never fail the report)
        print(f"Video skipped: rendering with MUJOCO_GL={backend} failed ({type(err).__name__}: {err}).",
              file=sys.stderr)
        return None
