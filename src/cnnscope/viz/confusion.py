"""The test confusion matrices of every variant side by side, row-normalised, on one colour scale.

(The train stage's own per-run ``confusion.png`` is drawn by :mod:`cnnscope.viz.training`; this
module serves the report, so changing it never retrains a network.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def confusion_panels(rates: Mapping[str, np.ndarray], classes: Sequence[str], title: str) -> Figure:
    """One panel per variant of row-normalised rates ``(K, K)`` (row = true class, sums to 1),
    each cell of at least 1 % labelled in percent; one colour bar from 0 to 1 for all panels."""
    names = list(rates)
    k = len(classes)
    size = max(2.6, 0.3 * k + 1.0)
    fig, axes = plt.subplots(
        1, len(names), figsize=(size * len(names) + 1.0, size + 0.8), squeeze=False, layout="constrained"
    )
    image = None
    for ax, name in zip(axes[0], names, strict=True):
        rate = np.asarray(rates[name], dtype=np.float64)
        image = ax.imshow(rate, cmap="Blues", vmin=0, vmax=1)
        for (i, j), r in np.ndenumerate(rate):
            if round(100 * r) >= 1:  # a cell that would read "0" stays blank
                colour = "white" if r > 0.5 else "black"
                ax.text(j, i, f"{100 * r:.0f}", ha="center", va="center", fontsize=6, color=colour)
        ax.set_xticks(range(k), list(classes), rotation=90, fontsize=6)
        ax.set_yticks(range(k), list(classes) if ax is axes[0, 0] else [], fontsize=6)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_title(name, fontsize=8)
    axes[0, 0].set_ylabel("true", fontsize=7)
    if image is not None:
        bar = fig.colorbar(image, ax=list(axes[0]), shrink=0.9, fraction=0.03, pad=0.01)
        bar.set_label("share of the true class's test images", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    return fig
