"""The optional extras of ``pyproject.toml`` and the error raised when a feature needs one that is missing.

A feature that needs an extra checks for it where it starts (an :class:`~neuromod_rl.agents.ESTrainer`,
``neuromod-rl sweep``, ``scan(backend="triton")``) and raises :class:`MissingExtraError`, which names the
``pip install`` line that fixes it; the command line reports it in one paragraph with exit code 2.
This module imports nothing heavy: it is used before the extras' packages are.
"""

from __future__ import annotations

import importlib
import importlib.util

#: top-level package of an extra -> the extra that installs it (Ray is in both `es` and `sweep`: the
#: sweep checks for Ray Tune itself, so a bare missing Ray points to `es`, the smaller one)
EXTRA_OF = {"evotorch": "es", "ray": "es", "optuna": "sweep", "triton": "gpu", "onnx": "export",
            "onnxruntime": "export", "onnxscript": "export", "sklearn": "benchmarks", "rl_zoo3": "zoo",
            "huggingface_hub": "hub"}  # fmt: skip


def install_hint(extra: str) -> str:
    """The command that installs ``extra``.

    Args:
        extra: an extra of ``pyproject.toml`` (``"es"``, ``"sweep"``, ``"gpu"``, ...).
    """
    return f"pip install 'neuromod-rl[{extra}]'"


class MissingExtraError(ImportError):
    """A feature needs a package of an optional extra that is not installed (or does not import).

    Args:
        extra: the extra that installs the package.
        feature: what the user asked for, as the message names it.
        module: the package that is missing.
        reason: why it did not import (the original error's text), if it was found but failed.
    """

    def __init__(self, extra: str, feature: str, module: str, reason: str | None = None):
        problem = f"is installed but does not import ({reason})" if reason else "is not installed"
        super().__init__(f"{feature} needs the package {module!r}, which {problem}. It comes with the {extra!r} "
                         f"extra: {install_hint(extra)}", name=module)  # fmt: skip
        self.extra = extra


def require(extra: str, feature: str, modules: tuple[str, ...], *, load: bool = False) -> None:
    """Raise :class:`MissingExtraError` unless every module of ``modules`` is installed.

    Args:
        extra: the extra that installs them.
        feature: what needs them, for the message (``"ESTrainer"``, ``"neuromod-rl sweep"``).
        modules: importable names (``"ray"``, ``"ray.tune"``).
        load: import them (to catch a package that is present but fails to import, as ``ray.tune`` does
            without its own dependencies); otherwise only look them up, which imports nothing.
    """
    for name in modules:
        try:
            found = importlib.import_module(name) if load else importlib.util.find_spec(name)
        except ModuleNotFoundError as err:  # the package, or a parent of a dotted name, is absent
            raise MissingExtraError(extra, feature, err.name or name) from err
        except ImportError as err:
            raise MissingExtraError(extra, feature, name, reason=str(err)) from err
        if found is None:
            raise MissingExtraError(extra, feature, name)
