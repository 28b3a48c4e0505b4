"""Figures of the issue-13 measures: the CKA heatmap (layer × comparison)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cnnscope.viz.common import save_figure


def cka_heatmap(values: np.ndarray, layers: Sequence[str], comparisons: Sequence[str], title: str) -> Figure:
    """Heatmap of CKA ``values`` ``(layers, comparisons)`` with each cell's value written in it
    (NaN cells stay blank). Colour scale fixed to [0, 1] so figures of different studies compare."""
    height = 1.2 + 0.42 * len(layers)
    width = 2.5 + 0.75 * len(comparisons)
    fig, ax = plt.subplots(figsize=(width, height))
    image = ax.imshow(np.ma.masked_invalid(values), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(comparisons)), list(comparisons), rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(layers)), list(layers), fontsize=8)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                colour = "black" if values[i, j] > 0.6 else "white"
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04, label="debiased CKA")
    fig.tight_layout()
    return fig


def render_measures(cka_overview: pd.DataFrame, out_dir: str | Path) -> list[dict[str, Any]]:
    """Draw the CKA heatmap from the ``cka_overview`` table (layer, comparison, cka) under
    ``out_dir/figures``; returns its index entry (none without CKA rows)."""
    if cka_overview.empty:
        return []
    layers = list(dict.fromkeys(cka_overview["layer"]))
    comparisons = list(dict.fromkeys(cka_overview["comparison"]))
    grid = cka_overview.pivot_table(index="layer", columns="comparison", values="cka", sort=False)
    values = grid.reindex(index=layers, columns=comparisons).to_numpy(dtype=float)
    rel = "figures/cka_heatmap.png"
    save_figure(cka_heatmap(values, layers, comparisons, "debiased linear CKA (mean over seeds)"), Path(out_dir) / rel)
    caption = (
        "Debiased minibatch CKA per layer (rows) and comparison (columns): between variants at the same seed, "
        "seed-to-seed within a variant (the baseline), and each variant against the input pixels."
    )
    return [{"path": rel, "kind": "cka", "caption": caption}]
