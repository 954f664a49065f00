"""The studies' registry: each study module declares a :class:`Study`, and :func:`studies` finds it.

A study is one module in a family package of :mod:`neuromod_rl.studies`, sorted by the kind of claim
it tests (:data:`FAMILIES`). It ends with ``STUDY = Study(...)``: its name on the command line, the
claim in one line, the options it takes. Adding a study means writing that module; nothing else
lists it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: the family packages, one per kind of claim
FAMILIES = {
    "adaptation": "agents that adapt within an episode to a changed body or goal",
    "memory": "memory and within-episode learning against the recurrent baselines users run",
    "neuromodulation": "Backpropamine's claim: neuromodulated plasticity against plain and frozen plasticity",
    "learned_rules": "learned update rules and optimizers from the meta-learning papers",
}
#: the scales every study has
SCALES = ("smoke", "default", "paper")


@dataclass(frozen=True)
class Study:
    """What a study says about itself; the ``reproduce`` command and the docs read only this.

    Args:
        name: the name on the command line (``neuromod-rl reproduce NAME``) and of its report.
        claim: the claim it tests, in one line.
        run: ``run(scale, seed, out, command, options) -> report path``.
        extra_scales: scales beyond :data:`SCALES` (a control experiment rather than a size).
        takes_budget: an RL study whose env-step budget ``--budget`` sets.
        tasks: a study of several tasks: the ids ``--tasks`` may pick from.
        takes_core: its variants share one plastic core, which ``--core`` sets.
    """

    name: str
    claim: str
    run: Callable[..., Path]
    extra_scales: tuple[str, ...] = ()
    takes_budget: bool = False
    tasks: tuple[str, ...] = ()
    takes_core: bool = False

    @property
    def scales(self) -> tuple[str, ...]:
        return SCALES + self.extra_scales


def studies() -> dict[str, Study]:
    """Every declared study by name (imports each family's modules: the studies import torch and SB3)."""
    found: dict[str, Study] = {}
    for family in FAMILIES:
        package = importlib.import_module(f"{__package__}.{family}")
        for info in pkgutil.iter_modules(package.__path__):
            study = getattr(importlib.import_module(f"{package.__name__}.{info.name}"), "STUDY", None)
            if not isinstance(study, Study):
                continue  # a module the family's studies share
            if study.name in found:
                raise RuntimeError(f"two studies are named {study.name!r}: {info.name} and another in {family}")
            found[study.name] = study
    return dict(sorted(found.items()))
