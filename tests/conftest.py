"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import only_run, write_config

from neuromod_rl.cli import main


@pytest.fixture(scope="session")
def ray_session():
    """One real local Ray cluster (2 CPUs) for every test that needs Ray: starting Ray and its
    workers takes seconds, so the tests share it. Started only when a test asks for it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from neuromod_rl.agents.es.ray_cluster import quiet_evotorch

    quiet_evotorch()
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Never reach the network, whatever the caller's environment says."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    return write_config(tmp_path / "tiny.yaml")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """One finished tiny run (module scope: trained once per test module)."""
    root = tmp_path_factory.mktemp("runs")
    cfg = write_config(root.parent / f"{root.name}-tiny.yaml")
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    try:
        assert main(["train", str(cfg), "--runs-dir", str(root), "--no-progress"]) == 0
    finally:
        mp.undo()
    return only_run(root)
