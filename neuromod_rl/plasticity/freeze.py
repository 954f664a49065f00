"""Turning plasticity off: the non-plastic twin of a plastic network, the ablation every study uses.

With ``alpha = 0`` the effective weight ``w + alpha ⊙ F`` is ``w`` whatever the trace ``F`` holds, so
the network computes exactly what an ordinary recurrent network of the same shape computes. Every
parameter of every rule (``alpha``, ``eta``, ABCD coefficients, ...) then stops training: none of
them reaches the output any more, so their gradients would be zero anyway, and a frozen parameter is
not counted when networks are matched by trainable-parameter count.
"""

from __future__ import annotations

import torch
from torch import nn

from neuromod_rl.plasticity.rules.base import PlasticityRule


def freeze_plasticity(module: nn.Module) -> None:
    """Set ``alpha`` of every plasticity rule inside ``module`` to 0 and stop training every parameter
    of those rules. ``module`` may be a cell, a core, a policy or any module that contains rules.

    Raises:
        ValueError: a rule has ``alpha_shape="none"`` (its trace *is* the weight, so there is no gain to
            set to 0): build it with ``alpha_shape="full"``, ``"neuron"`` or ``"scalar"``.
    """
    rules = [m for m in module.modules() if isinstance(m, PlasticityRule)]
    for rule in rules:
        if rule.alpha is None:
            raise ValueError(
                f"freezing plasticity sets alpha to 0, but rule {rule.name!r} has alpha_shape='none' (the trace "
                "is the weight itself); use alpha_shape='full', 'neuron' or 'scalar'"
            )
    for rule in rules:
        with torch.no_grad():
            rule.alpha.zero_()
        for p in rule.parameters():
            p.requires_grad_(False)
