"""Fixtures shared by every test folder."""

from __future__ import annotations

import os

import pytest


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
