"""The report's atlas figure: for the top maps of a layer, each network's OIP beside the dataset
exemplars that drive the matched map most (their receptive-field crops), variants side by side.

An OIP is read against its exemplars (Olah et al., Distill 2017); the normalised activation
(OIP ÷ top exemplar) above each OIP is comparable across networks, unlike the raw activation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cnnscope.viz.oip import plain


@dataclass
class FigureCell:
    """One network's view of one map: its OIP, top exemplar crops and normalised activation."""

    map: int
    #: ``(C, H, W)`` float (standardised OIP) or None when no OIP was computed.
    oip: np.ndarray | None
    #: ``(k, C, r, r)`` uint8 crops, best first.
    crops: np.ndarray
    ratio: float
    #: Drawn under the OIP, e.g. which map of this network was matched to the row's map.
    label: str = ""


def oip_beside_exemplars(
    networks: Sequence[str], rows: Sequence[Sequence[FigureCell]], row_labels: Sequence[str], title: str
) -> Figure:
    """A grid: one row per map, per network one OIP followed by its exemplar crops.

    ``rows[i][j]`` is network ``j``'s cell for row ``i``. A missing OIP is a blank tile labelled
    "no OIP"; a map with an OIP but silent on data (no ratio) shows "silent" in place of the ratio and
    "no exemplars" in place of its crops (the images it ranks first are arbitrary: every one gives zero).
    """
    n_ex = max(len(cell.crops) for row in rows for cell in row)
    per_net = 1 + n_ex
    cols = per_net * len(networks)
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(0.62 * cols + 0.6, 0.8 * len(rows) + 0.7), squeeze=False, gridspec_kw={"wspace": 0.08}
    )
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            base = j * per_net
            ax = axes[i, base]
            if cell.oip is not None:
                image = plain(cell.oip)
                ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
                label = "silent" if math.isnan(cell.ratio) else f"÷top {cell.ratio:.2g}"
                ax.set_title(label, fontsize=6, pad=2, color="#c00" if cell.ratio > 1 else "black")
            else:
                ax.text(0.5, 0.5, "no OIP", ha="center", va="center", fontsize=6)
            if cell.label:
                ax.set_xlabel(cell.label, fontsize=5, labelpad=1)
            if j == 0:
                ax.set_ylabel(row_labels[i], fontsize=7)
            silent = cell.oip is not None and math.isnan(cell.ratio)  # without an OIP, NaN says only that
            if silent:
                axes[i, base + 1].text(0, 0.5, "no exemplars (silent on data)", ha="left", va="center", fontsize=6,
                                       transform=axes[i, base + 1].transAxes)  # fmt: skip
            for e in range(n_ex):
                axe = axes[i, base + 1 + e]
                if silent:
                    axe.axis("off")
                elif e < len(cell.crops):
                    crop = np.moveaxis(cell.crops[e], 0, -1)
                    axe.imshow(crop[..., 0] if crop.shape[-1] == 1 else crop, cmap="gray", vmin=0, vmax=255)
                if i == 0 and e == 0:
                    axe.set_title("exemplars", fontsize=6, pad=2, loc="left")
        for j, name in enumerate(networks):
            axes[0, j * per_net].annotate(
                name, (0, 1.45), xycoords="axes fraction", fontsize=8, fontweight="bold", annotation_clip=False
            )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_linewidth(0.3)
    fig.suptitle(title, fontsize=9, y=1.0)
    return fig
