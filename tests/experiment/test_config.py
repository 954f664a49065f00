"""Configs: every shipped YAML is valid and buildable; malformed ones (hypothesis-generated) exit with
code 2 and a message naming the key, never a traceback; --set and lin_ schedules."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import TINY

from neuromod_rl.cli import main
from neuromod_rl.experiment.config import (
    CONFIG_DIR,
    DEFAULT_CONFIG,
    ExperimentConfig,
    apply_overrides,
    load_config,
    parse_schedule,
    resolve_config,
)
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.train import check_buildable

CONFIGS = sorted(Path(__file__).resolve().parents[2].joinpath("configs").glob("*.yaml"))


def test_shipped_configs_are_found_by_path_or_by_name_from_any_folder(tmp_path, monkeypatch):
    names = {p.name for p in CONFIGS}
    assert {"default.yaml", "bandit_neuromod.yaml", "bandit_lstm.yaml", "cue_reward_neuromod.yaml"} <= names
    assert DEFAULT_CONFIG.parent == CONFIG_DIR and {p.name for p in CONFIG_DIR.glob("*.yaml")} == names
    default = load_config(None)
    assert default.algo == "plastic_ppo" and default.policy == "MlpPlasticPolicy"
    monkeypatch.chdir(tmp_path)  # no configs/ here: the shipped ones answer to their names
    for name in ("bandit_neuromod", "bandit_neuromod.yaml", "configs/bandit_neuromod.yaml"):
        assert resolve_config(name) == CONFIG_DIR / "bandit_neuromod.yaml"
    (tmp_path / "bandit_neuromod.yaml").write_text("name: mine\n")  # a file of the user's wins over the name
    assert resolve_config("bandit_neuromod.yaml") == Path("bandit_neuromod.yaml")
    with pytest.raises(UserError, match="does not exist.*bandit_lstm"):
        resolve_config("nosuch")
    with pytest.raises(UserError, match="does not exist"):
        resolve_config("elsewhere/bandit_neuromod.yaml")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_validates_and_builds(path):
    cfg = load_config(path)
    check_buildable(cfg)


def _run_train(data) -> tuple[int, str]:
    """``neuromod-rl train FILE`` on ``data`` dumped as YAML; returns (exit code, stderr)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["train", str(path), "--runs-dir", str(Path(d) / "runs"), "--no-progress"])
        return code, err.getvalue()


_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
_fractional = st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f))
_not_int = st.one_of(st.text(max_size=5), _fractional, st.lists(st.integers(), max_size=2))

# (key path, a value that is wrong for it) -- each by construction invalid
_BAD = st.one_of(
    st.tuples(st.just("n_envs"), st.one_of(_not_int, st.integers(max_value=0))),
    st.tuples(st.just("n_timesteps"), st.one_of(_not_int, st.integers(max_value=0))),
    st.tuples(st.just("seed"), st.integers(max_value=-1)),
    st.tuples(st.just("algo"), _text.filter(lambda s: s not in {"ppo", "a2c", "plastic_ppo", "plastic_a2c",
                                                                 "recurrent_ppo"})),
    st.tuples(st.just("env"), _text.map(lambda s: f"NoSuch{s}-v0")),
    st.tuples(st.just("policy"), _text.map(lambda s: f"No{s}Policy")),
    st.tuples(st.just("name"), st.sampled_from(["a b", "x/y", "", "é"])),
    st.tuples(st.just("eval.episodes"), st.integers(max_value=0)),
    st.tuples(st.just("env_kwargs.n_pulls"), st.integers(max_value=0)),
    st.tuples(st.just("policy_kwargs.hidden_size"), st.integers(max_value=0)),
    st.tuples(st.just("hyperparameters.learning_rate"), _text.map(lambda s: f"lin_{s}")),
    st.tuples(_text.map(lambda s: f"hyperparameters.zz_{s}"), st.integers()),
    st.tuples(_text.map(lambda s: f"unknown_{s}"), st.integers()),
    st.tuples(st.just("wrappers"), st.lists(_text.map(lambda s: f"Nope{s}"), min_size=1, max_size=2)),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_BAD)
def test_malformed_configs_exit_2_naming_the_key(bad):
    key, value = bad
    data = yaml.safe_load(yaml.safe_dump(TINY))
    node = data
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    code, err = _run_train(data)
    assert code == 2, err
    assert "Traceback" not in err
    assert leaf in err or key in err or repr(value) in err, err


@settings(max_examples=15, deadline=None)
@given(st.one_of(st.sampled_from(["[1, 2", "a: b: c", "- x\n- y", "42", "{env: }", "\t:"]), st.binary(max_size=40)))
def test_garbage_files_exit_2(content):
    text = content.decode("latin-1") if isinstance(content, bytes) else content
    code, err = _run_train(text)
    assert code == 2 and "Traceback" not in err and err.strip()


def test_missing_key_and_unknown_key_messages(tmp_path):
    data = dict(TINY)
    del data["env"]
    code, err = _run_train(data)
    assert code == 2 and "missing required key `env`" in err
    code, err = _run_train({**TINY, "n_env": 3})
    assert code == 2 and "unknown key `n_env`" in err and "n_envs" in err  # lists the allowed keys
    code, err = _run_train({**TINY, "algo": "dqn"})
    assert code == 2 and "plastic_ppo" in err  # lists the allowed algorithms
    code, err = _run_train({**TINY, "policy_kwargs": {"rule": "nosuchrule"}})
    assert code == 2 and "nosuchrule" in err


def test_set_overrides_and_their_errors(tmp_path):
    data = apply_overrides(TINY, ["n_envs=4", "hyperparameters.learning_rate=lin_1e-2", "policy_kwargs.hidden_size=16",
                                  "eval.episodes=7"])
    cfg = ExperimentConfig.model_validate(data)
    assert (cfg.n_envs, cfg.policy_kwargs["hidden_size"], cfg.eval.episodes) == (4, 16, 7)
    assert TINY["n_envs"] == 2  # the original mapping is not modified
    with pytest.raises(UserError, match="key=value"):
        apply_overrides(TINY, ["n_envs"])
    with pytest.raises(UserError, match="not a mapping"):
        apply_overrides(TINY, ["n_envs.x=1"])
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(TINY))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["train", str(cfg_path), "--set", "n_envs=abc"]) == 2
    assert "n_envs" in err.getvalue()


def test_lin_schedule_is_linear_to_zero_and_rejects_garbage():
    sched = parse_schedule("lin_1e-3")
    assert sched(1.0) == pytest.approx(1e-3) and sched(0.5) == pytest.approx(5e-4) and sched(0.0) == 0.0
    assert parse_schedule(0.1) == 0.1
    with pytest.raises(ValueError, match="lin_<number>"):
        parse_schedule("lin_fast", "learning_rate")
