"""The sequence engine: run a plastic cell over ``x[T, B, ...]`` with episode resets.

``scan`` is the training hot path. Backends:

* ``"reference"`` -- a per-step autograd loop over ``cell.step``; written for clarity, it *is* the
  specification every other backend is tested against;
* ``"fused"`` -- :mod:`neuromod_rl.plasticity.fused`: a hand-written forward and backward with
  in-place buffers and trace checkpoints (O(T·B·N) saved memory instead of O(T·B·N²)).

``backend=None`` picks ``"fused"`` when it supports the cell, else ``"reference"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from neuromod_rl.plasticity.cells import PlasticCell
from neuromod_rl.plasticity.state import PlasticState


class ScanResult(NamedTuple):
    """What :func:`scan` returns: outputs ``y[T, B, N]``, the final state, and ``M(t)`` (``[T, B]``,
    ``[T, B, N]`` for fan-out, or ``None`` for an unmodulated cell)."""

    y: Tensor
    state: PlasticState
    modulation: Tensor | None


Backend = Callable[[PlasticCell, Tensor, PlasticState, Tensor | None, Tensor | None], ScanResult]
BACKENDS: dict[str, Backend] = {}
#: backend name -> predicate telling whether it supports a given cell
SUPPORTS: dict[str, Callable[[PlasticCell], bool]] = {}


def register_backend(name: str, supports: Callable[[PlasticCell], bool]):
    def deco(fn: Backend) -> Backend:
        BACKENDS[name] = fn
        SUPPORTS[name] = supports
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
    return ScanResult(torch.stack(ys), state, None if ms[0] is None else torch.stack(ms))


def available_backends(cell: PlasticCell | None = None) -> list[str]:
    """Backend names (those supporting ``cell`` when given)."""
    _load_backends()
    return [name for name in BACKENDS if cell is None or SUPPORTS[name](cell)]


def default_backend(cell: PlasticCell) -> str:
    """``"fused"`` where it supports the cell, else ``"reference"``."""
    return "fused" if "fused" in available_backends(cell) else "reference"


def scan(
    cell: PlasticCell,
    x: Tensor,
    state: PlasticState | None = None,
    episode_starts: Tensor | None = None,
    modulation: Tensor | None = None,
    backend: str | None = None,
    check_finite: bool = True,
) -> ScanResult:
    """Run ``cell`` over a batch of sequences.

    Args:
        cell: a :class:`~neuromod_rl.plasticity.cells.PlasticCell`.
        x: inputs ``[T, B, input_size]`` (time first, like ``torch.nn.RNN``).
        state: the state before step 0 (default: ``cell.initial_state(B)``).
        episode_starts: bool ``[T, B]``; where True the state is reset to the initial state *before*
            that step (as SB3's ``episode_start``). ``None``: no resets.
        modulation: ``[T, B]`` external neuromodulation, required when the cell has
            ``modulation_source="external"`` (e.g. the previous reward or TD error).
        backend: ``"reference"`` | ``"fused"`` | ``None`` (the fastest that supports the cell).
        check_finite: raise ``FloatingPointError`` naming the rule and the first bad step when the
            outputs or final traces hold NaN/inf (one cheap pass at the end).

    Returns:
        ``ScanResult(y[T, B, N], final_state, modulation[T, B(, N)] or None)``.

    Example:
        >>> cell = PlasticRNNCell(input_size=8, hidden_size=32, rule="neuromod")
        >>> y, state, m = scan(cell, torch.randn(100, 16, 8))
    """
    if x.dim() != 3:
        raise ValueError(f"scan: x must have shape [T, B, input_size], got {tuple(x.shape)}")
    T, B, I = x.shape
    if T == 0:
        raise ValueError("scan: x has no time steps (T=0)")
    if I != cell.input_size:
        raise ValueError(f"scan: x has {I} features per step but the cell expects input_size={cell.input_size}")
    first = next(cell.parameters(), None)
    if first is not None and (x.device != first.device or x.dtype != first.dtype):
        raise ValueError(
            f"scan: x is {x.dtype} on {x.device} but the cell is {first.dtype} on {first.device}; "
            "move one of them (cell.to(x) or x.to(...))"
        )
    if state is None:
        state = cell.initial_state(B, device=x.device, dtype=x.dtype)
    else:
        _check_state(cell, state, B, x)
    if episode_starts is not None:
        if episode_starts.shape != (T, B):
            raise ValueError(
                f"scan: episode_starts must have shape [T, B]=[{T}, {B}], got {tuple(episode_starts.shape)}"
            )
        episode_starts = episode_starts.to(device=x.device, dtype=torch.bool)
    if cell.external_modulation:
        if modulation is None:
            raise ValueError("scan: this cell has modulation_source='external'; pass modulation=[T, B]")
        if modulation.shape not in ((T, B), (T, B, 1)):
            raise ValueError(f"scan: modulation must have shape [T, B]=[{T}, {B}], got {tuple(modulation.shape)}")
        modulation = modulation.reshape(T, B).to(device=x.device, dtype=x.dtype)
    elif modulation is not None:
        raise ValueError("scan: modulation was given but the cell computes its own (modulation_source='hidden')")
    if check_finite and not _all_finite(x):
        bad = (~torch.isfinite(x)).reshape(T, -1).any(1).nonzero()
        if len(bad):
            raise FloatingPointError(f"scan: the input x holds NaN/inf at step {int(bad[0])}; check the observations")

    name = backend or default_backend(cell)
    _load_backends()
    if name not in BACKENDS:
        raise ValueError(f"scan: unknown backend {name!r}; valid choices: {sorted(BACKENDS)}")
    if not SUPPORTS[name](cell):
        raise ValueError(
            f"scan: backend {name!r} does not support {type(cell).__name__} with rule {cell.rule.name!r}; "
            f"use one of {available_backends(cell)}"
        )
    result = BACKENDS[name](cell, x, state, episode_starts, modulation)
    if check_finite:
        _check_finite(cell, result)
    return result


def _check_state(cell: PlasticCell, state: PlasticState, B: int, x: Tensor) -> None:
    template = cell.initial_state(1, device=x.device, dtype=x.dtype)
    if set(state) != set(template):
        raise ValueError(f"scan: state has fields {sorted(state)}, the cell needs {sorted(template)}")
    for k, v in state.items():
        if v.shape[0] != B or v.shape[1:] != template[k].shape[1:]:
            raise ValueError(
                f"scan: state.{k} must have shape {[B, *template[k].shape[1:]]}, got {list(v.shape)}"
            )
        if v.device != x.device:
            raise ValueError(f"scan: state.{k} is on {v.device} but x is on {x.device}; use state.to(x.device)")


def _all_finite(t: Tensor) -> bool:
    """NaN/inf anywhere make the sum non-finite: one reduction instead of four elementwise passes.
    (A finite tensor whose sum overflows reads as non-finite; callers then look closer.)"""
    with torch.no_grad():
        return bool(torch.isfinite(t.sum()))


def _check_finite(cell: PlasticCell, result: ScanResult) -> None:
    y, state = result.y, result.state
    if _all_finite(y) and all(_all_finite(v) for v in state.values()):
        return
    finite_steps = torch.isfinite(y).reshape(y.shape[0], -1).all(1)
    if bool(finite_steps.all()):
        bad_fields = [k for k, v in state.items() if not bool(torch.isfinite(v).all())]
        if not bad_fields:
            return
        where = f"the final state (fields {bad_fields})"
    else:
        where = f"step {int((~finite_steps).nonzero()[0])}"
    raise FloatingPointError(
        f"non-finite values (NaN/inf) in the plastic cell (rule {cell.rule.name!r}) at {where}. "
        "Lower the learning rate or the plasticity rate, use a clipped rule ('clipped', 'neuromod', "
        "'retroactive'), or check the inputs and modulation for NaN/inf."
    )


def _load_backends() -> None:
    import neuromod_rl.plasticity.fused  # noqa: F401  (registers "fused")
