"""neuromod-rl: plastic, neuromodulated policies for Gymnasium and Stable-Baselines3."""

from neuromod_rl.envs.registration import register_envs as _register_envs

__version__ = "0.1.0"

_register_envs()
