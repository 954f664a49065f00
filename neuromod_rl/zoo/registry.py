"""The plastic algorithms in rl-zoo3's tables: ``ALGOS`` (what ``--algo`` may name, for every script)
and the Optuna samplers and converters of ``-optimize``.

rl-zoo3's scripts build their ``--algo`` choices from ``rl_zoo3.utils.ALGOS`` when they parse the
command line, and ``train``, ``enjoy``, ``record_video``, ``push_to_hub`` and the experiment manager
all hold that same dict; so do ``HYPERPARAMS_SAMPLER`` / ``HYPERPARAMS_CONVERTER``. Adding entries to
them before a script runs is all the registration there is.
"""

from __future__ import annotations

from rl_zoo3 import hyperparams_opt, utils

import neuromod_rl.agents  # noqa: F401  (the env ids, and the plastic policy names in RecurrentPPO's aliases)
from neuromod_rl.experiment.algos import algo_class
from neuromod_rl.zoo import PLASTIC_ALGOS
from neuromod_rl.zoo.samplers import CONVERTERS, SAMPLERS


def register() -> None:
    """Add :data:`~neuromod_rl.zoo.PLASTIC_ALGOS` to rl-zoo3's ``ALGOS``, ``HYPERPARAMS_SAMPLER`` and
    ``HYPERPARAMS_CONVERTER`` (again and again: the same entries)."""
    utils.ALGOS.update({name: algo_class(name) for name in PLASTIC_ALGOS})
    hyperparams_opt.HYPERPARAMS_SAMPLER.update(SAMPLERS)
    hyperparams_opt.HYPERPARAMS_CONVERTER.update(CONVERTERS)
