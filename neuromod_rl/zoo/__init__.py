"""rl-zoo3 integration: train, replay, record and tune the plastic algorithms with rl-zoo3's own commands.

``python -m neuromod_rl.zoo train|enjoy|record_video|push_to_hub [rl-zoo3 flags]`` (or the
``neuromod-rl-zoo`` command) registers ``plastic_ppo``, ``plastic_a2c``, ``plastic_sac`` and
``plastic_td3`` in rl-zoo3's algorithm table and Optuna samplers, then runs rl-zoo3's entry point with
every flag as given; without ``-conf``/``--conf-file``, ``train`` reads the shipped zoo file of the
algorithm (``neuromod_rl/configs/zoo/<algo>.yml``). The other way round needs nothing from this
package: ``python -m rl_zoo3.train --algo ppo_lstm --gym-packages neuromod_rl.agents`` trains
``MlpPlasticPolicy`` under sb3-contrib's RecurrentPPO (``configs/zoo/ppo_lstm_plastic.yml``).
Guide: ``docs/zoo.md``.

This module imports neither rl-zoo3 nor Stable-Baselines3: rl-zoo3 patches Gymnasium's ``TimeLimit``
when it is imported, so only the ``neuromod_rl.zoo`` process itself imports it.
"""

from __future__ import annotations

from pathlib import Path

import neuromod_rl.configs as _shipped

#: the algorithms this package adds to rl-zoo3 (the names of ``neuromod_rl.experiment.algos.ALGOS``)
PLASTIC_ALGOS = ("plastic_ppo", "plastic_a2c", "plastic_sac", "plastic_td3")
#: the shipped zoo-format hyperparameter files
ZOO_CONFIG_DIR = Path(_shipped.__file__).parent / "zoo"
#: the zoo file for the stock path: sb3-contrib's RecurrentPPO (``--algo ppo_lstm``) with ``MlpPlasticPolicy``
RECURRENT_PPO_CONF = ZOO_CONFIG_DIR / "ppo_lstm_plastic.yml"


def shipped_conf(algo: str) -> Path | None:
    """The shipped zoo file of ``algo`` (``configs/zoo/<algo>.yml``), or ``None`` where none is shipped.

    Args:
        algo: an rl-zoo3 algorithm name (``plastic_ppo``, ...).
    """
    path = ZOO_CONFIG_DIR / f"{algo}.yml"
    return path if path.is_file() else None


__all__ = ["PLASTIC_ALGOS", "RECURRENT_PPO_CONF", "ZOO_CONFIG_DIR", "shipped_conf"]
