"""The package version, in one place: ``pyproject.toml`` reads it (``dynamic = ["version"]``), and so do
``neuromod_rl.__version__``, ``neuromod-rl --version`` and ``CITATION.cff`` (a test keeps them equal)."""

__version__ = "0.3.0.dev0"
