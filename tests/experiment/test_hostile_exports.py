"""Loading a safetensors export touches nothing but the model it returns: no process-global setting
(torch's thread count, the random generators), no env made and no path opened that the file names;
and every tensor in the file is exactly the policy's (dtype and shape), never cast. The hostile files
are an honest export of ``trained_run``, rewritten with the safetensors package."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from gymnasium import spaces
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from neuromod_rl.agents import PlasticPPO
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.export import export_safetensors, load_exported_model, make_exported_env

OBS = np.random.default_rng(0).random((6, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def honest(trained_run: Path, tmp_path_factory) -> Path:
    """``neuromod-rl export`` of the tiny trained run."""
    return export_safetensors(trained_run, tmp_path_factory.mktemp("export") / "model.safetensors")


def _rewrite(src: Path, dst: Path, config: dict[str, Any] | None = None,
             tensors: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
             metadata: dict[str, str | None] | None = None) -> Path:
    """``src`` with its embedded config updated by ``config``, its tensors mapped by ``tensors`` and its
    metadata keys set (``None``: removed) by ``metadata``; written as a well-formed safetensors file."""
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
    data = load_file(str(src))
    if config:
        meta["config"] = yaml.safe_dump({**yaml.safe_load(meta["config"]), **config})
    for key, value in (metadata or {}).items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    save_file(tensors(data) if tensors else data, str(dst), metadata=meta)
    return dst


def _actions(model) -> np.ndarray:
    state, out = None, []
    for t in range(len(OBS)):
        action, state = model.predict(OBS[t:t + 1], state=state, episode_start=np.array([t == 0]), deterministic=True)
        out.append(action)
    return np.concatenate(out)


def _biggest_weight(path: Path) -> str:
    """The largest non-square weight matrix (a transposed square one would keep its shape)."""
    tensors = load_file(str(path))
    return max(sorted(tensors), key=lambda k: (tensors[k].is_floating_point(), tensors[k].dim(),
                                               len(set(tensors[k].shape)) > 1, tensors[k].numel()))


def _globals() -> tuple:
    # the legacy global generator is exactly the process-wide state SB3's seeding would move
    return torch.get_num_threads(), torch.get_rng_state(), np.random.get_state(), random.getstate()  # noqa: NPY002


def _assert_same_globals(before: tuple, after: tuple) -> None:
    assert after[0] == before[0], f"torch.get_num_threads() changed from {before[0]} to {after[0]}"
    assert torch.equal(after[1], before[1]), "torch's random state changed"
    assert all(np.array_equal(a, b) for a, b in zip(after[2], before[2])), "numpy's random state changed"
    assert after[3] == before[3], "Python's random state changed"


def test_an_honest_export_loads_without_making_its_env(honest, trained_run, monkeypatch):
    def no_env(*args, **kwargs):
        raise AssertionError("loading an export made an env")

    expected = _actions(PlasticPPO.load(trained_run / "model.zip"))
    monkeypatch.setattr(gym, "make", no_env)
    model = load_exported_model(honest)
    assert np.array_equal(_actions(model), expected)


def test_the_env_of_an_export_is_made_only_when_the_caller_asks(honest, trained_run):
    env = make_exported_env(honest)
    assert isinstance(env, gym.Env) and env.observation_space.shape == (4,)
    model = load_exported_model(honest, env=env)
    assert np.array_equal(_actions(model), _actions(PlasticPPO.load(trained_run / "model.zip")))


def test_loading_an_export_changes_no_process_global_setting(honest, tmp_path):
    before = _globals()
    threads = 256 if before[0] != 256 else 255
    path = _rewrite(honest, tmp_path / "threads.safetensors", config={"torch_threads": threads, "seed": 12345})
    try:
        model = load_exported_model(path)
        after = _globals()
    finally:
        torch.set_num_threads(before[0])
    _assert_same_globals(before, after)
    assert np.array_equal(_actions(model), _actions(load_exported_model(honest)))


class _OpensItsXml(gym.Env):
    """What a MuJoCo env does with ``xml_file``: opens the path it is given."""

    opened: list[str] = []
    observation_space = spaces.Box(0.0, 1.0, (4,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, xml_file: str):
        type(self).opened.append(xml_file)
        Path(xml_file).read_bytes()


@pytest.fixture
def opener():
    name = "neuromod_rl_hostile_test/OpensItsXml-v0"
    gym.register(name, entry_point=_OpensItsXml)
    _OpensItsXml.opened.clear()
    yield name
    gym.registry.pop(name, None)


def test_loading_an_export_opens_no_path_the_file_names(honest, tmp_path, opener):
    secret = tmp_path / "secret"
    secret.write_text("not yours")
    path = _rewrite(honest, tmp_path / "opener.safetensors",
                    config={"env": opener, "env_kwargs": {"xml_file": str(secret)}})
    model = load_exported_model(path)
    assert _OpensItsXml.opened == []
    assert np.array_equal(_actions(model), _actions(load_exported_model(honest)))


def test_an_export_without_recorded_spaces_needs_the_callers_env(honest, tmp_path):
    path = _rewrite(honest, tmp_path / "old.safetensors", metadata={"observation_space": None, "action_space": None})
    with pytest.raises(UserError, match=r"env=.*make_exported_env") as err:
        load_exported_model(path)
    assert "observation_space" in str(err.value)
    model = load_exported_model(path, env=make_exported_env(path))
    assert np.array_equal(_actions(model), _actions(load_exported_model(honest)))
    mine = load_exported_model(path, observation_space=spaces.Box(0.0, 1.0, (4,), np.float32),
                               action_space=spaces.Discrete(2))
    assert np.array_equal(_actions(mine), _actions(model))


@pytest.mark.parametrize(
    "space",
    [
        "{not json",
        json.dumps({"type": "Box", "low": 0.0, "high": 1.0, "shape": [2**40], "dtype": "float32"}),
        json.dumps({"type": "Box", "low": 0.0, "high": 1.0, "shape": [4], "dtype": "object"}),
        json.dumps({"type": "Box", "low": [0.0, 0.0], "high": 1.0, "shape": [4], "dtype": "float32"}),
        json.dumps({"type": "Graph"}),
    ],
    ids=["not json", "huge shape", "dtype object", "bounds of another shape", "unknown space"],
)
def test_a_malformed_recorded_space_is_refused_by_name(honest, tmp_path, space):
    path = _rewrite(honest, tmp_path / "space.safetensors", metadata={"observation_space": space})
    with pytest.raises(UserError, match="observation_space"):
        load_exported_model(path)


@pytest.mark.parametrize("dtype", [torch.float64, torch.int32, torch.float16])
def test_a_tensor_of_another_dtype_is_refused_not_cast(honest, tmp_path, dtype):
    name = _biggest_weight(honest)
    path = _rewrite(honest, tmp_path / "dtype.safetensors", tensors=lambda d: {**d, name: d[name].to(dtype)})
    shape = list(load_file(str(honest))[name].shape)
    with pytest.raises(UserError) as err:
        load_exported_model(path)
    message = str(err.value)
    assert repr(name) in message and str(dtype).removeprefix("torch.") in message
    assert f"float32 {shape}" in message  # what the policy expects


def test_a_tensor_of_another_shape_is_refused_by_name(honest, tmp_path):
    name = _biggest_weight(honest)
    tensor = load_file(str(honest))[name]
    path = _rewrite(honest, tmp_path / "shape.safetensors", tensors=lambda d: {**d, name: d[name].t().contiguous()})
    with pytest.raises(UserError) as err:
        load_exported_model(path)
    message = str(err.value)
    assert repr(name) in message and str(list(tensor.shape)) in message and str(list(tensor.t().shape)) in message


def test_missing_or_extra_tensors_are_refused_by_name(honest, tmp_path):
    name = _biggest_weight(honest)
    path = _rewrite(honest, tmp_path / "keys.safetensors",
                    tensors=lambda d: {**{k: v for k, v in d.items() if k != name}, "extra.weight": torch.zeros(3)})
    with pytest.raises(UserError) as err:
        load_exported_model(path)
    assert repr(name) in str(err.value) and "'extra.weight'" in str(err.value)


def test_non_finite_weights_are_refused_on_load(honest, tmp_path):
    name = _biggest_weight(honest)

    def poison(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        bad = d[name].clone()
        bad.view(-1)[0] = float("nan")
        return {**d, name: bad}

    path = _rewrite(honest, tmp_path / "nan.safetensors", tensors=poison)
    with pytest.raises(UserError, match="NaN/inf"):
        load_exported_model(path)
