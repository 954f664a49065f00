"""The built wheel holds every module of the source folders under ``neuromod_rl`` (``agents/``, ``envs/``
and ``configs/`` as ``neuromod_rl.agents``, ``neuromod_rl.envs`` and ``neuromod_rl.configs``), the C
kernel sources and every shipped config, and nothing at the top level but ``neuromod_rl``; installed
into a fresh environment it trains, checks and runs a study from an empty folder. Built offline from a
copy of the sources."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"neuromod_rl": "neuromod_rl", "agents": "neuromod_rl/agents", "envs": "neuromod_rl/envs",
           "configs": "neuromod_rl/configs"}


def _expected() -> set[str]:
    files = set()
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".c", ".h", ".yaml") and "__pycache__" not in path.parts:
                files.add(f"{package}/{path.relative_to(ROOT / folder).as_posix()}")
    return files


def build_wheel(tmp_path: Path) -> Path:
    """The wheel of a copy of the sources (no network: the build backend is the one installed)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("neuromod_rl-*.whl")
    return wheel


def test_wheel_contains_every_module_and_the_kernel_sources(tmp_path):
    with zipfile.ZipFile(build_wheel(tmp_path)) as zf:
        names = {n for n in zf.namelist() if ".dist-info/" not in n}
    expected = _expected()
    assert {"neuromod_rl/plasticity/fused/kernel/forward.c", "neuromod_rl/plasticity/fused/kernel/fused_kernel.h",
            "neuromod_rl/configs/default.yaml", "neuromod_rl/configs/search/ppo_learning_rate.yaml",
            "neuromod_rl/agents/on_policy/policies.py",
            "neuromod_rl/envs/base.py"} <= expected
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel (add the package to [tool.setuptools] packages): {missing}"
    assert {n.split("/")[0] for n in names} == {"neuromod_rl"}  # no top-level agents/, envs/ or tests/


def test_an_installed_wheel_trains_checks_and_runs_a_study_from_an_empty_folder(tmp_path):
    """``pip install`` of the wheel into a fresh venv: the shipped configs are found by name, and a study
    writes where ``--out`` says, never into the installed package. The venv borrows this environment's
    dependencies (a path entry, no network) but not its editable install of the checkout."""
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (Path(site) / "borrowed_dependencies.pth").write_text("\n".join(deps) + "\n")
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                           "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}", WANDB_MODE="offline", WANDB_SILENT="true",
               MPLBACKEND="Agg")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "neuromod-rl"), *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=600)

    where = subprocess.run([str(python), "-c", "import neuromod_rl; print(neuromod_rl.__file__)"], cwd=work,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(site), where  # the wheel's copy, not the checkout
    checked = cli("check", "default", "configs/bandit_neuromod.yaml")
    assert checked.returncode == 0, checked.stderr
    assert "# default: valid" in checked.stdout and "# configs/bandit_neuromod.yaml: valid" in checked.stdout
    trained = cli("train", "--set", "n_timesteps=64", "--set", "hyperparameters.n_steps=8",
                  "--set", "hyperparameters.batch_size=64", "--set", "n_envs=8", "--no-progress")
    assert trained.returncode == 0, trained.stderr
    assert len([p for p in (work / "runs").iterdir() if p.is_dir()]) == 1
    study = cli("reproduce", "l2l", "--scale", "smoke", "--out", "results")
    assert study.returncode == 0, study.stderr
    assert (work / "results" / "l2l.md").is_file() and (work / "results" / "l2l.smoke.runs.json").is_file()
    installed = Path(site) / "neuromod_rl"
    assert not list(installed.rglob("*.md")) and not list(installed.rglob("*.runs.json"))
