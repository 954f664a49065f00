"""The shipped configs: every YAML the library, its studies and its users train from.

This folder (``configs/`` in the repository) installs as the package data of ``neuromod_rl.configs``,
so ``neuromod-rl train NAME`` finds ``NAME.yaml`` here from a wheel as well as from a clone.
"""
