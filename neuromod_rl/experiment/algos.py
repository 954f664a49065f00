"""Algorithm registry: config name -> SB3-compatible algorithm class, imported only when used.

Every entry is an SB3 algorithm (on- or off-policy) with the same API (learn, predict with ``state`` and
``episode_start``, save/load), so the rest of the workflow treats them alike; recurrent ones
simply return a non-``None`` state from ``predict``. Classes are looked up by name when used, so
an algorithm whose package cannot be imported is a clear :class:`UserError` (:func:`algo_class`).
"""

from __future__ import annotations

import importlib

from neuromod_rl.experiment.errors import UserError

# name -> (module, class)
ALGOS: dict[str, tuple[str, str]] = {
    "plastic_ppo": ("neuromod_rl.agents", "PlasticPPO"),
    "plastic_a2c": ("neuromod_rl.agents", "PlasticA2C"),
    "plastic_sac": ("neuromod_rl.agents", "PlasticSAC"),
    "plastic_td3": ("neuromod_rl.agents", "PlasticTD3"),
    "ppo": ("stable_baselines3", "PPO"),
    "a2c": ("stable_baselines3", "A2C"),
    # sb3-contrib's RecurrentPPO, its LSTM trained over whole sequences (same results, faster)
    "recurrent_ppo": ("neuromod_rl.agents.on_policy.recurrent_ppo", "RecurrentPPO"),
    # evolution strategies: an SB3 BaseAlgorithm with the same save/load/predict (docs/es.md)
    "es": ("neuromod_rl.agents", "ESTrainer"),
}


def algo_class(name: str) -> type:
    """The class registered as ``name``; a clear :class:`UserError` if it is unknown or not installed."""
    if name not in ALGOS:
        raise UserError(f"unknown algorithm {name!r}; allowed values: {sorted(ALGOS)}")
    module, attr = ALGOS[name]
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise UserError(
            f"algorithm {name!r} needs {module}.{attr}, which cannot be imported here ({err}). "
            f"Choose another `algo` among {sorted(ALGOS)} or install the missing package."
        ) from None
