"""The plastic algorithms show SB3's constructor arguments explicitly (help(), IDEs), document every one,
and name their TensorBoard runs after themselves."""

from __future__ import annotations

import inspect
import re

import pytest
from plastic_test_envs import CueRecall, cue_env
from stable_baselines3 import A2C, PPO, SAC, TD3
from stable_baselines3.common.env_util import make_vec_env

from neuromod_rl.agents import PlasticA2C, PlasticPPO, PlasticSAC, PlasticTD3

PAIRS = [(PlasticPPO, PPO), (PlasticA2C, A2C), (PlasticSAC, SAC), (PlasticTD3, TD3)]
OWN = {PlasticPPO: ["bptt_length"], PlasticA2C: ["bptt_length"],
       PlasticSAC: ["sequence_length", "burn_in", "start_state"],
       PlasticTD3: ["sequence_length", "burn_in", "start_state"]}  # fmt: skip
IDS = [cls.__name__ for cls, _ in PAIRS]


def parameters(function) -> dict[str, inspect.Parameter]:
    return {n: p for n, p in inspect.signature(function).parameters.items() if n != "self"}


def documented_arguments(cls: type) -> list[str]:
    """The names of the ``Args:`` section of ``cls``'s docstring (Google style)."""
    doc = inspect.getdoc(cls) or ""
    section = doc.partition("\nArgs:\n")[2]
    assert section, f"{cls.__name__} has no Args: section"
    names = []
    for line in section.splitlines():
        if line and not line.startswith(" "):
            break  # the next section (Example:)
        match = re.match(r"^    (\w+): ", line)
        if match:
            names.append(match.group(1))
    return names


@pytest.mark.parametrize(("cls", "base"), PAIRS, ids=IDS)
def test_constructor_lists_every_sb3_argument_with_its_default_in_sb3_order(cls, base):
    ours, theirs = parameters(cls.__init__), parameters(base.__init__)
    assert not [p for p in ours.values() if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    missing = sorted(set(theirs) - set(ours))
    assert not missing, f"{cls.__name__} lacks {base.__name__}'s {missing}: add them (a new SB3 release?)"
    for name, param in theirs.items():
        assert ours[name].default == param.default, (name, ours[name].default, param.default)
    # SB3's positional arguments keep their positions, so positional calls mean what they mean for SB3
    positional = [n for n, p in theirs.items() if p.kind is p.POSITIONAL_OR_KEYWORD and n != "_init_setup_model"]
    assert list(ours)[: len(positional)] == positional
    # our own arguments are keyword-only, after SB3's
    assert [n for n in ours if n not in theirs] == OWN[cls]
    assert all(ours[n].kind is inspect.Parameter.KEYWORD_ONLY for n in OWN[cls])


@pytest.mark.parametrize(("cls", "base"), PAIRS, ids=IDS)
def test_every_constructor_argument_is_documented_in_the_class_docstring(cls, base):
    documented = documented_arguments(cls)
    assert documented == list(parameters(cls.__init__)), "Args: must list every argument, in signature order"
    assert all(param.annotation is not inspect.Parameter.empty for param in parameters(cls.__init__).values())


@pytest.mark.parametrize(("cls", "base"), PAIRS, ids=IDS)
def test_learn_keeps_sb3_signature_and_names_runs_after_the_class(cls, base):
    ours, theirs = parameters(cls.learn), parameters(base.learn)
    assert list(ours) == list(theirs)
    for name, param in theirs.items():
        expected = cls.__name__ if name == "tb_log_name" else param.default
        assert ours[name].default == expected, name


def test_tensorboard_runs_are_named_after_the_plastic_algorithm(tmp_path):
    tb = tmp_path / "tb"
    model = PlasticPPO("MlpPlasticPolicy", make_vec_env(cue_env, 1, seed=0), n_steps=8, batch_size=8, n_epochs=1,
                       tensorboard_log=str(tb), policy_kwargs=dict(hidden_size=4), seed=0)
    model.learn(8)
    model.learn(8)
    model.learn(8, tb_log_name="mine")  # an explicit name still wins
    assert sorted(p.name for p in tb.iterdir()) == ["PlasticPPO_1", "PlasticPPO_2", "mine_1"]
    assert list((tb / "PlasticPPO_1").glob("events.out.tfevents.*"))


def test_off_policy_tensorboard_run_is_named_after_the_plastic_algorithm(tmp_path):
    tb = tmp_path / "tb"
    model = PlasticTD3("MlpPlasticPolicy", make_vec_env(CueRecall, 1, seed=0), sequence_length=4,
                       learning_starts=4, batch_size=8, buffer_size=64, tensorboard_log=str(tb),
                       policy_kwargs=dict(hidden_size=4, net_arch=[8]), seed=0)
    model.learn(8)
    assert [p.name for p in tb.iterdir()] == ["PlasticTD3_1"]
