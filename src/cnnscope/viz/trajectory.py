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
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

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
    ``images``: ``(steps, maps, C, H, W)``; ``top_classes``: ``(steps, maps)`` class names.

    The tiles are one image on one axes (transparent gaps, a frame per tile), not an axes per
    tile: a study's strips have hundreds of tiles, and an axes each made them most of the report
    stage's time (benchmarks/README.md, "Per-stage fixed costs")."""
    n_steps, n_maps = len(steps), len(maps)
    height, width = plain(images[0, 0]).shape[:2]
    gap_x, gap_y = max(2, round(0.3 * width)), max(3, round(0.45 * height))  # gap_y: room for the titles
    pitch_x, pitch_y = width + gap_x, height + gap_y
    mosaic = np.zeros((n_maps * pitch_y, n_steps * pitch_x - gap_x, 4))
    frames = []
    fig, ax = plt.subplots(figsize=(0.9 * n_steps + 0.8, 0.95 * n_maps + 0.6))
    for j in range(n_maps):
        top = j * pitch_y + gap_y
        for i in range(n_steps):
            left, tile = i * pitch_x, plain(images[i, j])
            mosaic[top : top + height, left : left + width, :3] = tile if tile.ndim == 3 else tile[..., None]
            mosaic[top : top + height, left : left + width, 3] = 1.0
            frames.append(Rectangle((left - 0.5, top - 0.5), width, height))
            ax.text(left + width / 2, top - 1, str(top_classes[i, j]), fontsize=6, ha="center", va="bottom")
        ax.text(-2, top + height / 2, f"map {maps[j]}", fontsize=7, rotation=90, ha="right", va="center")
    for i, step in enumerate(steps):
        ax.text(i * pitch_x + width / 2, n_maps * pitch_y + 1, f"{step}", fontsize=6, ha="center", va="top")
    ax.imshow(mosaic, interpolation="nearest")
    ax.add_collection(PatchCollection(frames, facecolor="none", edgecolor="black", linewidth=0.8))
    ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
