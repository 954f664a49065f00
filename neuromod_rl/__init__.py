"""neuromod-rl: plastic, neuromodulated policies for Gymnasium and Stable-Baselines3.

The repository's top-level folders ``agents/`` and ``envs/`` install as ``neuromod_rl.agents`` and
``neuromod_rl.envs`` (setuptools ``package-dir``; the editable install is a tree of links that IDEs
and static analysers follow). Layers and data flow: ``docs/architecture.md``.
"""

from pathlib import Path as _Path

# Run from the root of a source checkout (``python -m pytest``, ``python -m neuromod_rl...``), Python
# finds this folder before the installed tree; its sibling folders agents/ and envs/ then serve as
# neuromod_rl.agents and neuromod_rl.envs, as the installed package maps them. (Installed, the package
# folder holds agents/ and envs/ itself and this does nothing.)
_checkout = _Path(__file__).parent.parent
if not (_Path(__file__).parent / "envs").is_dir() and (_checkout / "pyproject.toml").is_file() and all(
    (_checkout / sub / "__init__.py").is_file() for sub in ("agents", "envs")
):
    __path__.append(str(_checkout))

from neuromod_rl._version import __version__ as __version__  # noqa: E402  (the re-export is the point)
from neuromod_rl.envs.registration import register_envs as _register_envs  # noqa: E402

_register_envs()
