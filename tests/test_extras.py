"""The optional extras: what the base install leaves out, and the error that names the extra when a feature
needs a package that is missing. Each missing package is simulated in a fresh interpreter in which the
module is blocked (``sys.modules[name] = None`` before anything imports it), as a base install lacks it."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from neuromod_rl.extras import EXTRA_OF, MissingExtraError, require

ROOT = Path(__file__).resolve().parents[1]
#: the cases where Ray is there and something else is missing (a base install, `make test-min`, has no Ray)
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")


def _run_without(blocked: list[str], code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter in which the packages ``blocked`` cannot be imported."""
    prelude = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in blocked)
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=ROOT / "tests", capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def _cli_without(blocked: list[str], *args: str) -> subprocess.CompletedProcess:
    return _run_without(blocked, f"from neuromod_rl.cli import main\nsys.exit(main({list(args)!r}))")


def _requirements() -> dict[str | None, list[str]]:
    """The installed distribution's requirements by extra (``None``: the base install) -> project names."""
    out: dict[str | None, list[str]] = {}
    for req in importlib.metadata.requires("neuromod-rl") or []:
        spec, _, marker = req.partition(";")
        extra = re.search(r'extra == "([^"]+)"', marker)
        out.setdefault(extra[1] if extra else None, []).append(re.split(r"[\[<>=!~ ]", spec.strip())[0].lower())
    return out


def test_base_install_leaves_ray_evotorch_optuna_and_triton_to_extras():
    reqs = _requirements()
    assert not {"ray", "evotorch", "optuna", "triton"} & set(reqs[None])
    assert {"wandb", "matplotlib", "gymnasium", "stable-baselines3", "sb3-contrib"} <= set(reqs[None])
    assert {"ray", "evotorch"} <= set(reqs["es"])
    assert {"ray", "optuna"} <= set(reqs["sweep"])
    assert set(EXTRA_OF.values()) <= set(reqs), "an extra named in an error message that pyproject lacks"


def test_dev_extra_installs_every_other_extra():
    dev = next(r for r in importlib.metadata.requires("neuromod-rl") if r.startswith("neuromod-rl[")
               and 'extra == "dev"' in r)  # fmt: skip
    named = set(dev.partition("[")[2].partition("]")[0].split(","))
    assert named == set(_requirements()) - {None, "dev"}


def test_require_names_the_extra_and_its_install_line():
    with pytest.raises(MissingExtraError, match=re.escape("pip install 'neuromod-rl[es]'")) as info:
        require("es", "ESTrainer", ("a_package_that_is_not_installed",))
    assert isinstance(info.value, ImportError) and info.value.name == "a_package_that_is_not_installed"
    require("es", "ESTrainer", ("json", "importlib.util"), load=True)  # present: nothing happens


@pytest.mark.parametrize("blocked", ["ray", "evotorch"])
def test_estrainer_without_its_packages_names_the_es_extra(blocked):
    proc = _run_without([blocked], (
        "from neuromod_rl.agents import ESTrainer\n"
        "try:\n"
        "    ESTrainer('MlpPlasticPolicy', 'neuromod_rl/TwoArmedBanditDependent-v0', num_actors=0)\n"
        "except ImportError as err:\n"
        "    print(type(err).__name__, err)\n"
    ))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # a base install lacks both: the message names the first of them it finds missing
    missing = [m for m in ("evotorch", "ray") if m == blocked or importlib.util.find_spec(m) is None]
    assert proc.stdout.startswith(f"MissingExtraError ESTrainer needs the package '{missing[0]}'")
    assert "pip install 'neuromod-rl[es]'" in proc.stdout


@pytest.mark.skipif(importlib.util.find_spec("evotorch") is None, reason="training needs the es extra")
def test_a_saved_es_model_predicts_without_the_es_extra_but_resuming_its_search_needs_it(tmp_path):
    from neuromod_rl.agents import ESTrainer

    ESTrainer("MlpPlasticPolicy", "neuromod_rl/TwoArmedBanditDependent-v0", popsize=4, episodes_per_member=1,
              num_actors=0, seed=0, policy_kwargs={"hidden_size": 4}).learn(1, generations=1).save(tmp_path / "es")
    proc = _run_without(["ray", "evotorch"], (
        "import gymnasium as gym\n"
        "from neuromod_rl.agents import ESTrainer\n"
        f"model = ESTrainer.load({str(tmp_path / 'es')!r})\n"
        "obs, _ = gym.make('neuromod_rl/TwoArmedBanditDependent-v0').reset(seed=0)\n"
        "model.predict(obs[None], episode_start=[True])\n"
        "try:\n"
        "    model.restore_search()\n"
        "except ImportError as err:\n"
        "    print(type(err).__name__, err)\n"
    ))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("MissingExtraError resuming an ESTrainer needs the package 'evotorch'")


def test_train_on_an_es_config_without_ray_exits_2_and_leaves_no_run(tmp_path):
    proc = _cli_without(["ray"], "train", "es_delayed_cue", "--runs-dir", str(tmp_path / "runs"), "--no-progress")
    assert proc.returncode == 2, proc.stderr
    assert "neuromod-rl train: error:" in proc.stderr and "pip install 'neuromod-rl[es]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any((tmp_path / "runs").glob("*/*")), "a failed start leaves no run directory behind"


def test_sweep_without_ray_exits_2_naming_the_sweep_extra(tiny_config, tmp_path):
    proc = _cli_without(["ray"], "sweep", str(tiny_config), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'neuromod-rl[sweep]'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


@needs_ray
def test_sweep_with_ray_but_not_ray_tune_dependencies_names_the_sweep_extra(tiny_config, tmp_path):
    """A base Ray without ``ray[tune]``: Ray is there, but ``ray.tune`` refuses to import."""
    proc = _cli_without(["pyarrow"], "sweep", str(tiny_config), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 2, proc.stderr
    assert "'ray.tune', which is installed but does not import" in proc.stderr
    assert "pip install 'neuromod-rl[sweep]'" in proc.stderr and "Traceback" not in proc.stderr


@needs_ray
def test_sweep_with_a_search_space_without_optuna_names_the_sweep_extra(tiny_config, tmp_path):
    space = ROOT / "configs" / "search" / "ppo_learning_rate.yaml"
    proc = _cli_without(["optuna"], "sweep", str(tiny_config), "--search", str(space), "--runs-dir",
                        str(tmp_path / "runs"))  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "'optuna'" in proc.stderr and "pip install 'neuromod-rl[sweep]'" in proc.stderr


def test_triton_backend_without_triton_names_the_gpu_extra():
    proc = _run_without(["triton"], (
        "import torch\n"
        "from neuromod_rl.plasticity import PlasticRNNCell, available_backends, scan\n"
        "assert 'triton' not in available_backends()\n"
        "try:\n"
        "    scan(PlasticRNNCell(3, 4, rule='neuromod'), torch.zeros(2, 1, 3), backend='triton')\n"
        "except ImportError as err:\n"
        "    print(type(err).__name__, err)\n"
    ))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("MissingExtraError scan(backend='triton') needs the package 'triton'")
    assert "pip install 'neuromod-rl[gpu]'" in proc.stdout and "unknown backend" not in proc.stdout


def test_the_package_and_its_command_work_without_any_extra():
    proc = _cli_without(["ray", "evotorch", "optuna", "triton", "onnx", "sklearn"], "envs")
    assert proc.returncode == 0, proc.stderr
    assert "neuromod_rl/DelayedCue-v0" in proc.stdout
