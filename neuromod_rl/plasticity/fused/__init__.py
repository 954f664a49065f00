"""The ``fused`` backend of :func:`~neuromod_rl.plasticity.scan`.

Where the speed comes from:

* no per-step autograd graph: one ``autograd.Function`` whose forward runs the time loop with
  in-place trace updates, and whose backward is written by hand;
* saved memory O(T·B·N): the hidden states and the scalar modulation per step, plus the traces
  ``F`` (and ``E``) at every K-th step (K ≈ √T). Clipping makes the update irreversible, so the
  backward pass replays each K-step segment forward from its checkpoint, then walks it in reverse:
  memory O((T/K + K)·B·N²) instead of the reference's O(T·B·N²);
* gradients of ``w`` and ``alpha`` are summed over the batch as they are produced, never stored
  per sequence and step;
* on CPU the loops run in a C kernel (:mod:`.cpu`, sources in ``kernel/``): one sequence per
  thread, its fast weights cache-resident for all T steps. Elsewhere (CUDA tensors, or no C
  compiler) the same algorithm runs as torch ops (:mod:`.torch_ops`).

Modules: :mod:`.spec` (which exact cell and rule classes run here, the one table of rule codes, the
per-call config), :mod:`.torch_ops`, :mod:`.build` (compiling and safely caching the kernel),
:mod:`.cpu` (the C interface). ``tests/plasticity/test_fused.py`` holds this backend to the
reference (values and gradients) and to ``gradcheck`` in float64.
"""

from __future__ import annotations

from torch import Tensor

from neuromod_rl.plasticity.backends import ScanResult, register_backend
from neuromod_rl.plasticity.cells import PlasticCell
from neuromod_rl.plasticity.fused import cpu
from neuromod_rl.plasticity.fused.spec import config_for, rule_params, supports
from neuromod_rl.plasticity.fused.torch_ops import FusedPlasticRNNTorch
from neuromod_rl.plasticity.state import PlasticState

__all__ = ["fused_scan", "supports", "kernel_available"]

kernel_available = cpu.available


@register_backend("fused", supports=supports)
def fused_scan(
    cell: PlasticCell, x: Tensor, state: PlasticState, episode_starts: Tensor | None, modulation: Tensor | None
) -> ScanResult:
    xp = cell.project_input(x)
    cfg = config_for(cell, x.shape[0])
    E0 = state.E if "E" in state else None
    fn = cpu.FusedPlasticRNNCPU if xp.device.type == "cpu" and cpu.available() else FusedPlasticRNNTorch
    H, hT, FT, ET, M = fn.apply(cfg, episode_starts, xp, modulation, state.h, state.F, E0, *rule_params(cell, xp))
    final = state.replace(h=hT, F=FT, **({"E": ET} if E0 is not None else {}))
    return ScanResult(H, final, M if cfg.modulation else None, "fused")
