"""Exporting a model object (PlasticPPO, PlasticA2C, PlasticSAC, PlasticTD3 made in Python) writes the same
file as exporting a run directory, with the same checks: the loader rebuilds a model that acts exactly
as the one exported, from the file alone."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from neuromod_rl.agents import PlasticA2C, PlasticPPO, PlasticSAC, PlasticTD3
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.evaluate import load_model, load_run
from neuromod_rl.experiment.export import FORMAT, export_onnx, export_safetensors, load_exported_model

BANDIT = ("neuromod_rl/TwoArmedBanditDependent-v0", {"n_pulls": 10})
PENDULUM = ("Pendulum-v1", {})
#: algorithm -> (env, constructor arguments): a few hundred steps, a few dozen updates
ALGORITHMS = {
    PlasticPPO: (BANDIT, dict(n_steps=20, batch_size=20, n_epochs=2)),
    PlasticA2C: (BANDIT, dict(n_steps=10)),
    PlasticSAC: (PENDULUM, dict(sequence_length=4, batch_size=16, buffer_size=400, learning_starts=180)),
    PlasticTD3: (PENDULUM, dict(sequence_length=4, batch_size=16, buffer_size=400, learning_starts=180)),
}
STEPS = 200


@pytest.fixture(autouse=True)
def _one_thread():
    """Small policies train fastest on one thread (and two contend on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=list(ALGORITHMS), ids=lambda cls: cls.__name__)
def trained(request):
    """A model of each plastic algorithm, trained :data:`STEPS` env steps."""
    cls = request.param
    (env_id, env_kwargs), kwargs = ALGORITHMS[cls]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = cls("MlpPlasticPolicy", gym.make(env_id, **env_kwargs), seed=0,
                    policy_kwargs=dict(hidden_size=8, activation_fn=nn.Tanh), **kwargs)
        model.learn(STEPS)
    finally:
        torch.set_num_threads(threads)
    return model


def _actions(model, env_id: str, env_kwargs: dict, steps: int = 25) -> np.ndarray:
    """Greedy actions of ``model`` along one episode of ``env_id``, its state carried between steps (the
    episode is driven by the actions, so a single different action shows in every later one)."""
    env = gym.make(env_id, **env_kwargs)
    obs, _ = env.reset(seed=3)
    state, out = None, []
    for t in range(steps):
        action, state = model.predict(obs[None], state=state, episode_start=np.array([t == 0]), deterministic=True)
        out.append(np.asarray(action).copy())
        obs, _, terminated, truncated, _ = env.step(action[0])
        if terminated or truncated:
            break
    return np.concatenate(out)


def test_an_exported_model_object_loads_back_and_acts_as_the_original(trained, tmp_path):
    (env_id, env_kwargs), _ = ALGORITHMS[type(trained)]
    path = export_safetensors(trained, tmp_path / "model.safetensors")

    loaded = load_exported_model(path)

    assert type(loaded) is type(trained) and loaded.env is None
    saved = trained.policy.state_dict()
    for name, tensor in loaded.policy.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    np.testing.assert_array_equal(_actions(loaded, env_id, env_kwargs), _actions(trained, env_id, env_kwargs))


def test_the_file_of_a_model_records_the_config_read_off_the_model(trained, tmp_path):
    (env_id, env_kwargs), kwargs = ALGORITHMS[type(trained)]
    path = export_safetensors(trained, tmp_path / "model.safetensors")

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    cfg = yaml.safe_load(meta["config"])
    assert meta["format"] == FORMAT and meta["num_timesteps"] == str(trained.num_timesteps)
    assert cfg["env"] == env_id and cfg["env_kwargs"] == env_kwargs and cfg["policy"] == "MlpPlasticPolicy"
    assert cfg["algo"] == meta["algo"] == f"plastic_{type(trained).__name__.removeprefix('Plastic').lower()}"
    heads = {"net_arch": [64, 64]} if isinstance(trained, (PlasticPPO, PlasticA2C)) else {}  # the default, named
    assert cfg["policy_kwargs"] == {"hidden_size": 8, "activation_fn": "tanh", **heads}
    assert {k: cfg["hyperparameters"][k] for k in ("batch_size", "sequence_length") if k in kwargs} == \
        {k: kwargs[k] for k in ("batch_size", "sequence_length") if k in kwargs}


def test_a_run_and_its_model_object_export_the_same_weights_and_spaces(trained_run, tmp_path):
    run, cfg = load_run(trained_run)
    from_run = export_safetensors(trained_run, tmp_path / "run.safetensors")
    # loaded without an env (as SB3 loads): its env id comes from the caller
    from_object = export_safetensors(load_model(run, cfg), tmp_path / "object.safetensors", env_id=cfg.env)

    a, b = load_file(str(from_run)), load_file(str(from_object))
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    with safe_open(str(from_run), framework="pt") as f, safe_open(str(from_object), framework="pt") as g:
        meta_run, meta_object = dict(f.metadata()), g.metadata()
    run_config = yaml.safe_load(meta_run.pop("config"))
    assert {k: v for k, v in meta_object.items() if k != "config"} == meta_run
    # both name the heads the run's config left to the default
    named = {**cfg.policy_kwargs, "net_arch": [64, 64]}
    assert yaml.safe_load(meta_object["config"])["policy_kwargs"] == named == run_config["policy_kwargs"]


def test_a_model_object_with_nan_weights_is_refused_as_a_run_is(tmp_path):
    model = PlasticPPO("MlpPlasticPolicy", gym.make(BANDIT[0], **BANDIT[1]), n_steps=8, batch_size=8,
                       policy_kwargs=dict(hidden_size=8))
    name, weight = next((n, p) for n, p in model.policy.named_parameters() if p.dim() == 2)
    with torch.no_grad():
        weight[0, 0] = float("nan")

    with pytest.raises(UserError, match=f"{name}.*NaN/inf.*retrain"):
        export_safetensors(model, tmp_path / "model.safetensors")
    assert not (tmp_path / "model.safetensors").exists()


def test_exporting_a_model_object_needs_the_output_file():
    model = PlasticA2C("MlpPlasticPolicy", gym.make(BANDIT[0], **BANDIT[1]), policy_kwargs=dict(hidden_size=8))
    with pytest.raises(UserError, match="needs the output file"):
        export_safetensors(model)


def test_policy_kwargs_holding_code_are_refused_naming_the_key(tmp_path):
    model = PlasticPPO("MlpPlasticPolicy", gym.make(BANDIT[0], **BANDIT[1]), n_steps=8, batch_size=8,
                       policy_kwargs=dict(hidden_size=8, activation_fn=nn.Softsign))
    with pytest.raises(UserError, match=r"policy_kwargs\.activation_fn.*Softsign.*plain values"):
        export_safetensors(model, tmp_path / "model.safetensors")


def test_a_model_whose_env_has_no_id_needs_the_env_id(tmp_path):
    env = gym.make(BANDIT[0], **BANDIT[1]).unwrapped
    env.spec = None
    model = PlasticPPO("MlpPlasticPolicy", env, n_steps=8, batch_size=8, policy_kwargs=dict(hidden_size=8))

    with pytest.raises(UserError, match="env_id="):
        export_safetensors(model, tmp_path / "model.safetensors")
    path = export_safetensors(model, tmp_path / "model.safetensors", env_id=BANDIT[0])
    assert type(load_exported_model(path)) is PlasticPPO


def test_the_onnx_graph_of_a_model_object_records_its_config(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = PlasticPPO("MlpPlasticPolicy", gym.make(BANDIT[0], **BANDIT[1]), n_steps=8, batch_size=8, seed=0,
                       policy_kwargs=dict(hidden_size=8))
    path = export_onnx(model, tmp_path / "policy.onnx")

    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert yaml.safe_load(meta["config"])["env"] == BANDIT[0]


@pytest.mark.parametrize("trained", [PlasticSAC, PlasticTD3], indirect=True, ids=lambda cls: cls.__name__)
def test_the_onnx_export_of_an_off_policy_model_says_what_it_takes(trained, tmp_path):
    pytest.importorskip("onnx")
    with pytest.raises(UserError, match="PlasticPPO, PlasticA2C"):
        export_onnx(trained, tmp_path / "policy.onnx")
    assert not (tmp_path / "policy.onnx").exists()


@pytest.mark.parametrize("heads", [[], [16, 8]], ids=["linear", "mlp"])
def test_an_export_that_names_no_heads_loads_with_the_heads_its_weights_have(tmp_path, heads):
    """Files written while the plastic policy's default heads were linear name no ``net_arch``: the loader
    reads the heads off the tensors, not today's default, and the model acts as the exported one."""
    (env_id, env_kwargs), kwargs = ALGORITHMS[PlasticPPO]
    model = PlasticPPO("MlpPlasticPolicy", gym.make(env_id, **env_kwargs), seed=0,
                       policy_kwargs=dict(hidden_size=8, net_arch=heads), **kwargs)
    path = export_safetensors(model, tmp_path / "model.safetensors")
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
    config = yaml.safe_load(metadata["config"])
    assert config["policy_kwargs"].pop("net_arch") == heads
    metadata["config"] = yaml.safe_dump(config)
    old = tmp_path / "written-before.safetensors"
    from safetensors.torch import save_file

    save_file(load_file(str(path)), str(old), metadata=metadata)
    loaded = load_exported_model(old)
    assert loaded.policy.net_arch == heads
    np.testing.assert_array_equal(_actions(loaded, env_id, env_kwargs), _actions(model, env_id, env_kwargs))
