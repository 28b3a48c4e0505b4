"""Per-image activation statistics and histograms on shared bin edges, streamed from disk.

Every variant and seed is binned on the *same* edges per layer — ``bins`` equal-width bins from
the smallest to the largest value that layer takes in any variant, seed, image group — so their
histograms are directly comparable bin by bin. Arrays are read in chunks from the memory-mapped
``.npy`` files, so memory does not grow with the number of images.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

CHUNK = 256


@dataclass
class ImageMoments:
    """Per-image summary of one layer's output (each image's activations flattened).

    * ``sparsity``: fraction of values that are exactly 0 (after a ReLU: units that are off);
    * ``mean``, ``std``: mean and population standard deviation of the values;
    * ``low``, ``high``: smallest and largest value (used to set shared bin edges).
    """

    sparsity: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    low: np.ndarray
    high: np.ndarray


def _chunks(array: np.ndarray, chunk: int = CHUNK) -> Iterator[torch.Tensor]:
    for start in range(0, len(array), chunk):
        block = np.array(array[start : start + chunk], dtype=np.float32)  # a copy: memmaps are read-only
        yield torch.from_numpy(block.reshape(len(block), -1))


def image_moments(array: np.ndarray) -> ImageMoments:
    """:class:`ImageMoments` of ``array`` (``(N, ...)``), computed chunk by chunk."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("sparsity", "mean", "std", "low", "high")}
    for x in _chunks(array):
        std, mean = torch.std_mean(x, dim=1, correction=0)
        parts["sparsity"].append((x == 0).sum(dim=1).double().numpy() / x.shape[1])
        parts["mean"].append(mean.double().numpy())
        parts["std"].append(std.double().numpy())
        low, high = torch.aminmax(x, dim=1)
        parts["low"].append(low.double().numpy())
        parts["high"].append(high.double().numpy())
    return ImageMoments(**{k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()})


def shared_edges(low: float, high: float, bins: int) -> np.ndarray:
    """``bins + 1`` equal-width edges over ``[low, high]`` (a constant layer gets a unit-wide range)."""
    if not high > low:
        high = low + 1.0
    return np.linspace(low, high, bins + 1)


def image_histograms(array: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts ``(N, bins)``: each image's values binned on ``edges`` (right edge inclusive).

    Values outside ``[edges[0], edges[-1]]`` are clipped into the first/last bin, which cannot
    happen when the edges come from the global range of the same data.
    """
    bins = len(edges) - 1
    low, high = float(edges[0]), float(edges[-1])
    scale = bins / (high - low)
    out = []
    for x in _chunks(array):
        idx = ((x - low) * scale).long().clamp_(0, bins - 1)
        idx += torch.arange(len(x)).unsqueeze(1) * bins
        out.append(torch.bincount(idx.flatten(), minlength=len(x) * bins).view(len(x), bins).numpy())
    return np.concatenate(out) if out else np.zeros((0, bins), dtype=np.int64)


def pooled_pixels(images_uint8: torch.Tensor) -> np.ndarray:
    """Input images as ``(N, C·H·W)`` float32 values in [0, 1]: the 'input layer' of the histograms."""
    return (images_uint8.reshape(len(images_uint8), -1).float() / 255).numpy()
