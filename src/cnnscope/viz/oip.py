"""OIP figures: the per-layer grid (each OIP twice, on one shared scale and contrast-enhanced, as
in the MNIST article), evolution series, a wavelength comparison and a per-node grid; :func:`render_oips` draws
them all for the ``oip`` stage and returns their index entries.

Functions take numpy arrays of standardised images ``(..., C, H, W)`` and numbers already
computed; display scaling (min–max, histogram equalisation) is the only processing here.
Dead maps are drawn with a red frame and the word "dead", never as a silent blank tile.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from cnnscope.oip import NodeOIPResult, OIPResult
from cnnscope.viz.common import save_figure
from cnnscope.viz.style import shared_range

PLAIN_CMAP = "viridis"
ENHANCED_CMAP = "gray"


def plain(image: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` → ``(H, W)`` or ``(H, W, 3)`` scaled linearly to [0, 1] (flat images → 0.5)."""
    img = np.moveaxis(np.asarray(image, dtype=np.float64), 0, -1)
    if img.shape[-1] == 1:
        img = img[..., 0]
    lo, hi = float(img.min()), float(img.max())
    return (img - lo) / (hi - lo) if hi > lo else np.full_like(img, 0.5)


def enhanced(image: np.ndarray) -> np.ndarray:
    """Histogram-equalised display: every grey level equally often, so faint structure shows."""
    img = plain(image)
    ranks = np.argsort(np.argsort(img.ravel(), kind="stable"), kind="stable")
    return (ranks / max(1, ranks.size - 1)).reshape(img.shape)


def _mosaic(tiles: list[np.ndarray], cols: int, pad: int = 1) -> np.ndarray:
    """Tiles of equal shape laid out row-major on a NaN-padded canvas (one imshow, fast; the
    padding is drawn white)."""
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, *tiles[0].shape[2:]), np.nan)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = tile
    return canvas


def _show(ax: plt.Axes, image: np.ndarray, cmap: str) -> None:
    if image.ndim == 3:
        image = np.nan_to_num(image, nan=1.0)
    colours = plt.get_cmap(cmap).with_extremes(bad="white")
    ax.imshow(image, cmap=None if image.ndim == 3 else colours, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


#: Frame and label colour of a live map whose ascent did not converge (dead maps are red).
UNCONVERGED = "darkorange"


def oip_grid(
    images: np.ndarray,
    labels: Sequence[str],
    dead: Sequence[bool],
    title: str,
    cols: int = 16,
    converged: Sequence[bool] | None = None,
) -> Figure:
    """All maps of a layer: the OIPs on one shared scale (input units; a colour bar for one channel,
    an RGB image's own colours otherwise) above, the same OIPs contrast-enhanced below; each tile's
    label (map index and activation) is printed beneath it, outside the image, at a size that stays
    legible. A dead map is framed red; a live map whose ascent did not converge (``converged``
    False) is framed orange, dashed, with its label in orange: its OIP is not a finished pattern."""
    n, c, h, w = images.shape
    cols = min(cols, n)
    inch = 0.7 / w  # a tile is 0.7 inch wide whatever the image size
    band = int(np.ceil(0.16 / inch))  # room for one line of 7-pt text under each tile
    lo, hi = shared_range([images])
    shared = [np.squeeze(np.moveaxis((img - lo) / (hi - lo), 0, -1)) for img in images]
    panels = [
        ("on one scale", _banded(shared, cols, band), PLAIN_CMAP),
        (
            "contrast-enhanced (each OIP equalised)",
            _banded([enhanced(img) for img in images], cols, band),
            ENHANCED_CMAP,
        ),
    ]
    ch, cw = panels[0][1].shape[:2]
    right, gap, top, bottom = 0.9, 0.3, 0.6, 0.1
    left = max(0.15, (5.0 - cw * inch - right) / 2)  # at least 5 inches wide, so the titles fit
    panel_h = ch * inch
    fig_w, fig_h = left + cw * inch + right, bottom + 2 * panel_h + gap + top
    fig = plt.figure(figsize=(fig_w, fig_h))
    for p, (kind, canvas, cmap) in enumerate(panels):
        y0 = bottom + (1 - p) * (panel_h + gap)
        ax = fig.add_axes((left / fig_w, y0 / fig_h, cw * inch / fig_w, panel_h / fig_h))
        _show(ax, canvas, cmap)
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_title(kind, fontsize=8)
        for i, (label, is_dead) in enumerate(zip(labels, dead, strict=True)):
            r, k = divmod(i, cols)
            x0, y0_px = k * (w + 1) + 0.5, 1 + r * (h + band) - 0.5
            unconverged = converged is not None and not converged[i] and not is_dead
            colour = "red" if is_dead else UNCONVERGED if unconverged else "black"
            ax.text(x0 + w / 2, y0_px + h + 1, label, fontsize=7, color=colour, ha="center", va="top")
            if is_dead:
                ax.add_patch(Rectangle((x0, y0_px), w, h, fill=False, edgecolor="red", linewidth=1.2))
                ax.text(x0 + w / 2, y0_px + h / 2, "dead", fontsize=7, color="red", ha="center", va="center")
            elif converged is not None and not converged[i]:
                ax.add_patch(Rectangle((x0, y0_px), w, h, fill=False, edgecolor=UNCONVERGED, linewidth=1.2, ls="--"))
        if p == 0 and c == 1:
            cax = fig.add_axes(((left + cw * inch + 0.12) / fig_w, y0 / fig_h, 0.12 / fig_w, panel_h / fig_h))
            bar = fig.colorbar(ScalarMappable(Normalize(lo, hi), cmap=PLAIN_CMAP), cax=cax)
            bar.set_label("input (standardised)", fontsize=7)
            cax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    return fig


def _banded(tiles: list[np.ndarray], cols: int, band: int) -> np.ndarray:
    """Like :func:`_mosaic` with ``band`` empty pixel rows under each tile row for its labels."""
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    canvas = np.full((rows * (h + band), cols * (w + 1) + 1, *tiles[0].shape[2:]), np.nan)
    for i, tile in enumerate(tiles):
        r, k = divmod(i, cols)
        canvas[1 + r * (h + band) : 1 + r * (h + band) + h, 1 + k * (w + 1) : 1 + k * (w + 1) + w] = tile
    return canvas


def evolution(
    snapshots: np.ndarray,
    steps: Sequence[int],
    values: np.ndarray,
    histories: np.ndarray,
    labels: Sequence[str],
) -> Figure:
    """Rows = maps; columns = the image at each snapshot step (objective in the title), then the
    objective over all steps. ``snapshots`` is ``(R, S, C, H, W)``, ``values`` ``(R, S)``,
    ``histories`` ``(R, T)``."""
    n_rows, n_snaps = snapshots.shape[:2]
    fig, axes = plt.subplots(
        n_rows,
        n_snaps + 1,
        figsize=(1.6 * (n_snaps + 1.6), 1.7 * n_rows),
        squeeze=False,
        gridspec_kw={"width_ratios": [1] * n_snaps + [1.6]},
    )
    for r in range(n_rows):
        for s in range(n_snaps):
            _show(axes[r, s], plain(snapshots[r, s]), PLAIN_CMAP)
            axes[r, s].set_title(f"step {steps[s]}: {values[r, s]:.3g}", fontsize=7)
        axes[r, 0].set_ylabel(labels[r], fontsize=8)
        curve = axes[r, -1]
        curve.plot(np.arange(histories.shape[1]), histories[r], color="C0")
        curve.set_xlabel("step", fontsize=7)
        curve.set_ylabel("objective", fontsize=7)
        curve.tick_params(labelsize=6)
    fig.tight_layout()
    return fig


def wavelength_comparison(
    starts: np.ndarray,
    finals: np.ndarray,
    activations: np.ndarray,
    wavelengths: Sequence[int],
    restarts: Sequence[int],
    title: str,
) -> Figure:
    """Rows = wavelengths; per restart the starting noise and the OIP it became (activation above).
    ``starts``/``finals`` are ``(W, K, C, H, W)``, ``activations`` ``(W, K)``."""
    n_wl, n_restarts = finals.shape[:2]
    fig, axes = plt.subplots(n_wl, 2 * n_restarts, figsize=(1.5 * 2 * n_restarts, 1.6 * n_wl + 0.5), squeeze=False)
    for i in range(n_wl):
        for k in range(n_restarts):
            _show(axes[i, 2 * k], plain(starts[i, k]), PLAIN_CMAP)
            axes[i, 2 * k].set_title(f"noise r{restarts[k]}", fontsize=7)
            _show(axes[i, 2 * k + 1], plain(finals[i, k]), PLAIN_CMAP)
            axes[i, 2 * k + 1].set_title(f"OIP {activations[i, k]:.3g}", fontsize=7)
        axes[i, 0].set_ylabel(f"λ = {wavelengths[i]} px", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


#: Nodes per side the per-node grid draws at most (an 8 × 8 map is drawn whole).
MAX_NODES_PER_SIDE = 8


def node_grid(images: np.ndarray, activations: np.ndarray, dead: np.ndarray, title: str) -> Figure:
    """One OIP per node, laid out like the map itself; plain (left) and enhanced (right).
    ``images`` is ``(Hn, Wn, C, H, W)``. A map wider than :data:`MAX_NODES_PER_SIDE` shows every
    ``step``-th node in each direction (said in the title): the OIPs of a 16 × 16 map of RGB tiles
    are noise-like pixels that PNG cannot compress, over a megabyte a figure — too much for a
    report kept in git; every node stays in ``oips.pt`` and the atlas."""
    step = -(-max(images.shape[:2]) // MAX_NODES_PER_SIDE)
    if step > 1:
        images, activations, dead = images[::step, ::step], activations[::step, ::step], dead[::step, ::step]
        title = f"{title} (one node in {step} along each axis)"
    hn, wn = images.shape[:2]
    tiles = [images[y, x] for y in range(hn) for x in range(wn)]
    fig, axes = plt.subplots(1, 2, figsize=(2 * max(3.0, wn * 1.1), max(3.0, hn * 1.1) + 0.6))
    h, w = images.shape[-2:]
    for ax, (kind, scale, cmap) in zip(
        axes, [("plain", plain, PLAIN_CMAP), ("contrast-enhanced", enhanced, ENHANCED_CMAP)], strict=True
    ):
        _show(ax, _mosaic([scale(t) for t in tiles], wn), cmap)
        ax.set_title(kind, fontsize=8)
        if kind != "plain":
            continue
        for y in range(hn):
            for x in range(wn):
                x0, y0 = 1 + x * (w + 1) - 0.5, 1 + y * (h + 1) - 0.5
                color = "red" if dead[y, x] else "white"
                label = "dead" if dead[y, x] else f"{activations[y, x]:.2g}"
                ax.text(x0 + 1, y0 + 3, label, fontsize=5, color=color, va="top")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def render_oips(
    out: Path,
    result: OIPResult,
    table: pd.DataFrame,
    nodes: NodeOIPResult | None,
    focus: int,
    evolution_maps: list[int],
    tag: str,
) -> list[dict[str, str]]:
    """Write the figures of one OIP run under ``out`` (the per-node grid only for a spatial
    layer) and return their index entries (``path`` relative to ``out``, ``caption``)."""
    best_restart, best_wl = result.best_candidates()
    maps = torch.arange(len(result.maps))
    best_images = result.images[maps, best_restart, best_wl]
    labels = [f"{m}: {a:.2g}" for m, a in zip(table["map"], table["best_activation"], strict=True)]
    converged = table["converged"].tolist() if "converged" in table else None
    grid = oip_grid(best_images.numpy(), labels, table["dead"].tolist(), f"{tag} {result.layer}", converged=converged)
    save_figure(grid, out / "oip_grid.png")

    index = torch.as_tensor([result.maps.index(m) for m in evolution_maps], dtype=torch.long)
    steps = sorted(result.snapshots)
    snaps = torch.stack([result.snapshots[s][index, best_restart[index], best_wl[index]] for s in steps], dim=1)
    hist = result.history[:, index, best_restart[index], best_wl[index]].T
    series = evolution(snaps.numpy(), steps, hist[:, steps].numpy(), hist.numpy(), [f"map {m}" for m in evolution_maps])
    save_figure(series, out / "evolution.png")

    i = result.maps.index(focus)
    comparison = wavelength_comparison(
        result.start.transpose(0, 1).numpy(),
        result.images[i].transpose(0, 1).numpy(),
        result.final[i].T.numpy(),
        result.wavelengths,
        result.restarts,
        f"{tag} {result.layer} map {focus}",
    )
    save_figure(comparison, out / "wavelengths.png")

    scale = "colour bar" if best_images.shape[1] == 1 else "the image's own colours, no colour bar"
    live_unconverged = int((~table["converged"] & ~table["dead"]).sum()) if "converged" in table else 0
    unconverged = (
        f", {live_unconverged} live maps whose ascent did not converge framed orange (dashed, label in orange)"
        if converged
        else ""
    )
    entries = [
        {
            "path": "oip_grid.png",
            "caption": f"OIPs of all {len(result.maps)} maps of {result.layer} ({tag}), labelled map index: "
            f"activation; on one shared scale ({scale}) and contrast-enhanced; "
            f"{int(table['dead'].sum())} dead maps framed red{unconverged}.",
        },
        {
            "path": "evolution.png",
            "caption": f"Evolution of the OIPs of maps {evolution_maps} ({tag}) at steps "
            f"{steps}, with the objective over all steps.",
        },
        {
            "path": "wavelengths.png",
            "caption": f"Map {focus} of {result.layer} ({tag}): starting noise and OIP per "
            f"wavelength {result.wavelengths} and noise restart.",
        },
    ]
    if nodes is not None:
        title = f"{tag} {result.layer} map {focus} per node"
        save_figure(
            node_grid(nodes.images.numpy(), nodes.activation.numpy(), nodes.dead.numpy(), title), out / "nodes.png"
        )
        caption = f"One OIP per node of map {focus} of {result.layer} ({tag}), laid out as the map."
        entries.append({"path": "nodes.png", "caption": caption})
    return entries
