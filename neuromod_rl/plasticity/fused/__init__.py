"""The ``fused`` backend of :func:`~neuromod_rl.plasticity.scan`.

What it runs (exact classes; anything else runs on ``reference``): :class:`PlasticRNNCell`,
:class:`PlasticLSTMCell` and :class:`PlasticMLPCell` with the rules ``neuromod``, ``retroactive``,
``clipped``, ``hebbian``, ``oja`` and ``abcd``; modulation scalar or fan-out, from the cell's head or
from the caller; ``alpha_shape`` full, neuron, scalar or none; ABCD's ``max_norm``. Not fused (they run
on ``reference``): the soft clip, and the rules with networks inside (``metanet``, ``blur``, ``l2l``).

Where the speed comes from:

* no per-step autograd graph: one ``autograd.Function`` whose forward runs the time loop with
  in-place trace updates, and whose backward is written by hand;
* input projections for all T steps are one matrix product before the loop (``cell.project_input``);
* saved memory O(T·B·N): the activity per step (hidden states; the LSTM's cell state and gates; the
  MLP's layer outputs) and the scalar modulation, plus the traces ``F`` (and ``E``) at every K-th step
  (K ≈ √T). Clipping makes the update irreversible, so the backward pass replays each K-step segment
  forward from its checkpoint, then walks it in reverse: memory O((T/K + K)·B·N²) instead of the
  reference's O(T·B·N²);
* gradients of ``w``, ``alpha`` and the rule's coefficients are summed over the batch as they are
  produced, never stored per sequence and step;
* on CPU the loops run in a C kernel (:mod:`.cpu`, sources in ``kernel/``): one sequence per
  thread, its fast weights cache-resident for all T steps, each trace update applied in the next
  step's drive pass. Elsewhere (CUDA tensors, or no C compiler) the same algorithm runs as torch ops
  (:mod:`.torch_ops`, one layer's rules in :mod:`.torch_rules`).

Modules: :mod:`.spec` (which exact cell and rule classes run here, the one table of rule codes, the
per-call config), :mod:`.torch_ops`, :mod:`.build` (compiling and safely caching the kernel),
:mod:`.cpu` (the C interface). ``tests/plasticity/test_fused.py`` holds this backend to the
reference (values and gradients) and ``tests/plasticity/test_gradcheck.py`` to ``gradcheck``, in float64.
"""

from __future__ import annotations

from torch import Tensor

from neuromod_rl.plasticity.backends import ScanResult, register_backend
from neuromod_rl.plasticity.cells import PlasticCell
from neuromod_rl.plasticity.fused import cpu
from neuromod_rl.plasticity.fused.spec import config_for, params_for, side_by_side, split_traces, supports
from neuromod_rl.plasticity.fused.step import inference_step
from neuromod_rl.plasticity.fused.torch_ops import FusedPlasticTorch
from neuromod_rl.plasticity.state import PlasticState

__all__ = ["fused_scan", "fused_scan_projected", "inference_step", "supports", "kernel_available"]

kernel_available = cpu.available


@register_backend("fused", supports=supports)
def fused_scan(
    cell: PlasticCell, x: Tensor, state: PlasticState, episode_starts: Tensor | None, modulation: Tensor | None
) -> ScanResult:
    return fused_scan_projected(cell, cell.project_input(x), state, episode_starts, modulation)


def fused_scan_projected(
    cell: PlasticCell, xp: Tensor, state: PlasticState, episode_starts: Tensor | None, modulation: Tensor | None
) -> ScanResult:
    """:func:`fused_scan` from the projected input ``xp = cell.project_input(x)`` on: the engine proper."""
    T, B = xp.shape[:2]
    cfg = config_for(cell, T)
    F0, E0 = side_by_side(cfg, state, B)
    h0 = state.h if cfg.cell != "mlp" else None
    c0 = state.c if cfg.cell == "lstm" else None
    mod_params, layer_params, F_init = params_for(cell, xp)
    flat = [t for p in layer_params for t in p]
    fn = cpu.FusedPlasticCPU if xp.device.type == "cpu" and cpu.available() else FusedPlasticTorch
    H, hT, cT, FT, ET, M = fn.apply(cfg, episode_starts, xp, modulation, h0, c0, F0, E0, F_init, *mod_params, *flat)
    new = split_traces(cfg, FT, ET, B)
    if h0 is not None:
        new["h"] = hT
    if c0 is not None:
        new["c"] = cT
    return ScanResult(H, state.replace(**new), M if cfg.modulation else None, "fused")
