"""The built wheel holds every module of the three source folders under ``neuromod_rl`` (``agents/`` and
``envs/`` as ``neuromod_rl.agents`` and ``neuromod_rl.envs``), the C kernel sources and the embedded
config, and nothing at the top level but ``neuromod_rl``. Built offline from a copy of the sources."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"neuromod_rl": "neuromod_rl", "agents": "neuromod_rl/agents", "envs": "neuromod_rl/envs"}


def _expected() -> set[str]:
    files = set()
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".c", ".h", ".yaml") and "__pycache__" not in path.parts:
                files.add(f"{package}/{path.relative_to(ROOT / folder).as_posix()}")
    return files


def test_wheel_contains_every_module_and_the_kernel_sources(tmp_path):
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
    with zipfile.ZipFile(wheel) as zf:
        names = {n for n in zf.namelist() if ".dist-info/" not in n}
    expected = _expected()
    assert {"neuromod_rl/plasticity/fused/kernel/forward.c", "neuromod_rl/plasticity/fused/kernel/fused_kernel.h",
            "neuromod_rl/experiment/default.yaml", "neuromod_rl/agents/policies.py",
            "neuromod_rl/envs/base.py"} <= expected
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel (add the package to [tool.setuptools] packages): {missing}"
    assert {n.split("/")[0] for n in names} == {"neuromod_rl"}  # no top-level agents/, envs/ or tests/
