"""Figures of activations: feature-map grids, histogram overlays, softmax bars, kernels, FCPs,
and the hand-made edge-filter walk-through. Every function takes arrays and returns a Figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator, NullLocator

CMAP = "viridis"


def mosaic(maps: np.ndarray, columns: int | None = None, pad: float = np.nan) -> np.ndarray:
    """Tile ``(C, H, W)`` maps into one 2-D image (``pad`` between tiles), for the FCP view."""
    c, h, w = maps.shape
    cols = columns or int(np.ceil(np.sqrt(c)))
    rows = int(np.ceil(c / cols))
    out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), pad, dtype=np.float64)
    for i in range(c):
        r, k = divmod(i, cols)
        out[r * (h + 1) : r * (h + 1) + h, k * (w + 1) : k * (w + 1) + w] = maps[i]
    return out


def feature_map_grid(maps: Mapping[str, np.ndarray], title: str, max_maps: int = 16) -> Figure:
    """Rows: variants, each the first ``max_maps`` maps ``(C, H, W)`` tiled left to right (one image
    per row keeps drawing fast). One colour scale for all variants."""
    names = list(maps)
    n = min(max_maps, min(m.shape[0] for m in maps.values()))
    tiles = {name: mosaic(m[:n], columns=n) for name, m in maps.items()}
    vmin = min(float(np.nanmin(t)) for t in tiles.values())
    vmax = max(float(np.nanmax(t)) for t in tiles.values())
    w = maps[names[0]].shape[-1]
    fig, axes = plt.subplots(len(names), 1, figsize=(0.75 * n + 1.8, 0.85 * len(names) + 0.8), squeeze=False)
    image = None
    for ax, name in zip(axes[:, 0], names, strict=True):
        image = ax.imshow(tiles[name], cmap=CMAP, vmin=vmin, vmax=vmax)
        ax.set_xticks(np.arange(n) * (w + 1) + (w - 1) / 2, [str(k) for k in range(n)], fontsize=6)
        ax.set_yticks([])
        ax.set_ylabel(name, fontsize=8)
    axes[-1, 0].set_xlabel("map", fontsize=7)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="activation (shared scale)")
    fig.suptitle(title, fontsize=9)
    return fig


def histogram_overlay(
    panels: Mapping[str, tuple[np.ndarray, Mapping[str, np.ndarray]]], title: str, columns: int = 4
) -> Figure:
    """One panel per layer: ``{layer: (edges, {series: probabilities})}``; log-scaled y."""
    names = list(panels)
    rows = int(np.ceil(len(names) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        edges, series = panels[name]
        centres = 0.5 * (edges[:-1] + edges[1:])
        for label, p in series.items():
            ax.step(centres, np.maximum(p, 1e-7), where="mid", label=label, linewidth=1)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(numticks=4))
        ax.yaxis.set_minor_locator(NullLocator())  # minor log ticks dominate drawing time
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    handles: dict[str, Artist] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="upper right", fontsize=7, ncol=min(len(handles), 6))
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.88, wspace=0.3, hspace=0.5)
    return fig


def softmax_bars(
    probs: Mapping[str, tuple[np.ndarray, np.ndarray]], classes: Sequence[str], true_class: int, title: str
) -> Figure:
    """One panel per variant: class probabilities (mean over seeds, std as error bars)."""
    names = list(probs)
    fig, axes = plt.subplots(1, len(names), figsize=(2.8 * len(names), 2.6), squeeze=False, sharey=True)
    x = np.arange(len(classes))
    for ax, name in zip(axes[0], names, strict=True):
        mean, std = probs[name]
        colours = ["tab:green" if k == true_class else "tab:blue" for k in x]
        ax.bar(x, mean, yerr=std, color=colours, capsize=2)
        ax.set_xticks(x, list(classes), rotation=90, fontsize=6)
        ax.set_title(name, fontsize=8)
        ax.set_ylim(0, 1)
    axes[0, 0].set_ylabel("probability")
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.2, top=0.78, wspace=0.3)
    return fig


def kernel_grid(weights: np.ndarray, title: str, max_kernels: int = 64) -> Figure:
    """Learned first-layer kernels ``(O, I, k, k)``: input channels averaged, a symmetric colour scale."""
    k = weights.mean(axis=1)[:max_kernels]
    bound = float(np.abs(k).max()) or 1.0
    tile = mosaic(k, columns=min(len(k), 8))
    fig, ax = plt.subplots(
        figsize=(0.45 * tile.shape[1] / (k.shape[-1] + 1) * 2 + 1.2, 0.9 * tile.shape[0] / (k.shape[-1] + 1) + 0.8)
    )
    image = ax.imshow(tile, cmap="RdBu_r", vmin=-bound, vmax=bound)
    ax.axis("off")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=9)
    return fig


def fcp_grid(maps: Mapping[str, np.ndarray], common: np.ndarray, title: str) -> Figure:
    """Maps ``(C, H, W)`` of several images of one class side by side (mosaics, one colour scale);
    red dots mark the nodes active in all of them (``common``, a ``(C, H, W)`` mask)."""
    names = list(maps)
    tiles = {name: mosaic(m) for name, m in maps.items()}
    marks = mosaic(common.astype(np.float64), pad=0.0)
    vmax = max(float(np.nanmax(t)) for t in tiles.values()) or 1.0
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.6), squeeze=False)
    ys, xs = np.nonzero(marks > 0)
    for ax, name in zip(axes[0], names, strict=True):
        ax.imshow(tiles[name], cmap="gray_r", vmin=0, vmax=vmax)
        ax.scatter(xs, ys, s=2, c="red", marker="o", linewidths=0)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{title} — red: active in all {len(names)} ({int(common.sum())} nodes)", fontsize=9)
    return fig


def class_mean_grid(means: np.ndarray, classes: Sequence[str], title: str) -> Figure:
    """Class-mean activation patterns ``(K, C, H, W)`` as mosaics, one colour scale."""
    tiles = [mosaic(m) for m in means]
    vmax = max(float(np.nanmax(t)) if np.isfinite(t).any() else 0.0 for t in tiles) or 1.0
    cols = min(5, len(tiles))
    rows = int(np.ceil(len(tiles) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, tile, name in zip(axes.flat, tiles, classes, strict=False):
        ax.imshow(tile, cmap="gray_r", vmin=0, vmax=vmax)
        ax.set_title(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig


def edge_filter_figure(image: np.ndarray, stages: Mapping[str, Mapping[str, np.ndarray]], title: str) -> Figure:
    """Rows: fixed kernels; columns: input, kernel, convolution, ReLU, 2×2 max-pool."""
    cols = ["input", "kernel", "conv", "relu", "pool"]
    fig, axes = plt.subplots(len(stages), len(cols), figsize=(2.0 * len(cols), 2.0 * len(stages)), squeeze=False)
    for r, (name, stage) in enumerate(stages.items()):
        for c, col in enumerate(cols):
            ax = axes[r, c]
            if col == "input":
                ax.imshow(image, cmap="gray", vmin=0, vmax=255)
            elif col == "kernel":
                bound = float(np.abs(stage["kernel"]).max()) or 1.0
                ax.imshow(stage["kernel"], cmap="RdBu_r", vmin=-bound, vmax=bound)
                for (y, x), v in np.ndenumerate(stage["kernel"]):
                    ax.text(x, y, f"{v:g}", ha="center", va="center", fontsize=7)
            else:
                ax.imshow(stage[col], cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col, fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.88, wspace=0.3, hspace=0.5)
    return fig


def pixel_values_figure(image: np.ndarray, title: str) -> Figure:
    """A grey image ``(H, W)`` (uint8) with each pixel's value written in its cell."""
    h, w = image.shape
    fig, ax = plt.subplots(figsize=(0.33 * w, 0.33 * h))
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    for (y, x), v in np.ndenumerate(image):
        ax.text(x, y, str(int(v)), ha="center", va="center", fontsize=4, color="red" if v < 128 else "black")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    return fig


def layer_profile(
    series: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]], layers: Sequence[str], title: str
) -> Figure:
    """Panels of per-layer quantities: ``{quantity: {variant: (mean, std)}}`` with error bars over seeds."""
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.2), squeeze=False)
    x = np.arange(len(layers))
    for ax, (quantity, by_variant) in zip(axes[0], series.items(), strict=True):
        for variant, (mean, std) in by_variant.items():
            ax.errorbar(x, mean, yerr=std, label=variant, marker="o", markersize=3, capsize=2, linewidth=1)
        ax.set_xticks(x, list(layers), rotation=90, fontsize=7)
        ax.set_title(quantity, fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.25, top=0.85, wspace=0.3)
    return fig
