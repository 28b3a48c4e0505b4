"""Training curves of all variants of a study in one figure (mean over seeds, band = min..max)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnnscope.viz.style import variant_colour


def training_curves(history: pd.DataFrame, variants: list[str], metrics: tuple[str, ...]) -> Figure:
    """One panel per metric; one line per variant over epochs."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for variant in variants:
            runs = history[history["variant"] == variant]
            if runs.empty or runs[metric].isna().all():
                continue
            stats = runs.groupby("epoch")[metric].agg(["mean", "min", "max"])
            (line,) = ax.plot(
                stats.index, stats["mean"], marker="o", ms=3, label=variant, color=variant_colour(variant)
            )
            ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.2)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # epochs are whole numbers
        if not history.empty:  # half an epoch either side: one epoch still gets its tick
            ax.set_xlim(history["epoch"].min() - 0.5, history["epoch"].max() + 0.5)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig
