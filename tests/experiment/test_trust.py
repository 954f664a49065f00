"""Nothing named in a data file runs: configs import only the project's wrappers unless they opt in
(``trusted_modules``), and loading an exported file imports and calls nothing it names. A module on
the path that records its own import is the witness: it must never be imported without the opt-in."""

from __future__ import annotations

import contextlib
import io
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.torch import save_file
from support import TINY

from neuromod_rl.cli import main
from neuromod_rl.experiment.config import validate
from neuromod_rl.experiment.environment import build_vec_env
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.export import FORMAT, load_exported_model, space_metadata
from neuromod_rl.experiment.train import build_model

_names = itertools.count()


@pytest.fixture
def witness(tmp_path, monkeypatch):
    """A fresh module ``witness_<k>`` on ``sys.path``; importing it creates ``tmp_path/IMPORTED``. It holds
    a real wrapper class ``Wrap`` and a plain function ``shell`` (what a hostile file would name)."""
    name = f"witness_{next(_names)}"
    marker = tmp_path / "IMPORTED"
    (tmp_path / f"{name}.py").write_text(
        "import pathlib, gymnasium\n"
        f"pathlib.Path({str(marker)!r}).touch()\n"
        "class Wrap(gymnasium.Wrapper):\n    pass\n"
        "def shell(env, **kwargs):\n    raise SystemExit('a function named in a config was called')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, marker
    sys.modules.pop(name, None)


def _check(tmp_path, **changes) -> tuple[int, str]:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["check", str(path)])
    return code, err.getvalue()


def test_config_wrapper_from_an_untrusted_module_is_refused_unimported(tmp_path, witness):
    module, marker = witness
    code, err = _check(tmp_path, wrappers=[f"{module}.Wrap"])
    assert code == 2 and "Traceback" not in err
    assert f"trusted_modules: [{module}]" in err  # the message says how to opt in
    assert not marker.exists() and module not in sys.modules


def test_config_env_in_module_form_is_refused_unimported(tmp_path, witness):
    module, marker = witness
    code, err = _check(tmp_path, env=f"{module}:Anything-v0")
    assert code == 2 and f"imports module {module!r}" in err
    assert not marker.exists()


def test_trusted_modules_is_the_opt_in_and_only_wrapper_classes_are_called(tmp_path, witness):
    module, marker = witness
    code, err = _check(tmp_path, wrappers=[f"{module}.Wrap"], trusted_modules=[module])
    assert code == 0, err
    assert marker.exists()  # imported: the config said so
    code, err = _check(tmp_path, wrappers=[f"{module}.shell"], trusted_modules=[module])
    assert code == 2 and "is not a gymnasium.Wrapper class" in err


def test_project_wrappers_need_no_opt_in(tmp_path):
    code, err = _check(tmp_path, wrappers=["PrevActionReward", {"Trial": {"episodes": 2}},
                                           "neuromod_rl.envs.wrappers.PrevActionReward"])
    assert code == 0, err
    code, err = _check(tmp_path, wrappers=["gymnasium.wrappers.TimeLimit"])  # a library, but still an opt-in
    assert code == 2 and "trusted_modules: [gymnasium.wrappers]" in err


def _crafted_export(path: Path, **config_changes) -> Path:
    """A well-formed export of a freshly built tiny policy whose embedded config says ``config_changes``."""
    cfg = validate(TINY)
    model = build_model(cfg, build_vec_env(cfg))
    tensors = {k: v.detach().contiguous().clone() for k, v in model.policy.state_dict().items()}
    config = yaml.safe_dump({**TINY, **config_changes})
    save_file(tensors, str(path), metadata={"format": FORMAT, "config": config, "algo": "plastic_ppo",
                                            "policy": "MlpPlasticPolicy", "num_timesteps": "0",
                                            **space_metadata(model.observation_space, model.action_space)})
    return path


@pytest.mark.parametrize(
    "changes",
    [
        lambda m: {"wrappers": [f"{m}.Wrap"], "trusted_modules": [m]},  # the file opts itself in
        lambda m: {"wrappers": [f"{m}.Wrap"]},
        lambda m: {"wrappers": [{f"{m}.shell": {"cmd": "touch /tmp/pwned"}}]},
        lambda m: {"env": f"{m}:Anything-v0"},
    ],
    ids=["self-trusted wrapper", "wrapper", "function", "env module"],
)
def test_loading_an_export_never_imports_what_the_file_names(tmp_path, witness, changes):
    module, marker = witness
    path = _crafted_export(tmp_path / "evil.safetensors", **changes(module))
    with pytest.raises(UserError, match=module):
        load_exported_model(path)
    assert not marker.exists() and module not in sys.modules


def test_an_honest_export_loads_and_the_caller_may_supply_the_env(tmp_path):
    import gymnasium as gym

    path = _crafted_export(tmp_path / "ok.safetensors")
    model = load_exported_model(path)
    obs = np.zeros((1, 4), dtype=np.float32)
    actions, state = model.predict(obs, state=None, episode_start=np.array([True]), deterministic=True)
    assert actions.shape == (1,) and state.shape[0] == 1
    mine = load_exported_model(path, env=gym.make("neuromod_rl/TwoArmedBanditDependent-v0", n_pulls=10))
    actions2, _ = mine.predict(obs, state=None, episode_start=np.array([True]), deterministic=True)
    assert np.array_equal(actions, actions2)


@pytest.mark.parametrize("command", [["eval", "--help"], ["report", "--help"], ["export", "--help"], ["--help"]])
def test_help_warns_that_zip_checkpoints_are_pickles(command, capsys):
    assert main(command) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "pickles: loading one runs code stored in it" in text
    assert "trusted sources" in text and "neuromod-rl export" in text
