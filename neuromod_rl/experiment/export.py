"""``neuromod-rl export``: a run's policy weights as safetensors, loadable without unpickling.

The file holds the policy's ``state_dict`` (tensors only) and, as string metadata, what is needed
to rebuild the policy: the resolved config (YAML), the algorithm and the policy name. Nothing in it
is executed on load, unlike SB3's zip (pickles), so it is the format to share weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.runs import atomic_write_bytes

FORMAT = "neuromod-rl/policy-v1"


def export_safetensors(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the policy weights of ``run_dir`` to ``out`` (default ``RUN_DIR/model.safetensors``)."""
    from safetensors.torch import save

    from neuromod_rl.experiment.config import dump_config
    from neuromod_rl.experiment.evaluate import load_model, load_run

    run, cfg = load_run(run_dir)
    model = load_model(run, cfg)
    # contiguous private copies: safetensors refuses tensors that share memory
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.policy.state_dict().items()}
    metadata = {"format": FORMAT, "config": dump_config(cfg), "algo": cfg.algo, "policy": cfg.policy,
                "num_timesteps": str(model.num_timesteps)}
    path = Path(out) if out is not None else run.path / "model.safetensors"
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


def load_exported_model(path: str | Path):
    """Rebuild a model (for ``predict``) from an exported file: the architecture from the embedded
    config, the weights from the tensors; strict loading, so a mismatch is an error, not a silent miss."""
    import yaml

    from neuromod_rl.experiment.config import validate
    from neuromod_rl.experiment.environment import build_vec_env
    from neuromod_rl.experiment.train import build_model

    tensors, metadata = load_safetensors(path)
    cfg = validate(yaml.safe_load(metadata["config"]), f"{path} (embedded config)")
    model = build_model(cfg, build_vec_env(cfg))  # the env only supplies the spaces
    model.policy.load_state_dict(tensors, strict=True)
    return model
