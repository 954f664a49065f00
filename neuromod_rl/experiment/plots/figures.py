"""The one figure helper: a matplotlib figure on the Agg backend, saved atomically and closed.

Every plot of a run, a comparison or a study goes through :func:`new_figure` (or :func:`pyplot`) and
:func:`save`, so each is written the same way: never through a link or a file of a predictable name.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt

from neuromod_rl.experiment.runs import atomic_save_figure

DPI = 110


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend."""
    # at plot time, not import time: importing this module must not change the caller's backend
    matplotlib.use("Agg")  # files only: no display needed, works on headless machines
    return plt


def new_figure(ncols: int = 1, width: float = 5.0, height: float = 3.6):
    """``(fig, axes)``: a figure of ``ncols`` panels side by side, each ``width`` x ``height`` inches."""
    fig, axes = pyplot().subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, axes[0]


def save(fig, path: Path, tight_bbox: bool = True) -> Path:
    """Save ``fig`` as ``path`` (PNG, atomically) and close it. ``tight_bbox`` crops to the drawn area;
    without it the figure is laid out with ``tight_layout`` and saved at its own size."""
    if tight_bbox:
        atomic_save_figure(fig, path, dpi=DPI, bbox_inches="tight")
    else:
        fig.tight_layout()
        atomic_save_figure(fig, path, dpi=DPI)
    plt.close(fig)
    return path
