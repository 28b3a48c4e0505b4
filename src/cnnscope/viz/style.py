"""Small decisions shared by the paper figures: colour limits, empty bins, crops, error bars and
layouts sized to their images. Pure functions on arrays, so each decision is tested on its own.

(Lives beside :mod:`cnnscope.viz.common` rather than in it: that module is a dependency of the
training stage, and changing it would retrain every network.)
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

#: Colour of the input pixels wherever they are drawn beside layers (never one of the variants' tab colours).
INPUT_COLOUR = "black"
#: One colour per variant in every figure of every report (issue 25): ``benchmark`` is blue in the
#: default study and in CIFAR-10 alike, whatever the other variants are or their order.
VARIANT_COLOURS = {
    "benchmark": "tab:blue",
    "dummy": "tab:orange",
    "sgd": "tab:green",
    "untrained": "tab:gray",
    "mlp": "tab:purple",
    "dummy_steps": "tab:brown",
}
#: Colours of the variants the map does not name, picked by a stable hash of the name.
OTHER_COLOURS = ("tab:red", "tab:pink", "tab:olive", "tab:cyan", "darkgoldenrod", "navy")


def variant_colour(name: str) -> str:
    """The colour of variant ``name`` in every figure (:data:`VARIANT_COLOURS`, else one of
    :data:`OTHER_COLOURS` by a hash of the name that does not change between runs)."""
    if name in VARIANT_COLOURS:
        return VARIANT_COLOURS[name]
    return OTHER_COLOURS[zlib.crc32(name.encode()) % len(OTHER_COLOURS)]


#: A figure of maps switches to one colour scale per row when its quietest row's largest value is
#: below this share of the loudest row's: on a shared scale that row would read as silent.
ROW_SCALE_RATIO = 0.2


def per_row_scale(rows: Iterable[np.ndarray]) -> bool:
    """Whether rows of maps need one colour scale each (:data:`ROW_SCALE_RATIO`); an all-zero row
    is silent on any scale and does not count."""
    peaks = [float(np.nanmax(np.abs(r))) for r in rows if np.size(r)]
    live = [p for p in peaks if p > 0]
    return len(live) > 1 and min(live) < ROW_SCALE_RATIO * max(live)


#: Layers with at most this many values per image (logits, softmax) get no histogram: ten numbers
#: binned into 64 bins show nothing a table would not show better.
MIN_HISTOGRAM_VALUES = 10


def symmetric_limit(arrays: Iterable[np.ndarray]) -> float:
    """One bound ``b`` for a diverging colour scale ``[-b, b]`` shared by all ``arrays`` (1 when
    all are zero, so an all-zero panel still draws): panels on one scale compare by colour."""
    bound = max((float(np.nanmax(np.abs(a))) for a in arrays if np.size(a)), default=0.0)
    return bound or 1.0


def shared_range(arrays: Iterable[np.ndarray]) -> tuple[float, float]:
    """``(min, max)`` over all finite values of ``arrays`` (``(0, 1)`` when there are none or all are equal)."""
    finite = [a[np.isfinite(a)] for a in (np.asarray(x, dtype=np.float64) for x in arrays)]
    values = [v for v in finite if v.size]
    if not values:
        return 0.0, 1.0
    lo, hi = min(float(v.min()) for v in values), max(float(v.max()) for v in values)
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def empty_as_nan(probabilities: np.ndarray) -> np.ndarray:
    """Bin heights with empty bins as NaN: a log-scaled step line then breaks there instead of
    dropping to an artificial floor, which drew a "comb" of spikes for sparse layers."""
    p = np.asarray(probabilities, dtype=np.float64)
    return np.where(p > 0, p, np.nan)


def clipped_errors(mean: np.ndarray, std: np.ndarray, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """``(2, N)`` lower/upper error-bar lengths of ``mean ± std`` clipped to ``[low, high]``: a
    probability's interval never reaches below 0 or above 1."""
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    lower = mean - np.clip(mean - std, low, high)
    upper = np.clip(mean + std, low, high) - mean
    return np.stack([np.maximum(lower, 0.0), np.maximum(upper, 0.0)])


def foreground_box(image: np.ndarray, margin: int = 1) -> tuple[slice, slice]:
    """Rows and columns of the smallest box holding every pixel that differs from the background
    (the most frequent value on the image's border), widened by ``margin`` pixels and clipped to
    the image; the whole image when nothing differs."""
    img = np.asarray(image)
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    values, counts = np.unique(border, return_counts=True)
    background = values[np.argmax(counts)]
    ys, xs = np.nonzero(img != background)
    if not len(ys):
        return slice(0, img.shape[0]), slice(0, img.shape[1])
    h, w = img.shape[:2]
    return (
        slice(max(0, int(ys.min()) - margin), min(h, int(ys.max()) + 1 + margin)),
        slice(max(0, int(xs.min()) - margin), min(w, int(xs.max()) + 1 + margin)),
    )


def kind_columns(layers: Sequence[str], kinds: Mapping[str, str]) -> dict[str, list[str]]:
    """Layers grouped by kind (``Conv2d``, ``ReLU``, …) in order of first appearance, each group
    in network order: plotting one group per panel keeps a line from zigzagging between a conv
    output and the ReLU after it, which live on different scales."""
    out: dict[str, list[str]] = {}
    for layer in layers:
        out.setdefault(kinds.get(layer, "other"), []).append(layer)
    return out


def image_figure(
    width_px: int,
    height_px: int,
    inch_per_px: float,
    margins: tuple[float, float, float, float],
    colorbar: bool = True,
) -> tuple[Figure, Axes, Axes | None]:
    """A figure whose single image axes is exactly ``width_px × height_px`` image pixels at
    ``inch_per_px`` (square pixels, no empty margins); ``margins`` are (left, right, bottom, top)
    inches for labels, and a thin colour-bar axes sits right of the image when asked."""
    left, right, bottom, top = margins
    w_in, h_in = width_px * inch_per_px, height_px * inch_per_px
    bar = 0.55 if colorbar else 0.0
    fig_w, fig_h = left + w_in + bar + right, bottom + h_in + top
    fig = plt.figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((left / fig_w, bottom / fig_h, w_in / fig_w, h_in / fig_h))
    cax = None
    if colorbar:
        cax = fig.add_axes(((left + w_in + 0.12) / fig_w, bottom / fig_h, 0.12 / fig_w, h_in / fig_h))
    return fig, ax, cax
