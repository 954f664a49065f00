"""``neuromod-rl export``: a run's policy in formats that load without unpickling.

* ``safetensors`` -- the policy's ``state_dict`` (tensors only) and, as string metadata, what is
  needed to rebuild the policy: the resolved config (YAML), the algorithm, the policy name and the
  policy's spaces (JSON). :func:`load_exported_model` rebuilds a model for ``predict``; it never
  imports or calls anything named in the file, makes no env and changes no process-wide setting
  (:func:`make_exported_env` makes the config's env when the caller asks).
* ``onnx`` -- one step of the policy as an ONNX graph, the plastic state an explicit input and
  output (:func:`export_onnx`, the step is :mod:`neuromod_rl.agents.on_policy.onnx_step`); runs in onnxruntime
  with numpy alone: no torch, no pickle.

SB3's ``.zip`` checkpoints are pickles: loading one runs code stored in it, so they are for your own
runs only. These two formats are the ones to share. A policy with NaN/inf weights is refused.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save
from stable_baselines3.common.vec_env import DummyVecEnv

from neuromod_rl.agents.on_policy.onnx_step import PolicyStep, state_layout
from neuromod_rl.experiment import safe_yaml
from neuromod_rl.experiment.algos import algo_class
from neuromod_rl.experiment.config import (
    ExperimentConfig,
    check_env_module,
    dump_config,
    resolve_wrapper,
    validate,
)
from neuromod_rl.experiment.config_limits import check_memory
from neuromod_rl.experiment.environment import make_env
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.evaluate import load_model, load_run
from neuromod_rl.experiment.runs import atomic_write_bytes, check_output_file
from neuromod_rl.experiment.train import hyperparameters, policy_kwargs

FORMAT = "neuromod-rl/policy-v1"


def output_path(out: str | Path | None, default: Path, suffix: str) -> Path:
    """Where an export goes: ``out`` or ``default``, a new path or an existing regular file
    (:func:`~neuromod_rl.experiment.runs.check_output_file`)."""
    path = Path(out) if out is not None else default
    if path.is_dir():
        raise UserError(f"--out {str(path)!r} is a directory; pass a file path, e.g. {path / ('model' + suffix)}")
    return check_output_file(path, "--out" if out is not None else "the export file")


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
                "num_timesteps": str(model.num_timesteps),
                **space_metadata(model.observation_space, model.action_space)}
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


def _embedded_config(path: str | Path, metadata: dict[str, str]) -> ExperimentConfig:
    """The run config an export embeds, validated as data: nothing it names is imported, made or called."""
    data = safe_yaml.load(metadata.get("config", ""), f"{path}: the embedded config", "Export the run again.")
    cfg = validate(data, f"{path} (embedded config)")
    return cfg


_IMPORT_YOURSELF = ("Loading an export never imports code named in the file: import what you trust yourself, make "
                    "the env, and pass it: load_exported_model(path, env=my_env).")


def exported_config(path: str | Path) -> ExperimentConfig:
    """The run config embedded in an export, validated as data (nothing it names is imported or made):
    read its ``env`` and ``env_kwargs`` before :func:`make_exported_env` makes that env."""
    return _embedded_config(path, load_safetensors(path)[1])


def make_exported_env(path: str | Path) -> gym.Env:
    """The env the embedded config of an export names: ``gymnasium.make(env, **env_kwargs)`` wrapped by
    the project's wrappers it lists. Made only when you call this, because it runs the env's code with
    arguments chosen by whoever wrote the file (an env that takes a path opens that path): call it for
    files you trust, or read :func:`exported_config` first. A config that needs modules of its own
    (``trusted_modules``) is refused: import what you trust yourself and make the env."""
    cfg = exported_config(path)
    _refuse_foreign_code(path, cfg)
    try:
        return make_env(cfg)
    except UserError as err:
        raise UserError(f"{path} (embedded config): {err}") from None


def load_exported_model(path: str | Path, env=None, *, observation_space: spaces.Space | None = None,
                        action_space: spaces.Space | None = None):
    """Rebuild a model (for ``predict``) from an exported file: the architecture from the embedded
    config, the weights from the tensors. Loading changes no process-wide setting (the config's
    ``torch_threads`` and ``seed`` are not applied), makes no env and opens no path but ``path``; every
    tensor must have exactly the dtype and shape of the policy's (nothing is cast, dropped or added).

    Args:
        path: a file written by ``neuromod-rl export --format safetensors``.
        env: the env (or VecEnv) whose spaces the policy uses; it becomes the model's env. Default: the
            spaces recorded in the file, and the model has no env (``model.set_env`` attaches one). To
            make the env the file's config names, pass ``env=make_exported_env(path)`` (it runs that
            env's code with the file's ``env_kwargs``: for files you trust).
        observation_space, action_space: the policy's spaces, in place of ``env`` or the recorded ones
            (both or neither).
    """
    tensors, metadata = load_safetensors(path)
    cfg = _embedded_config(path, metadata)
    if (observation_space is None) != (action_space is None):
        raise UserError("load_exported_model: pass both observation_space and action_space, or neither")
    if env is not None and observation_space is not None:
        raise UserError("load_exported_model: pass env or the spaces (observation_space, action_space), not both")
    venv = env
    if env is None:
        _refuse_foreign_code(path, cfg)
        if observation_space is None:
            observation_space, action_space = _recorded_spaces(path, metadata, tensors)
        obs_space, act_space = observation_space, action_space
        venv = DummyVecEnv([lambda: _SpacesOnly(obs_space, act_space)])
    model = _build_for_predict(path, cfg, venv)
    if env is None:
        model.env = None  # as SB3's load without an env: learn() asks for one instead of stepping a stand-in
    _check_tensors(path, tensors, model.policy.state_dict())
    try:
        model.policy.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise UserError(f"{path}: the weights do not fit the policy the embedded config describes ({err}).") from None
    return model


def _refuse_foreign_code(path: str | Path, cfg: ExperimentConfig) -> None:
    """Refuse a config that names code outside the project, importing none of it: loading is not the
    place to opt in to a module, and such a config is not one `neuromod-rl check` accepts without it."""
    if cfg.trusted_modules:
        raise UserError(f"{path}: the embedded config imports modules {cfg.trusted_modules} (trusted_modules). "
                        + _IMPORT_YOURSELF)
    source = f"{path} (embedded config)"
    try:
        check_env_module(cfg.env, [], source)
        for spec in cfg.wrappers:
            resolve_wrapper(spec, source, [])
    except UserError as err:
        raise UserError(f"{err} {_IMPORT_YOURSELF}") from None


class _SpacesOnly(gym.Env):
    """An env that is only its spaces: SB3 builds a policy from an env, and loading an export makes none."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        raise RuntimeError("a model loaded from an export has no env: model.set_env(env) first")

    def step(self, action):
        raise RuntimeError("a model loaded from an export has no env: model.set_env(env) first")


def _build_for_predict(path: str | Path, cfg: ExperimentConfig, venv):
    """The model the config describes, built without touching process-wide state: unlike training's
    ``build_model``, the config's thread count and seed are not applied (they belong to whoever runs
    training, not to a file being read), and the random init (overwritten by the weights) draws from a
    forked generator so the caller's random state does not move."""
    check_memory(cfg, f"{path} (embedded config)")
    cls = algo_class(cfg.algo)
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        # PPO's note on batch_size vs n_steps * n_envs: irrelevant for predict
        warnings.filterwarnings("ignore", message="You have specified a mini-batch size")
        try:
            return cls(cfg.policy, venv, policy_kwargs=policy_kwargs(cfg), seed=None, device=cfg.device, verbose=0,
                       **hyperparameters(cfg))
        except (TypeError, ValueError, AssertionError, RuntimeError, MemoryError) as err:
            raise UserError(
                f"{path}: cannot build {cfg.algo} with policy {cfg.policy!r}, policy_kwargs {cfg.policy_kwargs!r} "
                f"and hyperparameters {cfg.hyperparameters!r} from the embedded config ({err}); export the run again."
            ) from None


def _describe(tensor: torch.Tensor) -> str:
    return f"{str(tensor.dtype).removeprefix('torch.')} {list(tensor.shape)}"


def _check_tensors(path: str | Path, tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Refuse tensors that are not exactly the policy's: ``load_state_dict`` casts another dtype silently
    (int32 truncates weights, so the policy acts differently), and NaN/inf weights act on garbage."""
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise UserError(f"{path}: the tensors do not fit the policy the embedded config describes: missing "
                        f"{missing[:10]}, unexpected {unexpected[:10]}. Export the run again.")
    for name, want in expected.items():
        got = tensors[name]
        if got.dtype != want.dtype or got.shape != want.shape:
            raise UserError(f"{path}: tensor {name!r} is {_describe(got)}, but the policy's {name!r} is "
                            f"{_describe(want)}. Loading casts and reshapes nothing; export the run again.")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise UserError(f"{path}: tensor {name!r} holds NaN/inf, which `neuromod-rl export` never writes; "
                            "export the run again.")


# ------------------------------------------------------------------------------ spaces, as JSON metadata
_SPACE_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
                 "float64")
_SPACE_ERRORS = (ValueError, TypeError, AssertionError, OverflowError, RecursionError)


def space_metadata(observation_space: spaces.Space, action_space: spaces.Space) -> dict[str, str]:
    """The policy's spaces as JSON metadata, so that a loader builds the policy without making the env.
    A kind of space not recorded here is left out, and the loader then asks the caller for the env."""
    out = {}
    for key, space in (("observation_space", observation_space), ("action_space", action_space)):
        data = _space_to_json(space)
        if data is not None:
            out[key] = json.dumps(data)
    return out


def _bound(values: np.ndarray) -> Any:
    flat = values.reshape(-1)
    # one number when all are equal (the usual case), so an image space does not record every pixel
    return flat[0].item() if flat.size and bool((flat == flat[0]).all()) else values.tolist()


def _space_to_json(space: spaces.Space) -> dict[str, Any] | None:
    if isinstance(space, spaces.Box) and str(space.dtype) in _SPACE_DTYPES:
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": _bound(space.low), "high": _bound(space.high)}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Dict):
        parts = {key: _space_to_json(sub) for key, sub in space.spaces.items()}
        if all(part is not None for part in parts.values()):
            return {"type": "Dict", "spaces": parts}
    return None


def _recorded_spaces(path: str | Path, metadata: dict[str, str],
                     tensors: dict[str, torch.Tensor]) -> tuple[spaces.Space, spaces.Space]:
    """The spaces the file records. Neither may have more elements than the file has weights: a policy
    reads each observation element and scores each action, so a larger space is not this policy's."""
    if "observation_space" not in metadata or "action_space" not in metadata:
        raise UserError(
            f"{path} records no observation_space/action_space (exported by an older neuromod-rl, or spaces of a "
            "kind it cannot record), so the policy's spaces must come from you: load_exported_model(path, "
            "observation_space=..., action_space=...) or load_exported_model(path, env=my_env). "
            "env=make_exported_env(path) makes the env the file's config names, running its code with the file's "
            "env_kwargs: only for files you trust."
        )
    limit = sum(t.numel() for t in tensors.values())
    out = []
    for key in ("observation_space", "action_space"):
        try:
            out.append(_space_from_json(json.loads(metadata[key]), limit))
        except _SPACE_ERRORS as err:
            raise UserError(f"{path}: the recorded {key} is not valid ({err}); export the run again, or pass the "
                            "env: load_exported_model(path, env=my_env).") from None
    return out[0], out[1]


def _int(value: Any, what: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= 2**62:
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, got {value}")
    return value


def _ints(value: Any, what: str, minimum: int | None = None) -> list[int]:
    if not isinstance(value, list) or len(value) > 32:
        raise ValueError(f"{what} must be a list of at most 32 integers, got {value!r:.80}")
    return [_int(v, what, minimum) for v in value]


def _within(size: int, limit: int, what: str) -> None:
    if size > limit:
        raise ValueError(f"{what} gives {size:,} elements, more than the {limit:,} weights of the file")


def _bounds(value: Any, shape: list[int], dtype: str, what: str) -> Any:
    array = np.array(value)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numbers, got {value!r:.80}")
    if array.shape not in ((), tuple(shape)):
        raise ValueError(f"{what} has shape {list(array.shape)}; expected a number or shape {shape}")
    return array.item() if array.shape == () else array.astype(dtype)


def _space_from_json(data: Any, limit: int) -> spaces.Space:
    """The space :func:`_space_to_json` described, every field checked (the file may be anyone's)."""
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "Box":
        shape = _ints(data.get("shape"), "shape", 0)
        _within(math.prod(shape), limit, f"shape {shape}")
        dtype = data.get("dtype")
        if dtype not in _SPACE_DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {list(_SPACE_DTYPES)}")
        low, high = (_bounds(data.get(k), shape, dtype, k) for k in ("low", "high"))
        return spaces.Box(low, high, tuple(shape), np.dtype(dtype))
    if kind == "Discrete":
        n = _int(data.get("n"), "n", 1)
        _within(n, limit, f"n={n}")
        return spaces.Discrete(n, start=_int(data.get("start", 0), "start"))
    if kind == "Dict" and isinstance(data.get("spaces"), dict):
        return spaces.Dict({str(key): _space_from_json(sub, limit) for key, sub in data["spaces"].items()})
    raise ValueError(f"not a space this loader rebuilds (Box, Discrete, Dict): {data!r:.80}")


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
