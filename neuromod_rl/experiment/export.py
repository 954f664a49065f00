"""``neuromod-rl export``: a run's policy in formats that load without unpickling.

* ``safetensors`` -- the policy's ``state_dict`` (tensors only) and, as string metadata, what is
  needed to rebuild the policy: the resolved config (YAML), the algorithm and the policy name.
  :func:`load_exported_model` rebuilds a model for ``predict``; it never imports or calls anything
  named in the file (the env is made from a registered id and the project's own wrappers only).
* ``onnx`` -- one step of the policy as an ONNX graph, the plastic state an explicit input and
  output (:func:`export_onnx`, the step is :mod:`neuromod_rl.agents.on_policy.onnx_step`); runs in onnxruntime
  with numpy alone: no torch, no pickle.

SB3's ``.zip`` checkpoints are pickles: loading one runs code stored in it, so they are for your own
runs only. These two formats are the ones to share. A policy with NaN/inf weights is refused.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save

from neuromod_rl.agents.on_policy.onnx_step import PolicyStep, state_layout
from neuromod_rl.experiment.config import dump_config, validate
from neuromod_rl.experiment.environment import build_vec_env
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.evaluate import load_model, load_run
from neuromod_rl.experiment.runs import atomic_write_bytes
from neuromod_rl.experiment.train import build_model

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
    for name, tensor in named.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(
                f"{what}: the policy weight {name!r} holds NaN/inf (training diverged), so it is not exported. "
                "Export an earlier checkpoint of the run, or retrain with a lower learning rate."
            )


def export_safetensors(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the policy weights of ``run_dir`` to ``out`` (default ``RUN_DIR/model.safetensors``)."""
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


# ------------------------------------------------------------------------------ ONNX
ONNX_FORMAT = "neuromod-rl/policy-step-v1"
ONNX_OPSET = 17
_EXTRA = "install the export extra: pip install 'neuromod-rl[export]' (onnx, onnxruntime)"


def export_onnx(model_or_run, out: str | Path | None = None, exporter: str = "torchscript",
                verify_steps: int = 20) -> Path:
    """Write one step of a plastic policy as an ONNX graph whose plastic state is an explicit input and
    output: ``(obs, state, episode_start) -> (action, value, next_state)`` (see
    :mod:`neuromod_rl.agents.on_policy.onnx_step` for shapes and dtypes). Running it needs onnxruntime and numpy only.

    Args:
        model_or_run: a run directory (its final model, else its newest checkpoint), or a PlasticPPO /
            PlasticA2C model, or its policy.
        out: the ``.onnx`` file (default ``RUN_DIR/policy.onnx``; required for a model).
        exporter: ``"torchscript"`` (torch's tracing exporter, ``dynamo=False``: about a second) or
            ``"dynamo"`` (``torch.export``-based, needs onnxscript; slower). Both work offline.
        verify_steps: after writing, run this many steps of random observations through onnxruntime and
            the policy and refuse the file if they differ (0: no check).

    The file's metadata (``metadata_props``) records the format, the state layout (field, shape per
    env, offset), the spaces and, for a run, its config.
    """
    try:  # onnx: optional extra (export), imported only for this export
        import onnx
    except ImportError:
        raise UserError(f"ONNX export needs the onnx package: {_EXTRA}") from None

    config = None
    if isinstance(model_or_run, str | Path):
        run, cfg = load_run(model_or_run)
        path = output_path(out, run.path / "policy.onnx", ".onnx")
        policy, config = load_model(run, cfg).policy, dump_config(cfg)
    else:
        if out is None:
            raise UserError("export_onnx(model, out): pass the output file for a model")
        path = output_path(out, Path(out), ".onnx")
        policy = getattr(model_or_run, "policy", model_or_run)
    if exporter not in ("torchscript", "dynamo"):
        raise UserError(f"exporter={exporter!r} is not valid; choose 'torchscript' or 'dynamo'")
    check_finite_weights(dict(policy.state_dict()), f"export {path}")
    try:
        step = PolicyStep(_cpu_copy(policy)).eval()
    except ValueError as err:
        raise UserError(f"cannot export this policy to ONNX: {err}") from None
    obs_space = policy.observation_space
    example = (
        torch.as_tensor(np.stack([obs_space.sample() for _ in range(2)])),
        step.initial.repeat(2, 1),
        torch.ones(2, dtype=torch.bool),
    )
    names = (["obs", "state", "episode_start"], ["action", "value", "next_state"])
    buf = _trace(step, example, names, exporter)
    model = onnx.load_model_from_string(buf)
    meta = {
        "format": ONNX_FORMAT,
        "signature": "(obs [B, *obs_shape], state [B, D] float32, episode_start [B] bool) -> "
                     "(action, value [B, 1] float32, next_state [B, D] float32)",
        "action": "the deterministic action of predict(..., deterministic=True): argmax for Discrete (int64 [B]), "
                  "the Gaussian mean clipped to the bounds for Box",
        "state_dim": str(policy.state_dim),
        "state_layout": json.dumps(state_layout(policy)),
        "observation_space": repr(obs_space),
        "action_space": repr(policy.action_space),
    }
    if config is not None:
        meta["config"] = config
    onnx.helper.set_model_props(model, meta)
    model.doc_string = "neuromod-rl plastic policy, one step; the plastic state is an explicit input and output"
    data = model.SerializeToString()
    if verify_steps:
        _verify(data, step, obs_space, verify_steps)
    atomic_write_bytes(path, data)
    return path


def _cpu_copy(policy):
    """A copy of ``policy`` on the CPU, built as SB3 rebuilds a saved policy (from its constructor
    parameters, then its weights), so the caller's model keeps its device, mode and RNG state."""
    with torch.random.fork_rng(devices=[]):  # the new module's random init must not move the caller's RNG
        copy = type(policy)(**policy._get_constructor_parameters())
    copy.load_state_dict(policy.state_dict())
    return copy.to("cpu")


def _trace(step, example, names, exporter: str) -> bytes:
    batch = ["obs", "state", "episode_start", "action", "value", "next_state"]
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # the shape checks in the traced code are constants for a given policy: their TracerWarnings say nothing
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message="The axis name")  # dynamo: one batch axis named once
        if exporter == "torchscript":
            torch.onnx.export(step, example, buf, dynamo=False, input_names=names[0], output_names=names[1],
                              dynamic_axes={n: {0: "batch"} for n in batch}, opset_version=ONNX_OPSET)
            return buf.getvalue()
        try:
            dim = torch.export.Dim("batch", min=1)
            program = torch.onnx.export(step, example, dynamo=True, input_names=names[0], output_names=names[1],
                                        dynamic_shapes=({0: dim}, {0: dim}, {0: dim}), verbose=False)
        except ImportError:
            raise UserError(f"exporter='dynamo' needs onnxscript: pip install onnxscript ({_EXTRA})") from None
        program.save(buf)
        return buf.getvalue()


def _verify(data: bytes, step, obs_space, n_steps: int, batch: int = 3) -> None:
    """Run the graph in onnxruntime and the policy in torch side by side; refuse a graph that differs."""
    try:  # onnxruntime: optional extra (export), imported only to verify an export
        import onnxruntime
    except ImportError:
        raise UserError(f"verifying the ONNX export needs onnxruntime: {_EXTRA}") from None
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    obs_space.seed(0)
    state = step.initial.repeat(batch, 1).numpy()
    torch_state = torch.as_tensor(state)
    for t in range(n_steps):
        obs = np.stack([obs_space.sample() for _ in range(batch)])
        start = np.array([t == 0] * batch)
        action, value, state = session.run(None, {"obs": obs, "state": state, "episode_start": start})
        with torch.no_grad():
            ref = step(torch.as_tensor(obs), torch_state, torch.as_tensor(start))
        torch_state = ref[2]
        worst = max(float(np.abs(np.asarray(a, dtype=np.float64) - b.numpy()).max())
                    for a, b in zip((action, value, state), ref))
        if worst > 1e-4:
            raise RuntimeError(f"ONNX export check: onnxruntime and torch differ by {worst:.3g} at step {t}")
