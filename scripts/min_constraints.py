"""Print a pip constraints file that pins packages to the floors ``pyproject.toml`` declares.

``make test-min`` installs the package with these constraints, so the tests run against the oldest
releases the package claims to support; a changed floor in ``pyproject.toml`` changes the pins.

    python scripts/min_constraints.py [PACKAGE ...]   # default: the SB3 and Gymnasium floors
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
#: the libraries whose APIs the package builds on most closely
DEFAULT = ("stable-baselines3", "sb3-contrib", "gymnasium")
_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def floors(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """Every base dependency of ``pyproject`` that declares a floor (``>=X``) -> ``X``.

    Args:
        pyproject: the ``pyproject.toml`` to read.
    """
    out = {}
    for requirement in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        name, _, spec = _REQUIREMENT.fullmatch(requirement.partition(";")[0]).groups()
        floor = re.search(r">=\s*([^,\s]+)", spec)
        if floor:
            out[_normalize(name)] = floor[1]
    return out


def constraints(packages: list[str], pyproject: Path = PYPROJECT) -> str:
    """A constraints file pinning each of ``packages`` to its floor (``name==X``, no extras: pip refuses
    extras in constraints).

    Args:
        packages: distribution names; each must be a base dependency with a floor.
        pyproject: the ``pyproject.toml`` to read.
    """
    known = floors(pyproject)
    missing = [p for p in packages if _normalize(p) not in known]
    if missing:
        raise SystemExit(f"min_constraints: no floor (>=) for {missing} in {pyproject}'s dependencies; "
                         f"those with one: {sorted(known)}")  # fmt: skip
    return "".join(f"{_normalize(p)}=={known[_normalize(p)]}\n" for p in packages)


if __name__ == "__main__":
    sys.stdout.write(constraints(sys.argv[1:] or list(DEFAULT)))
