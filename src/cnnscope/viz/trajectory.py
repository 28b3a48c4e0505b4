"""Figures of training trajectories: each measure against gradient steps, and OIPs over training.

Most of what training does to a map happens in the first steps, so the step axis is logarithmic
(symmetric-log, so step 0 — the initial network — has a place at the left edge). One line per
variant is the mean over seeds, the band their minimum to maximum, as the training curves.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cnnscope.viz.style import variant_colour

#: Measures drawn per map layer, with their axis label.
LAYER_MEASURES = {
    "hoyer": "Hoyer sparsity",
    "entropy_norm_bits": "normalised entropy (bits)",
    "cka_to_initial": "CKA to the initial network",
    "cka_to_final": "CKA to the final network",
    "spatial_probe_acc": "spatial-probe accuracy",
}


def plain(image: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` → ``(H, W)`` or ``(H, W, 3)`` scaled linearly to [0, 1], as :func:`cnnscope.viz.oip.plain`
    (not imported: that module loads the OIP code, which the report stage does not depend on)."""
    img = np.moveaxis(np.asarray(image, dtype=np.float64), 0, -1)
    img = img[..., 0] if img.shape[-1] == 1 else img
    lo, hi = float(img.min()), float(img.max())
    return (img - lo) / (hi - lo) if hi > lo else np.full_like(img, 0.5)


def _steps_axis(ax: plt.Axes) -> None:
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("gradient step (log)")
    ax.grid(alpha=0.3)


def _lines(ax: plt.Axes, rows: pd.DataFrame, variants: Sequence[str]) -> None:
    for variant in variants:
        runs = rows[rows["variant"] == variant]
        if runs.empty:
            continue
        stats = runs.groupby("step")["value"].agg(["mean", "min", "max"])
        (line,) = ax.plot(stats.index, stats["mean"], marker="o", ms=2.5, label=variant, color=variant_colour(variant))
        ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.2)


def measure_grid(table: pd.DataFrame, variants: Sequence[str], layers: Sequence[str]) -> Figure:
    """Rows: :data:`LAYER_MEASURES`; columns: ``layers``; one line per variant over steps.
    ``table``: the trajectory stage's tidy rows with ``variant`` and ``seed``."""
    measures = [m for m in LAYER_MEASURES if m in set(table["measure"])]
    fig, axes = plt.subplots(
        len(measures), len(layers), figsize=(3.6 * len(layers), 2.6 * len(measures)), squeeze=False
    )
    for i, measure in enumerate(measures):
        for j, layer in enumerate(layers):
            ax = axes[i][j]
            _lines(ax, table[(table["measure"] == measure) & (table["layer"] == layer)], variants)
            _steps_axis(ax)
            ax.set_title(f"{layer}: {LAYER_MEASURES[measure]}", fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def accuracy_curve(table: pd.DataFrame, variants: Sequence[str], chance: float) -> Figure:
    """Test accuracy against gradient steps, with the chance level."""
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    _lines(ax, table[table["measure"] == "test_acc"], variants)
    ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
    _steps_axis(ax)
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def oip_strip(
    images: np.ndarray, steps: Sequence[int], maps: Sequence[int], top_classes: np.ndarray, title: str
) -> Figure:
    """Rows: the tracked maps; columns: checkpoints. Each tile is the map's OIP at that step
    (linearly scaled), titled with the class of the map's top image at that step.
    ``images``: ``(steps, maps, C, H, W)``; ``top_classes``: ``(steps, maps)`` class names."""
    n_steps, n_maps = len(steps), len(maps)
    fig, axes = plt.subplots(n_maps, n_steps, figsize=(0.9 * n_steps + 0.8, 0.95 * n_maps + 0.6), squeeze=False)
    for j in range(n_maps):
        for i in range(n_steps):
            ax = axes[j][i]
            tile = plain(images[i, j])
            ax.imshow(tile, cmap=None if tile.ndim == 3 else "gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(str(top_classes[i, j]), fontsize=6, pad=1)
            if j == n_maps - 1:
                ax.set_xlabel(f"{steps[i]}", fontsize=6)
            if i == 0:
                ax.set_ylabel(f"map {maps[j]}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
