"""Hostile YAML: alias bombs, deep nesting, huge documents and values, duplicate keys, and values that
pass the schema but break training are refused (exit code 2, a short message naming the problem and the
limit), in configs, ``--set`` values, exported files and sweep search spaces; good YAML reads as before."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file
from support import TINY

from neuromod_rl.cli import main
from neuromod_rl.experiment.config import CONFIG_DIR, apply_overrides, load_yaml
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.export import FORMAT, load_exported_model
from neuromod_rl.experiment.sweep import load_space

# a bomb that hangs the old code for minutes must fail here, not hang: `thread` ends the run even in C code
pytestmark = pytest.mark.timeout(60, method="thread")


def _bomb(levels: int = 9, fan: int = 10) -> str:
    """A flow mapping of ~1 kB whose aliases expand to ``fan ** levels`` values."""
    items = [f"a0: &a0 [{', '.join(['lol'] * fan)}]"]
    items += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fan)}]" for i in range(1, levels)]
    return "{" + ", ".join(items) + "}"


def _flow(value: object) -> str:
    """``value`` as one line of YAML."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _config_text(**values: str) -> str:
    """TINY as YAML with each ``key=value`` line replaced (or added) by raw YAML text."""
    lines = [f"{key}: {_flow(value)}" for key, value in TINY.items() if key not in values]
    return "\n".join(lines + [f"{key}: {text}" for key, text in values.items()]) + "\n"


def _cli(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    return code, err.getvalue()


def _check(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return _cli(["check", str(path)])


@pytest.mark.parametrize(
    "place",
    [
        {"env_kwargs": _bomb()},
        {"policy_kwargs": "{rule: neuromod, hidden_size: 8, rule_kwargs: " + _bomb() + "}"},
        {"lol": _bomb()},
    ],
    ids=["env_kwargs", "rule_kwargs", "unknown key"],
)
def test_an_alias_bomb_in_a_config_is_refused_at_once_naming_the_limit(tmp_path, place):
    code, err = _check(tmp_path, _config_text(**place))
    assert code == 2 and "Traceback" not in err
    assert "100,000 values once its aliases are expanded" in err and "c.yaml" in err
    assert len(err) < 2000


def test_an_alias_bomb_in_a_set_value_is_refused():
    with pytest.raises(UserError, match="aliases are expanded"):
        apply_overrides(TINY, ["env_kwargs.x=" + _bomb()])


def test_an_alias_bomb_in_an_exported_file_is_refused(tmp_path):
    path = tmp_path / "bomb.safetensors"
    save_file({"w": torch.zeros(1)}, str(path),
              metadata={"format": FORMAT, "config": _config_text(lol=_bomb()), "algo": "plastic_ppo",
                        "policy": "MlpPlasticPolicy", "num_timesteps": "0"})
    with pytest.raises(UserError, match="embedded config holds more than 100,000 values") as info:
        load_exported_model(path)
    assert len(str(info.value)) < 2000


def test_an_alias_bomb_in_a_search_space_is_refused(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("space: {lol: " + _bomb() + "}\n")
    with pytest.raises(UserError, match="search space .*aliases are expanded") as info:
        load_space(path)
    assert len(str(info.value)) < 2000


def test_a_recursive_alias_is_refused(tmp_path):
    code, err = _check(tmp_path, _config_text(env_kwargs="&a {x: [*a]}"))
    assert code == 2 and "recursive" in err and "*a" in err


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path):
    code, err = _check(tmp_path, _config_text(env_kwargs="{x: " + "[" * 5000 + "]" * 5000 + "}"))
    assert code == 2 and "Traceback" not in err and "RecursionError" not in err
    assert "more than 64 levels deep" in err


def test_a_huge_document_is_refused_naming_the_size_limit(tmp_path):
    code, err = _check(tmp_path, _config_text(env_kwargs="{x: " + "y" * 2_000_000 + "}"))
    assert code == 2 and "larger than 1,048,576 bytes" in err and len(err) < 2000


@pytest.mark.parametrize(
    "place",
    [{"lol": "[" + ", ".join(["1"] * 50_000) + "]"}, {"name": "x" * 300_000}, {"n_envs": "9" * 4000}],
    ids=["long list", "long string", "long integer"],
)
def test_error_messages_quote_large_values_briefly(tmp_path, place):
    code, err = _check(tmp_path, _config_text(**place))
    assert code == 2 and "Traceback" not in err
    assert len(err) < 2000, err[:3000]
    assert next(iter(place)) in err


def test_an_integer_too_long_for_python_is_refused(tmp_path):
    code, err = _check(tmp_path, _config_text(n_envs="9" * 5000))
    assert code == 2 and "Traceback" not in err and "integer of 5,000 digits" in err


@pytest.mark.parametrize(
    "text, key",
    [("n_envs: 2\nn_envs: 4\n", "n_envs"), ("hyperparameters: {n_steps: 10, batch_size: 20, n_steps: 5}\n", "n_steps")],
)
def test_duplicate_keys_are_refused_naming_the_key_and_lines(tmp_path, text, key):
    base = _config_text(n_envs="", hyperparameters="").replace("n_envs: \n", "").replace("hyperparameters: \n", "")
    full = base + text
    lines = [i + 1 for i, line in enumerate(full.splitlines()) for _ in range(line.count(f"{key}:"))]
    code, err = _check(tmp_path, full)
    assert code == 2 and f"repeats the key '{key}' (lines {lines[0]} and {lines[1]})" in err


def test_good_yaml_reads_as_before_anchors_and_merge_keys_included(tmp_path):
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        assert load_yaml(path) == yaml.safe_load(path.read_text()), path.name
    path = tmp_path / "merge.yaml"
    text = "base: &b {x: 1, y: 2}\nchild: &c {<<: *b, x: 3}\ngrand: {<<: *c, z: 4}\nlist: [*b, *b]\n"
    path.write_text(text)
    assert load_yaml(path) == yaml.safe_load(text)
    assert load_yaml(path)["child"] == {"x": 3, "y": 2}


@pytest.mark.parametrize(
    "key, value",
    [("n_epochs", -1), ("n_epochs", 0), ("n_steps", 0), ("batch_size", -8), ("n_epochs", 2.5), ("n_steps", True)],
)
def test_check_refuses_hyperparameters_that_must_be_positive_integers(tmp_path, key, value):
    hp = {**TINY["hyperparameters"], key: value}
    code, err = _check(tmp_path, _config_text(hyperparameters=_flow(hp)))
    assert code == 2 and "Traceback" not in err
    assert f"key `hyperparameters.{key}` has value {value!r}" in err and "positive integer" in err


@pytest.mark.parametrize(
    "policy_kwargs, blamed",
    [
        ("{rule: neuromod, hidden_size: 8, core: mlp, core_layers: 100000000}", "policy_kwargs.core_layers"),
        ("{rule: neuromod, hidden_size: 8, core: mlp, core_layers: " + "9" * 4000 + "}", "policy_kwargs.core_layers"),
        ("{rule: neuromod, hidden_size: " + "9" * 4000 + "}", "policy_kwargs.hidden_size"),
        ("{rule: neuromod, hidden_size: 2000000}", "policy_kwargs.hidden_size"),
    ],
    ids=["core_layers", "huge core_layers", "huge hidden_size", "hidden_size"],
)
def test_the_memory_refusal_names_the_key_that_is_too_large(tmp_path, policy_kwargs, blamed):
    code, err = _check(tmp_path, _config_text(policy_kwargs=policy_kwargs))
    assert code == 2 and "Traceback" not in err and len(err) < 2000
    assert f"key `{blamed}`" in err and "needs at least" in err
    other = {"policy_kwargs.core_layers": "hidden_size", "policy_kwargs.hidden_size": "core_layers"}[blamed]
    assert f"Lower {other}" not in err and f"Lower {blamed.rpartition('.')[2]}." in err
