"""The backend registry of the sequence engine, and the ``reference`` backend (the specification).

A backend is a function ``(cell, x, state, episode_starts, modulation) -> ScanResult`` plus a
predicate telling which cells it runs. :func:`~neuromod_rl.plasticity.engine.scan` validates its
arguments once and hands them to one backend. Backends register themselves here, so the engine
imports them and none of them imports the engine (no import cycle).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from neuromod_rl.plasticity.cells import PlasticCell
from neuromod_rl.plasticity.state import PlasticState


class _ScanFields(NamedTuple):
    y: Tensor
    state: PlasticState
    modulation: Tensor | None


class ScanResult(_ScanFields):
    """What :func:`scan` returns: outputs ``y[T, B, N]``, the final state, and ``M(t)`` (``[T, B]``,
    ``[T, B, N]`` for fan-out, or ``None`` for an unmodulated cell). It unpacks as those three;
    ``result.backend`` names the backend that ran (``"reference"``, ``"fused"``, ``"triton"``)."""

    backend: str

    def __new__(cls, y: Tensor, state: PlasticState, modulation: Tensor | None, backend: str = ""):
        self = super().__new__(cls, y, state, modulation)
        self.backend = backend
        return self

    def __getnewargs__(self):
        return (*self, self.backend)


Backend = Callable[[PlasticCell, Tensor, PlasticState, Tensor | None, Tensor | None], ScanResult]
BACKENDS: dict[str, Backend] = {}
#: backend name -> predicate telling whether it supports a given cell
SUPPORTS: dict[str, Callable[[PlasticCell], bool]] = {}
#: backend name -> device types on which ``scan(backend=None)`` may pick it (in ``PREFERENCE`` order)
AUTO_DEVICES: dict[str, tuple[str, ...]] = {}
#: the order in which ``backend=None`` tries the backends (the first that supports the cell and device;
#: ``reference`` runs everything everywhere)
PREFERENCE = ("triton", "fused", "reference")


def register_backend(
    name: str, supports: Callable[[PlasticCell], bool], auto_devices: tuple[str, ...] = ("cpu", "cuda")
):
    """Decorator: make ``fn`` the backend ``name`` for the cells ``supports`` accepts; ``scan`` picks it
    by itself on ``auto_devices`` (it can be forced by name anywhere it runs)."""

    def deco(fn: Backend) -> Backend:
        BACKENDS[name] = fn
        SUPPORTS[name] = supports
        AUTO_DEVICES[name] = tuple(auto_devices)
        return fn

    return deco


@register_backend("reference", supports=lambda cell: True)
def reference_scan(
    cell: PlasticCell, x: Tensor, state: PlasticState, episode_starts: Tensor | None, modulation: Tensor | None
) -> ScanResult:
    """The specification: project inputs once, then one ``cell.step`` per time step under autograd."""
    xp = cell.project_input(x)
    initial = cell.initial_state(1, device=x.device, dtype=xp.dtype) if episode_starts is not None else None
    ys, ms = [], []
    for t in range(x.shape[0]):
        if episode_starts is not None and bool(episode_starts[t].any()):
            state = state.reset(episode_starts[t], initial)
        y, m, state = cell.step(xp[t], state, None if modulation is None else modulation[t])
        ys.append(y)
        ms.append(m)
    return ScanResult(torch.stack(ys), state, None if ms[0] is None else torch.stack(ms), "reference")
