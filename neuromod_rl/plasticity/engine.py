"""The sequence engine: run a plastic cell over ``x[T, B, ...]`` with episode resets.

``scan`` is the training hot path. It validates its arguments once (shapes, dtypes, devices,
NaN/inf) and hands them to one backend:

* ``"reference"`` -- a per-step autograd loop over ``cell.step``; written for clarity, it *is* the
  specification every other backend is tested against (:mod:`neuromod_rl.plasticity.backends`);
* ``"fused"`` -- :mod:`neuromod_rl.plasticity.fused`: a hand-written forward and backward with
  in-place buffers and trace checkpoints (O(T·B·N) saved memory instead of O(T·B·N²)); a C kernel
  on CPU, exact torch ops elsewhere;
* ``"triton"`` -- :mod:`neuromod_rl.plasticity.triton` (when Triton is installed): GPU kernels that
  keep each sequence's fast weights on chip for the whole sequence.

``backend=None`` picks, in the order ``triton``, ``fused``, ``reference``, the first backend that
supports the cell on the input's device; the environment variable ``NEUROMOD_RL_BACKEND`` forces one
for every such call. The result says which one ran (``result.backend``).

``cell_step`` is the one-step counterpart for rollouts and ``predict``: ``cell.step``, or under
``torch.no_grad`` the fused engine's one-step path where it runs the cell.
"""

from __future__ import annotations

import importlib.util
import os

import torch
from torch import Tensor

from neuromod_rl.extras import MissingExtraError
from neuromod_rl.plasticity import fused  # (importing it registers "fused")
from neuromod_rl.plasticity.backends import AUTO_DEVICES, BACKENDS, PREFERENCE, SUPPORTS, ScanResult
from neuromod_rl.plasticity.cells import PlasticCell
from neuromod_rl.plasticity.state import PlasticState

if importlib.util.find_spec("triton") is not None:
    # registers "triton"; the backend imports Triton itself only when a scan runs on it
    from neuromod_rl.plasticity import triton as _triton_backend  # noqa: F401

#: environment variable that forces a backend for every ``scan(..., backend=None)`` call
BACKEND_ENV = "NEUROMOD_RL_BACKEND"


def available_backends(cell: PlasticCell | None = None) -> list[str]:
    """Backend names (those supporting ``cell`` when given)."""
    return [name for name in BACKENDS if cell is None or SUPPORTS[name](cell)]


def default_backend(cell: PlasticCell, device: torch.device | str | None = None) -> str:
    """The backend ``scan(backend=None)`` runs for ``cell`` on ``device`` (default: the cell's device):
    ``$NEUROMOD_RL_BACKEND`` if set, else the first of ``triton``, ``fused`` that supports both."""
    forced = os.environ.get(BACKEND_ENV)
    if forced:
        return forced
    if device is None:
        first = next(cell.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    kind = torch.device(device).type
    for name in PREFERENCE:
        if name in BACKENDS and kind in AUTO_DEVICES[name] and SUPPORTS[name](cell):
            return name
    return "reference"


def cell_step(cell: PlasticCell, xp: Tensor, state: PlasticState, modulation: Tensor | None = None):
    """One recurrent step, ``cell.step(xp, state, modulation) -> (y_t, M(t) or None, next state)``, for
    the hot path of rollouts and ``predict``: under ``torch.no_grad``, where the fused backend runs the
    cell (and ``$NEUROMOD_RL_BACKEND`` does not force ``reference``), the same equation as one call of the
    fused kernel (:func:`neuromod_rl.plasticity.fused.step.inference_step`); otherwise ``cell.step``.
    ``xp`` is ``cell.project_input`` of one step's input, ``[B, ...]``. No argument checks: this is
    ``cell.step``'s contract. While torch traces or compiles the step (ONNX export, ``torch.compile``) it
    is ``cell.step``: a kernel call is invisible to a tracer."""
    if (
        not torch.is_grad_enabled()
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and os.environ.get(BACKEND_ENV) != "reference"
        and SUPPORTS["fused"](cell)
    ):
        return fused.inference_step(cell, xp, state, modulation)
    return cell.step(xp, state, modulation)


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
        x: inputs ``[T, B, input_size]`` (time first, like ``torch.nn.RNN``), floating point, with the
            cell's dtype and device.
        state: the state before step 0 (default: ``cell.initial_state(B)``); every field must have
            ``x``'s dtype and device.
        episode_starts: bool ``[T, B]``; where True the state is reset to the initial state *before*
            that step (as SB3's ``episode_start``). ``None``: no resets.
        modulation: ``[T, B]`` external neuromodulation, required when the cell has
            ``modulation_source="external"`` (e.g. the previous reward or TD error).
        backend: ``"reference"`` | ``"fused"`` | ``"triton"`` | ``None`` (the fastest that supports the
            cell on this device, or ``$NEUROMOD_RL_BACKEND``).
        check_finite: raise ``FloatingPointError`` naming the rule and the first bad step when the
            outputs or final traces hold NaN/inf (one cheap pass at the end).

    Returns:
        ``ScanResult(y[T, B, N], final_state, modulation[T, B(, N)] or None)``; ``.backend`` names the
        backend that ran.

    Example:
        >>> cell = PlasticRNNCell(input_size=8, hidden_size=32, rule="neuromod")
        >>> y, state, m = scan(cell, torch.randn(100, 16, 8))
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"scan: x must be a torch.Tensor [T, B, input_size], got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"scan: x must have shape [T, B, input_size], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"scan: x must be a floating-point tensor, got {x.dtype}; use x.float()")
    T, B, I = x.shape
    if T == 0 or B == 0:
        raise ValueError(f"scan: x has no time steps or no sequences (shape {tuple(x.shape)})")
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
    if check_finite:
        _check_input_finite(x, "the input x", "check the observations")
        if modulation is not None:
            _check_input_finite(modulation, "the modulation", "check the reward or TD-error signal")

    name = backend or default_backend(cell, x.device)
    if name == "triton" and name not in BACKENDS:  # registered only where Triton is installed
        raise MissingExtraError("gpu", "scan(backend='triton')", "triton")
    if name not in BACKENDS:
        raise ValueError(f"scan: unknown backend {name!r}; valid choices: {sorted(BACKENDS)}")
    if not SUPPORTS[name](cell):
        raise ValueError(
            f"scan: backend {name!r} does not support {type(cell).__name__} with rule "
            f"{type(cell.rule).__name__} ({cell.rule.name!r}) in {x.dtype}; use one of {available_backends(cell)}"
        )
    result = BACKENDS[name](cell, x, state, episode_starts, modulation)
    if check_finite:
        _check_finite(cell, result, state)
    return result


def _check_state(cell: PlasticCell, state: PlasticState, B: int, x: Tensor) -> None:
    """Every field present, batch-first with the cell's shape, and of ``x``'s dtype and device (the
    fast backends hand raw pointers to compiled code: a mismatch there would read the wrong bytes)."""
    if not isinstance(state, PlasticState):
        raise TypeError(f"scan: state must be a PlasticState (from cell.initial_state), got {type(state).__name__}")
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
        if v.dtype != x.dtype:
            raise ValueError(
                f"scan: state.{k} is {v.dtype} but x is {x.dtype}; every state field must have the input's "
                f"dtype: use state.to(dtype={x.dtype})"
            )


def _all_finite(t: Tensor) -> bool:
    """NaN/inf anywhere make the sum non-finite: one reduction instead of four elementwise passes.
    (A finite tensor whose sum overflows reads as non-finite; callers then look closer.)"""
    with torch.no_grad():
        return bool(torch.isfinite(t.sum()))


def _check_input_finite(t: Tensor, what: str, fix: str) -> None:
    if _all_finite(t):
        return
    bad = (~torch.isfinite(t)).reshape(t.shape[0], -1).any(1).nonzero()
    if len(bad):
        raise FloatingPointError(f"scan: {what} holds NaN/inf at step {int(bad[0])}; {fix}")


def _check_finite(cell: PlasticCell, result: ScanResult, initial: PlasticState) -> None:
    """Name the source of NaN/inf in the outputs: the cell's weights, the state passed in, or (with both
    finite, the inputs having been checked before) the traces themselves."""
    y, state = result.y, result.state
    if _all_finite(y) and all(_all_finite(v) for v in state.values()):
        return
    for name, param in cell.named_parameters():
        if not bool(torch.isfinite(param).all()):
            raise FloatingPointError(
                f"the cell's weight {name!r} holds NaN/inf (training diverged: a non-finite or huge reward, or too "
                "large a learning rate); restart from a checkpoint taken before, with a lower learning rate"
            )
    for name, value in initial.items():
        if not bool(torch.isfinite(value).all()):
            raise FloatingPointError(f"scan: the state passed in holds NaN/inf (field {name!r})")
    finite_steps = torch.isfinite(y).reshape(y.shape[0], -1).all(1)
    if bool(finite_steps.all()):
        bad_fields = [k for k, v in state.items() if not bool(torch.isfinite(v).all())]
        if not bad_fields:
            return
        where = f"the final state (fields {bad_fields})"
    else:
        where = f"step {int((~finite_steps).nonzero()[0])}"
    raise FloatingPointError(
        f"non-finite values (NaN/inf) in the plastic traces of the cell (rule {cell.rule.name!r}) at {where}, "
        "with finite inputs, weights and initial state: the rule grew without bound. Lower the plasticity rate, "
        "the plastic gain alpha or the modulation gain, or use a rule with a small clip ('clipped', 'neuromod', "
        "'retroactive')"
    )
