"""Weights & Biases logging that can never stop training.

* ``--wandb`` turns it on; ``--wandb-project/-entity/-group/-tags`` name the run. The group defaults to
  the config's ``name``, so the seeds of one config are grouped together; the job type is ``train``.
* ``WANDB_MODE`` is respected when set; otherwise the run is ``offline`` when no credentials are
  found (no ``WANDB_API_KEY`` and no api.wandb.ai entry in ``~/.netrc``), ``online`` when they are.
  An offline run can be uploaded later with ``wandb sync RUN_DIR/wandb/offline-run-*``.
* Every call into wandb goes through :class:`WandbLogger`; the first failure prints one warning
  and turns logging off for the rest of the process, training goes on.
* Everything SB3 logs (``rollout/*``, ``train/*``, ``plastic/*``) reaches W&B through
  :class:`WandbOutputFormat`, an SB3 logger output next to TensorBoard and CSV.
* A finished training logs the exported policy (safetensors: loads without unpickling) as an artifact
  of type ``model`` (:meth:`WandbLogger.log_model`).
"""

from __future__ import annotations

import netrc
import numbers
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stable_baselines3.common.logger import KVWriter

from neuromod_rl.experiment.runs import Run, read_json, write_json


@dataclass
class WandbSettings:
    """What the user asked for on the command line."""

    enabled: bool = False
    project: str = "neuromod-rl"
    entity: str | None = None
    group: str | None = None  # None: the config's name
    tags: list[str] = field(default_factory=list)
    job_type: str = "train"


def _has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def choose_mode() -> str:
    """``WANDB_MODE`` if set, else ``online`` with credentials and ``offline`` without."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    return "online" if _has_credentials() else "offline"


class WandbLogger:
    """A W&B run behind a warn-once guard: any wandb exception disables it, never training."""

    def __init__(self, run: Any = None):
        self._run = run
        self._broken: Any = None  # a run that failed: still finished at the end, so its files are closed
        self._warned = False

    @property
    def active(self) -> bool:
        return self._run is not None

    def _fail(self, what: str, err: BaseException) -> None:
        if not self._warned:
            warnings.warn(
                f"W&B {what} failed ({type(err).__name__}: {err}); W&B logging is off for the rest of this run, "
                "training goes on. Local files (TensorBoard, CSV, plots) are complete.",
                RuntimeWarning,
                stacklevel=3,
            )
            self._warned = True
        if self._run is not None:
            self._broken = self._run
        self._run = None

    def log(self, data: dict[str, Any], step: int | None = None) -> None:
        if self._run is None:
            return
        try:
            self._run.log(data, step=step)
        except Exception as err:  # noqa: BLE001  (wandb may raise anything; training must go on)
            self._fail("log", err)

    def log_images(self, paths: list[Path], step: int | None = None) -> None:
        if self._run is None or not paths:
            return
        try:
            import wandb  # heavy, and only when logging is on; inside the guard: a failure disables W&B

            self.log({f"plots/{p.stem}": wandb.Image(str(p)) for p in paths}, step=step)
        except Exception as err:  # noqa: BLE001
            self._fail("image upload", err)

    def log_video(self, path: Path, step: int | None = None) -> None:
        if self._run is None:
            return
        try:
            import wandb  # heavy, and only when logging is on; inside the guard: a failure disables W&B

            self.log({f"videos/{path.stem}": wandb.Video(str(path))}, step=step)
        except Exception as err:  # noqa: BLE001
            self._fail("video upload", err)

    def log_model(self, export: Callable[[], Path], metadata: dict[str, Any]) -> Path | None:
        """Call ``export`` (it writes the policy file and returns its path) and log that file as this run's
        artifact ``model-<run id>`` of type ``model``, with ``metadata``; the file, or ``None`` when W&B is off
        or the export or the upload failed (one warning: training is finished and saved either way)."""
        if self._run is None:
            return None
        try:
            import wandb  # heavy, and only when logging is on; inside the guard: a failure disables W&B

            path = export()
            artifact = wandb.Artifact(f"model-{self._run.id}", type="model", metadata=metadata)
            artifact.add_file(str(path), name=path.name)
            self._run.log_artifact(artifact)
            return path
        except Exception as err:  # noqa: BLE001  (wandb or the export may raise anything)
            self._fail("model artifact", err)
            return None

    def summary(self, data: dict[str, Any]) -> None:
        if self._run is None:
            return
        try:
            self._run.summary.update(data)
        except Exception as err:  # noqa: BLE001
            self._fail("summary", err)

    def finish(self) -> None:
        """Finish the run (also one that failed earlier, quietly: its offline files must be closed)."""
        if self._broken is not None:
            try:
                self._broken.finish()
            except Exception:  # noqa: BLE001  (already warned about this run)
                pass
            self._broken = None
        if self._run is None:
            return
        try:
            self._run.finish()
        except Exception as err:  # noqa: BLE001
            self._fail("finish", err)
        self._run = None


def init_wandb(settings: WandbSettings, run: Run, config: dict[str, Any]) -> WandbLogger:
    """Start (or, for a resumed run, continue) the W&B run of ``run``; an inert logger if disabled or failing.

    Args:
        settings: what the command line asked for; ``settings.group`` ``None`` groups by ``config["name"]``.
        run: the run directory (``wandb/`` and ``wandb_run.json``, which a resumed run reads back, go there).
        config: the resolved experiment config, recorded as the W&B run's config.
    """
    if not settings.enabled:
        return WandbLogger(None)
    logger = WandbLogger(None)
    try:
        import wandb  # heavy (and may reach the network): only with --wandb; a failure disables W&B

        mode = choose_mode()
        previous = read_json(run.wandb_id, {}) or {}
        if mode == "offline" and "WANDB_MODE" not in os.environ:
            print(
                f"W&B: no credentials found, logging offline to {run.path / 'wandb'} "
                "(upload later with `wandb sync`)",
                file=sys.stderr,
            )
        names = {
            "project": previous.get("project", settings.project),
            "entity": previous.get("entity", settings.entity),
            "group": previous.get("group", settings.group or config.get("name")),
            "job_type": previous.get("job_type", settings.job_type),
            "tags": previous.get("tags", settings.tags),
        }
        wb = wandb.init(
            **{**names, "tags": names["tags"] or None},
            name=run.path.name,
            id=previous.get("id"),
            resume="allow" if previous.get("id") else None,
            dir=str(run.path),
            mode=mode,
            config=config,
            settings=wandb.Settings(console="off", silent=True),
        )
        logger = WandbLogger(wb)
        write_json(run.wandb_id, {"id": wb.id, **names, "mode": mode})
    except Exception as err:  # noqa: BLE001  (a wandb failure must never stop training)
        logger._fail("init", err)
    return logger


def make_output_format(logger: WandbLogger):
    """An SB3 ``KVWriter`` that forwards every logger dump to ``logger``."""
    class WandbOutputFormat(KVWriter):
        def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
            data = {
                k: v
                for k, v in key_values.items()
                if isinstance(v, numbers.Real)
                and not isinstance(v, bool)
                and "wandb" not in (key_excluded.get(k) or ())
            }
            if data:
                logger.log(data, step=step)

        def close(self) -> None:
            pass

    return WandbOutputFormat()
