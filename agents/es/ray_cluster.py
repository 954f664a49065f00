"""Start or join the Ray cluster that evaluates ES populations and runs sweeps.

``address=None``: a local Ray instance with this machine's CPUs (started once per process).
``address="auto"``: the cluster a ``ray start`` on this machine belongs to; ``"HOST:PORT"``: the
cluster whose head node listens there (``ray start --head --port=PORT``). An already initialised
Ray (a notebook, a test, a Ray Tune trial) is used as it is.
"""

from __future__ import annotations

import logging
import os
import socket


def quiet_evotorch() -> None:
    """evotorch logs every problem it builds at INFO level, in the driver and in each actor; keep
    its warnings only (set before Ray starts, so the local workers inherit it)."""
    os.environ.setdefault("EVOTORCH_VERBOSE_LEVEL", "0")
    logging.getLogger("evotorch").setLevel(logging.WARNING)


def check_address(address: str | None) -> str | None:
    """``None``, ``"auto"`` or ``"HOST:PORT"``; anything else is a ``ValueError`` saying what is expected."""
    if address is None or address == "auto":
        return address
    host, sep, port = str(address).rpartition(":")
    if not (sep and host and port.isdigit()):
        raise ValueError(
            f"ray_address={address!r} is not valid; use 'auto' (the cluster of this machine's `ray start`), "
            "'HOST:PORT' (e.g. '10.0.0.5:6379', the head's `ray start --head --port=6379`), or leave it unset "
            "for a local Ray with this machine's CPUs"
        )
    return address


def connect(address: str | None = None) -> None:
    """Initialise Ray (see the module docstring); a clear ``ConnectionError`` if the cluster is unreachable."""
    quiet_evotorch()
    import ray  # heavy optional dependency: only when a cluster is joined

    if ray.is_initialized():
        return
    address = check_address(address)
    if address is None:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
        return
    try:
        if address != "auto":  # Ray itself retries an unanswered address for minutes
            host, _, port = address.rpartition(":")
            socket.create_connection((host, int(port)), timeout=10).close()
        ray.init(address=address, logging_level=logging.WARNING)
    except (OSError, RuntimeError) as err:  # ConnectionError is an OSError
        raise ConnectionError(
            f"cannot join the Ray cluster at ray_address={address!r} ({err}). Start it first (`ray start --head "
            "--port=6379` on the head node, `ray start --address=HEAD:6379` on the others), or leave ray_address "
            "unset to use a local Ray on this machine"
        ) from None


def cluster_cpus() -> int:
    """CPUs of the connected Ray cluster (at least 1)."""
    import ray  # heavy optional dependency: only when a cluster is used

    return max(1, int(ray.cluster_resources().get("CPU", 1)))
