"""Plasticity rules, one file each, found by name through the registry.

>>> from neuromod_rl.plasticity.rules import make_rule, available_rules
>>> rule = make_rule("neuromod", n_pre=64, n_post=64, alpha_shape="neuron")
"""

from neuromod_rl.plasticity.rules.abcd import ABCD
from neuromod_rl.plasticity.rules.base import (
    ALPHA_SHAPES,
    RULES,
    PlasticityRule,
    available_rules,
    clip_trace,
    get_rule_class,
    make_rule,
    outer,
    register_rule,
)
from neuromod_rl.plasticity.rules.blur import BlurRule
from neuromod_rl.plasticity.rules.clipped import ClippedHebbian
from neuromod_rl.plasticity.rules.hebbian import HebbianDecay
from neuromod_rl.plasticity.rules.l2l import L2LRule
from neuromod_rl.plasticity.rules.metanet import MetaNetRule
from neuromod_rl.plasticity.rules.neuromod import Neuromodulated
from neuromod_rl.plasticity.rules.oja import Oja
from neuromod_rl.plasticity.rules.retroactive import Retroactive

__all__ = [
    "ABCD",
    "ALPHA_SHAPES",
    "BlurRule",
    "RULES",
    "ClippedHebbian",
    "HebbianDecay",
    "L2LRule",
    "MetaNetRule",
    "Neuromodulated",
    "Oja",
    "PlasticityRule",
    "Retroactive",
    "available_rules",
    "clip_trace",
    "get_rule_class",
    "make_rule",
    "outer",
    "register_rule",
]
