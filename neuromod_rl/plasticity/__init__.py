"""The learned-rule core: plasticity rules, plastic cells and the sequence engine (pure torch).

>>> import torch
>>> from neuromod_rl.plasticity import PlasticRNNCell, scan
>>> cell = PlasticRNNCell(input_size=8, hidden_size=32, rule="neuromod")
>>> y, state, m = scan(cell, torch.randn(100, 16, 8))   # [T, B, input] -> y [T, B, 32]
"""

from neuromod_rl.plasticity.cells import (
    ModulatorHead,
    PlasticCell,
    PlasticLinear,
    PlasticLSTMCell,
    PlasticMLPCell,
    PlasticRNNCell,
)
from neuromod_rl.plasticity.engine import ScanResult, available_backends, cell_step, default_backend, scan
from neuromod_rl.plasticity.freeze import freeze_plasticity
from neuromod_rl.plasticity.rules import PlasticityRule, available_rules, make_rule, register_rule
from neuromod_rl.plasticity.state import PlasticState

__all__ = [
    "ModulatorHead",
    "PlasticCell",
    "PlasticLSTMCell",
    "PlasticLinear",
    "PlasticMLPCell",
    "PlasticRNNCell",
    "PlasticState",
    "PlasticityRule",
    "ScanResult",
    "available_backends",
    "available_rules",
    "cell_step",
    "default_backend",
    "freeze_plasticity",
    "make_rule",
    "register_rule",
    "scan",
]
