"""Saving figures so that the same data gives the same bytes (DVC sees no spurious change)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from cnnscope.io import atomic_write

DPI = 100


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically, without the timestamp/version metadata that varies per run."""
    path = Path(path)
    with atomic_write(path, binary=True) as fh:
        fig.savefig(fh, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return path
