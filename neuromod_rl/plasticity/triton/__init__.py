"""The ``triton`` backend of :func:`~neuromod_rl.plasticity.scan`: GPU kernels for the plastic RNN and LSTM.

One program per sequence walks all T steps with its fast weights ``F`` (and eligibility ``E``) moving
through the chip once per step, in column tiles; the hand-written backward replays √T-step segments
from trace checkpoints, like the fused engine (:mod:`neuromod_rl.plasticity.fused`), whose table of
rule codes and checkpoint spacing it shares (:mod:`.config`). Design and expected bottleneck: ``docs/gpu.md``.

Runs: :class:`~neuromod_rl.plasticity.cells.PlasticRNNCell` (exact class) with the rules ``hebbian``,
``clipped``, ``neuromod`` and ``retroactive`` (hard clip; ``oja`` too once the fused engine's table
of rule codes has a code for it), modulation scalar or fan-out, from the hidden
state or external, ``alpha`` full, per neuron or scalar, float32 or float64.
:class:`~neuromod_rl.plasticity.cells.PlasticLSTMCell` (exact class) with the same rules and ``abcd``
(without ``max_norm``), the same modulation and alpha shapes (:mod:`.kernels_lstm`).

* ``scan(backend=None)`` picks it on CUDA tensors when Triton is installed; ``backend="triton"`` or
  ``NEUROMOD_RL_BACKEND=triton`` forces it.
* CPU tensors run only in Triton's interpreter (``TRITON_INTERPRET=1`` in the environment before
  Triton is imported): slow, exact, and what the test suite uses to check the kernels without a GPU.
* :func:`bf16_inputs` makes the kernels read the projected input in bfloat16 (see there).

This module imports no Triton: the kernels load at the first call (``import neuromod_rl`` stays light).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re

import torch
from torch import Tensor

from neuromod_rl.plasticity.backends import ScanResult, register_backend
from neuromod_rl.plasticity.cells import PlasticCell, PlasticLSTMCell, PlasticRNNCell
from neuromod_rl.plasticity.fused.spec import supports as fused_supports
from neuromod_rl.plasticity.rules import ABCD
from neuromod_rl.plasticity.state import PlasticState
from neuromod_rl.plasticity.triton.config import LSTM_RULES, TRITON_RULES, cell_params, config_for, lstm_params

__all__ = ["bf16_inputs", "supports", "triton_scan", "TRITON_RULES"]

_BF16_INPUT = contextvars.ContextVar("neuromod_rl_triton_bf16_input", default=False)
_BLOCK_J = contextvars.ContextVar("neuromod_rl_triton_block_j", default=None)


def supports(cell: PlasticCell) -> bool:
    """True for the cells the kernels implement: a fused-engine cell that is a plastic RNN with one
    of :data:`TRITON_RULES`, or a plastic LSTM with one of :data:`LSTM_RULES` (ABCD without
    ``max_norm``, a reduction over the whole trace that the column-tiled kernels do not make)."""
    if not fused_supports(cell):
        return False
    if type(cell) is PlasticRNNCell:
        return type(cell.rule) in TRITON_RULES
    if type(cell) is PlasticLSTMCell:
        return type(cell.rule) in LSTM_RULES and not (type(cell.rule) is ABCD and cell.rule.max_norm)
    return False


@contextlib.contextmanager
def bf16_inputs(enabled: bool = True):
    """Within the block, the triton backend reads the projected input ``W_in x_t + b`` in bfloat16.

    Precisely: ``cell.project_input(x)`` runs in float32 as usual; its result ``xp[T, B, N]`` is
    rounded to the nearest bfloat16 (halving the bytes the kernels read for it) and widened back to
    float32 inside the kernel. The state ``h, F, E``, every parameter, every product and every sum
    stay float32, and so do the outputs. The backward pass treats the rounding as the identity
    (straight-through): the gradient of ``xp`` is the float32 gradient of the rounded input. The
    outputs then differ from float32 inputs by about bfloat16's relative precision (2⁻⁸) of the
    input drive, nothing else. Other backends ignore it.
    """
    token = _BF16_INPUT.set(bool(enabled))
    try:
        yield
    finally:
        _BF16_INPUT.reset(token)


@contextlib.contextmanager
def tile_width(block_j: int | None):
    """Within the block, the kernels walk the traces in column tiles of ``block_j`` columns (a power
    of two; ``None``: the default for the size). For tests and tuning."""
    token = _BLOCK_J.set(block_j)
    try:
        yield
    finally:
        _BLOCK_J.reset(token)


#: the oldest Triton whose CPU interpreter runs the kernels (3.6's fails on a run-time loop bound)
INTERPRETER_MIN = (3, 9)


def interpreter_supported(version: str) -> bool:
    """Whether Triton ``version``'s CPU interpreter runs the kernels (an unreadable version counts as new)."""
    found = re.match(r"(\d+)\.(\d+)", version)
    return not found or (int(found[1]), int(found[2])) >= INTERPRETER_MIN


def _load_function():
    """Import Triton and the kernels, and check that they can run on ``device``."""
    try:
        from neuromod_rl.plasticity.triton import function
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise RuntimeError(
            f"the triton backend needs the 'triton' package, which failed to import ({err}); "
            "install it (pip install 'neuromod-rl[gpu]') or use backend='fused'"
        ) from err
    return function


@register_backend("triton", supports=supports, auto_devices=("cuda",))
def triton_scan(
    cell: PlasticCell, x: Tensor, state: PlasticState, episode_starts: Tensor | None, modulation: Tensor | None
) -> ScanResult:
    function = _load_function()
    if x.device.type == "cpu" and not function.interpreted():
        setting = os.environ.get("TRITON_INTERPRET")
        raise RuntimeError(
            "the triton backend runs CPU tensors only in Triton's interpreter: set TRITON_INTERPRET=1 in the "
            "environment before Python starts (Triton reads it when the kernels load; here it is "
            f"{'unset' if setting is None else repr(setting)}). For speed on CPU use backend='fused'; the "
            "triton backend is for CUDA tensors."
        )
    if x.device.type == "cpu" and not interpreter_supported(function.triton.__version__):
        raise RuntimeError(
            f"Triton {function.triton.__version__}'s interpreter cannot run these kernels (a loop bound passed "
            f"at run time; fixed in Triton {'.'.join(map(str, INTERPRETER_MIN))}): upgrade triton for CPU runs, or "
            "use backend='fused' on CPU. Compiled on CUDA, the kernels run with Triton 3.6 and later."
        )
    if x.device.type not in ("cpu", "cuda"):
        raise RuntimeError(f"the triton backend runs on CUDA (or the CPU interpreter), not on {x.device.type!r}")
    xp = cell.project_input(x)
    cfg = config_for(cell, x.shape[0])
    opts = function.LaunchOptions(bf16_input=_BF16_INPUT.get() and xp.dtype == torch.float32, block_j=_BLOCK_J.get())
    E0 = state.E if "E" in state else None
    if type(cell) is PlasticLSTMCell:
        from neuromod_rl.plasticity.triton import function_lstm  # imports Triton, as `function` did above

        H, hT, cT, FT, ET, M = function_lstm.TritonPlasticLSTM.apply(
            cfg, opts, episode_starts, xp, modulation, state.h, state.c, state.F, E0, *lstm_params(cell, xp)
        )
        final = state.replace(h=hT, c=cT, F=FT, **({"E": ET} if E0 is not None else {}))
    else:
        H, hT, FT, ET, M = function.TritonPlasticRNN.apply(
            cfg, opts, episode_starts, xp, modulation, state.h, state.F, E0, *cell_params(cell, xp)
        )
        final = state.replace(h=hT, F=FT, **({"E": ET} if E0 is not None else {}))
    return ScanResult(H, final, M if cfg.modulation else None, "triton")
