"""Figures of activations: feature-map grids, histogram overlays, softmax bars, kernels, FCPs,
and the hand-made edge-filter walk-through. Every function takes arrays and returns a Figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator, NullLocator

from cnnscope.viz.style import (
    INPUT_COLOUR,
    clipped_errors,
    empty_as_nan,
    foreground_box,
    image_figure,
    kind_columns,
    per_row_scale,
    shared_range,
    symmetric_limit,
    variant_colour,
)

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


def feature_map_figure(maps: Mapping[str, Mapping[str, np.ndarray]], title: str, max_maps: int) -> Figure:
    """One layer, every probe: ``{probe: {variant: (C, H, W)}}`` drawn as one image whose rows are
    the probes (a wider gap between probes) and, within a probe, the variants; columns are the first
    ``max_maps`` maps, numbered below. Square pixels, no empty margins, one colour scale and colour
    bar for the whole figure, so maps compare across probes and variants — unless a shared scale
    would make a whole row look silent (:func:`per_row_scale`): then each row is divided by its own
    largest value, written beside its label, and the colour bar reads "÷ row maximum"."""
    probes = list(maps)
    variants = list(maps[probes[0]])
    stacks = [maps[p][v] for p in probes for v in variants]
    n = min(max_maps, min(m.shape[0] for m in stacks))
    h, w = stacks[0].shape[-2:]
    gap, probe_gap = max(1, w // 14), max(2, h // 5)
    rows, tops = [], []
    y = 0
    for i, _ in enumerate(probes):
        for _ in variants:
            tops.append(y)
            y += h + gap
        y += probe_gap - gap if i < len(probes) - 1 else -gap
    canvas = np.full((y, n * (w + gap) - gap), np.nan)
    for top, stack in zip(tops, stacks, strict=True):
        for k in range(n):
            canvas[top : top + h, k * (w + gap) : k * (w + gap) + w] = stack[k]
        rows.append(top + (h - 1) / 2)
    labels = [f"{p} · {v}" if len(variants) > 1 else p for p in probes for v in variants]
    if per_row_scale([m[:n] for m in stacks]):
        peaks = [float(np.nanmax(np.abs(m[:n]))) or 1.0 for m in stacks]
        for top, peak in zip(tops, peaks, strict=True):
            canvas[top : top + h] /= peak
        labels = [f"{label} (max {peak:.3g})" for label, peak in zip(labels, peaks, strict=True)]
        lo, hi, bar = min(0.0, float(np.nanmin(canvas))), 1.0, "activation ÷ row maximum"
    else:
        (lo, hi), bar = shared_range([m[:n] for m in stacks]), "activation"
    left = 0.25 + 0.065 * max(len(label) for label in labels)
    fig, ax, cax = image_figure(canvas.shape[1], canvas.shape[0], 0.5 / w, (left, 0.9, 0.5, 0.35))
    cmap = plt.get_cmap(CMAP).with_extremes(bad="white")
    image = ax.imshow(canvas, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_xticks(np.arange(n) * (w + gap) + (w - 1) / 2, [str(k) for k in range(n)], fontsize=7)
    ax.set_yticks(rows, labels, fontsize=7)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_xlabel("map index", fontsize=7, labelpad=1)
    assert cax is not None
    fig.colorbar(image, cax=cax).set_label(bar, fontsize=7)
    cax.tick_params(labelsize=6)
    ax.set_title(title, fontsize=9)
    return fig


def histogram_overlay(
    panels: Mapping[str, tuple[np.ndarray, Mapping[str, np.ndarray]]], title: str, columns: int = 4
) -> Figure:
    """One panel per layer: ``{layer: (edges, {series: probabilities})}``; log-scaled y. A series
    named ``input`` is drawn in :data:`INPUT_COLOUR`, each variant in its own colour in every
    figure (:func:`variant_colour`). Empty bins are not drawn (:func:`empty_as_nan`)."""
    names = list(panels)
    columns = min(columns, len(names))
    rows = int(np.ceil(len(names) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.5 * rows + 0.6), squeeze=False)
    colours: dict[str, str] = {}
    for ax, name in zip(axes.flat, names, strict=False):
        edges, series = panels[name]
        for label, p in series.items():
            if label not in colours:
                colours[label] = INPUT_COLOUR if label == "input" else variant_colour(label)
            heights = empty_as_nan(p)
            ax.step(edges, np.append(heights, heights[-1]), where="post", label=label, color=colours[label], lw=1)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(numticks=4))
        ax.yaxis.set_minor_locator(NullLocator())  # minor log ticks dominate drawing time
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
    for i, ax in enumerate(axes.flat[: len(names)]):
        if i + columns >= len(names):  # the lowest panel of its column
            ax.set_xlabel("value", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("fraction of values", fontsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    handles: dict[str, Artist] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="upper right", fontsize=7, ncol=min(len(handles), 6))
    fig.suptitle(title, fontsize=9, x=0.02, ha="left")
    height = 2.5 * rows + 0.6  # inches: the margins below stay the same whatever the number of rows
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.5 / height, top=1 - 0.7 / height, wspace=0.3, hspace=0.55)
    return fig


def softmax_bars(
    probs: Mapping[str, tuple[np.ndarray, np.ndarray]], classes: Sequence[str], true_class: int, title: str
) -> Figure:
    """One panel per variant: class probabilities (mean over seeds, ± std clipped to [0, 1] as error bars)."""
    names = list(probs)
    fig, axes = plt.subplots(1, len(names), figsize=(2.8 * len(names), 2.6), squeeze=False, sharey=True)
    x = np.arange(len(classes))
    for ax, name in zip(axes[0], names, strict=True):
        mean, std = probs[name]
        colours = ["tab:green" if k == true_class else "tab:blue" for k in x]
        ax.bar(x, mean, yerr=clipped_errors(mean, std), color=colours, capsize=2)
        ax.set_xticks(x, list(classes), rotation=90, fontsize=6)
        ax.set_title(name, fontsize=8)
        ax.set_ylim(0, 1)
    axes[0, 0].set_ylabel("probability")
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.2, top=0.78, wspace=0.3)
    return fig


def kernel_change_figure(deltas: Mapping[str, np.ndarray], title: str, columns: int = 16) -> Figure:
    """First-layer kernels ``(O, I, k, k)`` after training minus before (input channels averaged),
    one block of rows per variant, on ONE symmetric colour scale (:func:`symmetric_limit`) with one
    colour bar: how far training moved each variant's filters compares by colour across variants."""
    names = list(deltas)
    tiles = {v: deltas[v].mean(axis=1) for v in names}
    bound = symmetric_limit(tiles.values())
    k = max(t.shape[-1] for t in tiles.values())
    cols = min(columns, max(len(t) for t in tiles.values()))
    blocks = [mosaic(t, columns=cols) for t in tiles.values()]
    width = max(b.shape[1] for b in blocks)
    canvas_rows, centres = [], []
    y = 0
    for block in blocks:
        padded = np.full((block.shape[0], width), np.nan)
        padded[:, : block.shape[1]] = block
        canvas_rows += [padded, np.full((k, width), np.nan)]
        centres.append(y + (block.shape[0] - 1) / 2)
        y += block.shape[0] + k
    canvas = np.concatenate(canvas_rows[:-1])
    left = 0.25 + 0.065 * max(len(v) for v in names)
    fig, ax, cax = image_figure(canvas.shape[1], canvas.shape[0], 0.42 / (k + 1), (left, 0.75, 0.15, 0.4))
    image = ax.imshow(canvas, cmap=plt.get_cmap("RdBu_r").with_extremes(bad="white"), vmin=-bound, vmax=bound)
    ax.set_xticks([])
    ax.set_yticks(centres, names, fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    assert cax is not None
    fig.colorbar(image, cax=cax).set_label("trained − initial weight", fontsize=7)
    cax.tick_params(labelsize=6)
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
    """A grey image ``(H, W)`` (uint8) cropped to its foreground (:func:`foreground_box`), each
    pixel's value written in its cell; axis ticks give the original row and column."""
    rows, cols = foreground_box(image)
    crop = image[rows, cols]
    h, w = crop.shape
    fig, ax = plt.subplots(figsize=(0.3 * w + 0.6, 0.3 * h + 0.7))
    ax.imshow(
        crop,
        cmap="gray",
        vmin=0,
        vmax=255,
        extent=(cols.start - 0.5, cols.stop - 0.5, rows.stop - 0.5, rows.start - 0.5),
    )
    for (y, x), v in np.ndenumerate(crop):
        colour = "white" if v < 128 else "black"
        ax.text(cols.start + x, rows.start + y, str(int(v)), ha="center", va="center", fontsize=5.5, color=colour)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(labelsize=6)
    ax.set_xlabel("column", fontsize=7)
    ax.set_ylabel("row", fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def layer_profile(
    series: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    layers: Sequence[str],
    kinds: Mapping[str, str],
    title: str,
) -> Figure:
    """Per-layer quantities ``{quantity: {variant: (mean, std)}}`` (values in ``layers`` order)
    with error bars over seeds: one row of panels per quantity, one column per layer kind
    (:func:`kind_columns`), x = the layers of that kind in network order. Rows share their y axis;
    a panel whose layers have no value (NaN) says so instead of drawing empty axes."""
    groups = kind_columns(layers, kinds)
    position = {layer: i for i, layer in enumerate(layers)}
    fig, axes = plt.subplots(
        len(series),
        len(groups),
        figsize=(1.2 + sum(1.0 + 0.45 * len(g) for g in groups.values()), 2.1 * len(series) + 0.8),
        squeeze=False,
        sharey="row",
        gridspec_kw={"width_ratios": [1.0 + 0.45 * len(g) for g in groups.values()]},
    )
    for r, (quantity, by_variant) in enumerate(series.items()):
        for c, (kind, members) in enumerate(groups.items()):
            ax = axes[r, c]
            idx = [position[m] for m in members]
            x = np.arange(len(members))
            if r == 0:
                ax.set_title(kind, fontsize=8)
            if all(np.isnan(np.asarray(mean, dtype=np.float64)[idx]).all() for mean, _ in by_variant.values()):
                ax.axis("off")  # no empty panel: the measure does not apply to this kind of layer
                ax.text(0.5, 0.5, f"not measured\non {kind}", ha="center", va="center", fontsize=7, color="grey",
                        transform=ax.transAxes)  # fmt: skip
                continue
            for variant, (mean, std) in by_variant.items():
                ax.errorbar(
                    x, np.asarray(mean)[idx], yerr=np.asarray(std)[idx], label=variant, color=variant_colour(variant),
                    marker="o", markersize=3, capsize=2, linewidth=1,
                )  # fmt: skip
            ax.set_xlim(-0.5, len(members) - 0.5)
            ax.set_xticks(x, members if r == len(series) - 1 else [], rotation=90, fontsize=7)
            ax.tick_params(labelsize=6)
            ax.grid(alpha=0.3)
        shown = [ax for ax in axes[r] if ax.axison]
        (shown or list(axes[r]))[0].set_ylabel(quantity, fontsize=8)
    handles, labels = next((h for h in (ax.get_legend_handles_labels() for ax in axes.flat) if h[0]), ([], []))
    fig.legend(handles, labels, loc="upper right", fontsize=7, ncol=max(1, len(labels)))
    fig.suptitle(title, fontsize=9, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (2.1 * len(series) + 0.8)))
    return fig
