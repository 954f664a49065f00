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
from neuromod_rl.experiment.export_config import config_of_model
from neuromod_rl.experiment.export_spaces import recorded_spaces, space_metadata
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


def export_safetensors(model_or_run: Any, out: str | Path | None = None, *, env_id: str | None = None) -> Path:
    """Write a policy's weights and the config that rebuilds it to a safetensors file.

    Args:
        model_or_run: a run directory (its final model, else its newest checkpoint), or a model of a
            registered algorithm (PlasticPPO, PlasticA2C, PlasticSAC, PlasticTD3, ...): the file is the
            same either way, its config the run's ``config.yaml`` or the one read off the model
            (:func:`~neuromod_rl.experiment.export_config.config_of_model`).
        out: the file (default ``RUN_DIR/model.safetensors``; required for a model).
        env_id: for a model: the Gymnasium id of its env, when the model has no env made from an id.
    """
    model, cfg, path = _model_config_path(model_or_run, out, "model.safetensors", env_id)
    # contiguous private copies: safetensors refuses tensors that share memory
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.policy.state_dict().items()}
    check_finite_weights(tensors, f"export {path}")
    cfg = _naming_heads(cfg, model)
    metadata = {"format": FORMAT, "config": dump_config(cfg), "algo": cfg.algo, "policy": cfg.policy,
                "num_timesteps": str(model.num_timesteps),
                **space_metadata(model.observation_space, model.action_space)}
    atomic_write_bytes(path, save(tensors, metadata=metadata))
    return path


def _model_config_path(model_or_run: Any, out: str | Path | None, name: str, env_id: str | None = None, *,
                       config_required: bool = True) -> tuple[Any, ExperimentConfig | None, Path]:
    """What every export starts from, for a run directory or a model: the model, its config and the
    output file (checked before any work). With ``config_required=False`` (ONNX: the graph runs without
    a config) a bare policy, or a model whose config cannot be read off it, comes with ``None``."""
    suffix = Path(name).suffix
    if isinstance(model_or_run, str | Path):
        run, cfg = load_run(model_or_run)
        path = output_path(out, run.path / name, suffix)
        return load_model(run, cfg), cfg, path
    if out is None:
        raise UserError(f"exporting a {type(model_or_run).__name__} object needs the output file: pass out, "
                        f"e.g. {name!r}")
    path = output_path(out, Path(out), suffix)
    if not hasattr(model_or_run, "policy"):
        if config_required:
            raise UserError(f"cannot export a {type(model_or_run).__name__}: pass a run directory or an SB3 model "
                            "(PlasticPPO, PlasticA2C, PlasticSAC, PlasticTD3, ...)")
        return model_or_run, None, path
    try:
        return model_or_run, config_of_model(model_or_run, env_id), path
    except UserError:
        if config_required:
            raise
        return model_or_run, None, path


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
        observation_space: the policy's observation space, in place of ``env`` or the recorded one
            (pass ``action_space`` with it, or neither).
        action_space: the policy's action space, in place of ``env`` or the recorded one (pass
            ``observation_space`` with it, or neither).
    """
    tensors, metadata = load_safetensors(path)
    cfg = _with_recorded_heads(_embedded_config(path, metadata), tensors)
    if (observation_space is None) != (action_space is None):
        raise UserError("load_exported_model: pass both observation_space and action_space, or neither")
    if env is not None and observation_space is not None:
        raise UserError("load_exported_model: pass env or the spaces (observation_space, action_space), not both")
    venv = env
    if env is None:
        _refuse_foreign_code(path, cfg)
        if observation_space is None:
            observation_space, action_space = recorded_spaces(path, metadata, tensors)
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


#: algorithms whose policy is a PlasticActorCriticPolicy (its default heads are DEFAULT_NET_ARCH)
_PLASTIC_ON_POLICY = ("plastic_ppo", "plastic_a2c", "es")


def _layer_widths(tensors: dict[str, torch.Tensor], prefix: str) -> list[int]:
    """Output widths of the Linear layers ``prefix.<i>.weight`` of an SB3 MlpExtractor branch, in order."""
    found = {}
    for name, tensor in tensors.items():
        rest = name.removeprefix(prefix + ".")
        if rest != name and rest.endswith(".weight") and rest.split(".")[0].isdigit() and tensor.dim() == 2:
            found[int(rest.split(".")[0])] = int(tensor.shape[0])
    return [found[i] for i in sorted(found)]


def _naming_heads(cfg: ExperimentConfig, model: Any) -> ExperimentConfig:
    """The config with the plastic policy's heads spelled out: the file then rebuilds the same policy under any
    later default of ``net_arch``."""
    if cfg.algo not in _PLASTIC_ON_POLICY or "net_arch" in cfg.policy_kwargs:
        return cfg
    return cfg.model_copy(update={"policy_kwargs": {**cfg.policy_kwargs, "net_arch": model.policy.net_arch}})


def _with_recorded_heads(cfg: ExperimentConfig, tensors: dict[str, torch.Tensor]) -> ExperimentConfig:
    """A plastic policy's config with ``net_arch`` read off its tensors when the config does not name it: a
    file written while the policy's default heads were linear names none, and building it with today's
    default would not fit its weights. Files that name their heads are taken at their word."""
    if cfg.algo not in _PLASTIC_ON_POLICY or "net_arch" in cfg.policy_kwargs:
        return cfg
    pi = _layer_widths(tensors, "mlp_extractor.policy_net")
    vf = _layer_widths(tensors, "mlp_extractor.value_net")
    heads: list[int] | dict[str, list[int]] = pi if pi == vf else {"pi": pi, "vf": vf}
    return cfg.model_copy(update={"policy_kwargs": {**cfg.policy_kwargs, "net_arch": heads}})


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
            PlasticA2C model (its config, as :func:`export_safetensors` records it, goes in the metadata
            when it can be read off the model), or its policy (no config).
        out: the ``.onnx`` file (default ``RUN_DIR/policy.onnx``; required for a model).
        exporter: ``"torchscript"`` (torch's tracing exporter, ``dynamo=False``: about a second) or
            ``"dynamo"`` (``torch.export``-based, needs onnxscript; slower). Both work offline.
        verify_steps: after writing, run this many steps of random observations through onnxruntime and
            the policy and refuse the file if they differ (0: no check).

    The file's metadata (``metadata_props``) records the format, the state layout (field, shape per
    env, offset), the spaces and, for a run or a model, its config.
    """
    try:  # onnx: optional extra (export), imported only for this export
        import onnx
    except ImportError:
        raise UserError(f"ONNX export needs the onnx package: {_EXTRA}") from None

    model, cfg, path = _model_config_path(model_or_run, out, "policy.onnx", config_required=False)
    policy, config = getattr(model, "policy", model), (None if cfg is None else dump_config(cfg))
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
