"""``neuromod-rl export``: a run's policy in formats that load without unpickling.

* ``safetensors`` -- the policy's ``state_dict`` (tensors only) and, as string metadata, what is
  needed to rebuild the policy: the resolved config (YAML), the algorithm and the policy name.
  :func:`load_exported_model` rebuilds a model for ``predict``; it never imports or calls anything
  named in the file (the env is made from a registered id and the project's own wrappers only).
* ``onnx`` -- one step of the policy as an ONNX graph, the plastic state an explicit input and
  output (:mod:`neuromod_rl.experiment.onnx_export`); runs in onnxruntime with no torch.

SB3's ``.zip`` checkpoints are pickles: loading one runs code stored in it, so they are for your own
runs only. These two formats are the ones to share. A policy with NaN/inf weights is refused.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.runs import atomic_write_bytes

FORMAT = "neuromod-rl/policy-v1"


def output_path(out: str | Path | None, default: Path, suffix: str) -> Path:
    """Where an export goes: ``out`` (a file path, never an existing directory) or ``default``."""
    path = Path(out) if out is not None else default
    if path.is_dir():
        raise UserError(f"--out {str(path)!r} is a directory; pass a file path, e.g. {path / ('model' + suffix)}")
    if not path.parent.is_dir():
        raise UserError(f"--out {str(path)!r}: the folder {str(path.parent)!r} does not exist; create it first")
    return path


def check_finite_weights(named: dict[str, Any], what: str) -> None:
    """Refuse to write weights holding NaN/inf (a diverged run): name the first bad tensor."""
    import torch

    for name, tensor in named.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(
                f"{what}: the policy weight {name!r} holds NaN/inf (training diverged), so it is not exported. "
                "Export an earlier checkpoint of the run, or retrain with a lower learning rate."
            )


def export_safetensors(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the policy weights of ``run_dir`` to ``out`` (default ``RUN_DIR/model.safetensors``)."""
    from safetensors.torch import save

    from neuromod_rl.experiment.config import dump_config
    from neuromod_rl.experiment.evaluate import load_model, load_run

    run, cfg = load_run(run_dir)
    path = output_path(out, run.path / "model.safetensors", ".safetensors")
    model = load_model(run, cfg)
    # contiguous private copies: safetensors refuses tensors that share memory
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.policy.state_dict().items()}
    check_finite_weights(tensors, f"export {run.path}")
    metadata = {"format": FORMAT, "config": dump_config(cfg), "algo": cfg.algo, "policy": cfg.policy,
                "num_timesteps": str(model.num_timesteps)}
    atomic_write_bytes(path, save(tensors, metadata=metadata))
    return path


def load_safetensors(path: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """``(state_dict, metadata)`` of an exported file (no unpickling)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; create it with `neuromod-rl export RUN_DIR --format safetensors`.")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"{path} is not a readable safetensors file ({err}); export it again.") from None
    if metadata.get("format") != FORMAT:
        raise UserError(f"{path} was not written by `neuromod-rl export` (format {metadata.get('format')!r}).")
    return tensors, metadata


def load_exported_model(path: str | Path, env=None):
    """Rebuild a model (for ``predict``) from an exported file: the architecture from the embedded
    config, the weights from the tensors; strict loading, so a mismatch is an error, not a silent miss.

    Args:
        path: a file written by ``neuromod-rl export --format safetensors``.
        env: the env (or VecEnv) whose spaces the policy uses. Default: made from the embedded config,
            which may then name only a registered env id and the project's own wrappers: loading never
            imports or calls anything the file names. For an env of your own (a wrapper from your
            package), import your package and pass the env here.
    """
    import yaml

    from neuromod_rl.experiment.config import validate
    from neuromod_rl.experiment.environment import build_vec_env
    from neuromod_rl.experiment.train import build_model

    tensors, metadata = load_safetensors(path)
    try:
        data = yaml.safe_load(metadata.get("config", ""))
    except yaml.YAMLError as err:
        raise UserError(f"{path}: the embedded config is not valid YAML ({err}); export the run again.") from None
    cfg = validate(data, f"{path} (embedded config)")
    if env is None:
        if cfg.trusted_modules:
            raise UserError(
                f"{path}: the embedded config imports modules {cfg.trusted_modules} (trusted_modules). Loading an "
                "export never imports code named in the file: import what you trust yourself, make the env, and pass "
                "it: load_exported_model(path, env=my_env)."
            )
        try:  # no trusted modules: make_env takes only registered ids and the project's own wrappers
            env = build_vec_env(cfg.model_copy(update={"n_envs": 1}))
        except UserError as err:
            raise UserError(
                f"{path} (embedded config): {err} Loading an export never imports code named in the file: import "
                "what you trust yourself, make the env, and pass it: load_exported_model(path, env=my_env)."
            ) from None
    with warnings.catch_warnings():  # PPO's note on batch_size vs n_steps * n_envs: irrelevant for predict
        warnings.filterwarnings("ignore", message="You have specified a mini-batch size")
        model = build_model(cfg, env)
    try:
        model.policy.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise UserError(f"{path}: the weights do not fit the policy the embedded config describes ({err}).") from None
    return model
