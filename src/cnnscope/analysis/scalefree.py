"""Scale-free statistics of one layer's activations: comparable between networks of any scale.

The histogram entropy on bins shared by all variants (:mod:`.histograms`) measures scale as much as
shape: a network whose activations are ten times smaller puts them into fewer of the shared bins
and "has less entropy" without being any more selective. The measures here do not move when a
layer's output is multiplied by a constant ``c > 0``:

* **Normalised entropy** (bits): each (network, layer) is first divided by its own *robust scale*
  ``s`` — the ``quantile`` (default 99 %) of its non-zero absolute values over the evaluation
  images — and then binned on ``bins`` equal-width edges shared by all networks over the range of
  the *normalised* values. Multiplying a layer by ``c`` multiplies ``s`` by ``c`` and leaves the
  normalised values, hence the histogram, unchanged. (Binning ``x`` on edges ``e · s`` is the same
  as binning ``x / s`` on ``e``, so no scaled copy is made.)
* **Hoyer sparsity** of each image's activation vector ``x`` with ``n`` entries,
  ``(√n − ‖x‖₁/‖x‖₂) / (√n − 1)`` in [0, 1]: 0 when all entries are equal in magnitude, 1 when one
  entry is non-zero (Hoyer, "Non-negative matrix factorization with sparseness constraints",
  JMLR 2004). NaN for an all-zero image (no direction).
* **Kurtosis** of each image's values, the fourth standardised moment ``E[(x−μ)⁴] / σ⁴`` (Pearson's
  definition: 3 for a Gaussian, large for heavy tails; NaN for a constant image).

The exact-zero fraction (``sparsity`` in :mod:`.histograms`) is scale-free already and stays.
Arrays are streamed in chunks from the memory-mapped files, so memory is flat in the number of images.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from cnnscope.analysis.histograms import _chunks, image_histograms, shared_edges
from cnnscope.analysis.information import entropy

#: At most this many values (an even stride through the layer) set the robust scale.
SCALE_SAMPLE = 1 << 20
K = TypeVar("K", bound=Hashable)


@dataclass
class ScaleFree:
    """Scale-free statistics of one (network, layer) over a group of images.

    ``entropy_bits`` is the entropy of the pooled normalised histogram; the per-image arrays
    (``(N,)``) feed image-level intervals.
    """

    scale: float
    entropy_bits: float
    image_entropy_bits: np.ndarray
    hoyer: np.ndarray
    kurtosis: np.ndarray


def robust_scale(array: np.ndarray, quantile: float = 0.99) -> float:
    """The ``quantile`` of the non-zero ``|x|`` of ``array`` (1.0 when every value is zero).

    Non-zero values only: after a ReLU most values may be exactly 0, and the scale must describe
    the values that are there. A fixed stride through at most :data:`SCALE_SAMPLE` values keeps it
    deterministic and cheap on large layers.
    """
    flat = np.asarray(array).reshape(-1)
    if not np.issubdtype(flat.dtype, np.floating):
        flat = flat.astype(np.float64)  # |x| of a signed integer can overflow
    stride = max(1, len(flat) // SCALE_SAMPLE)
    # |x| in the array's own precision (exact), widened only once the zeros are gone: the same
    # values as widening first, in half the temporaries (the trajectory's peak memory, issue 26)
    magnitudes = np.abs(flat[::stride])
    nonzero = magnitudes[magnitudes > 0]
    del magnitudes
    sample = nonzero.astype(np.float64)
    del nonzero
    return float(np.quantile(sample, quantile, overwrite_input=True)) if len(sample) else 1.0


def _hoyer_kurtosis(x32: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Hoyer sparsity and kurtosis of each row of a ``(rows, n)`` chunk."""
    x = x32.double()
    n = x.shape[1]
    l1, l2 = x.abs().sum(dim=1), x.norm(dim=1)
    ratio = torch.where(l2 > 0, l1 / l2.clamp_min(1e-300), torch.nan)
    hoyer = (np.sqrt(n) - ratio) / (np.sqrt(n) - 1) if n > 1 else torch.zeros_like(ratio)
    centred = x - x.mean(dim=1, keepdim=True)
    m2, m4 = centred.square().mean(dim=1), centred.square().square().mean(dim=1)
    return hoyer.numpy(), torch.where(m2 > 0, m4 / m2.square().clamp_min(1e-300), torch.nan).numpy()


def one_pass(array: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Smallest and largest value, per-image Hoyer sparsity and kurtosis, in one pass over ``array``."""
    low, high, hoyer, kurt = np.inf, -np.inf, [], []
    for x in _chunks(array):
        lo, hi = torch.aminmax(x)
        low, high = min(low, float(lo)), max(high, float(hi))
        h, k = _hoyer_kurtosis(x)
        hoyer.append(h)
        kurt.append(k)
    empty = np.zeros(0)
    return low, high, (np.concatenate(hoyer) if hoyer else empty), (np.concatenate(kurt) if kurt else empty)


def hoyer_kurtosis(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image Hoyer sparsity and kurtosis of ``array`` ``(N, ...)``, each ``(N,)``."""
    _, _, hoyer, kurt = one_pass(array)
    return hoyer, kurt


def scale_free_stats(arrays: Mapping[K, np.ndarray], bins: int, quantile: float) -> dict[K, ScaleFree]:
    """:class:`ScaleFree` of one layer for every network in ``arrays`` (key → ``(N, ...)`` array).

    All networks share one set of normalised edges (the range of ``x / s`` over every network), so
    their normalised histograms compare bin by bin.
    """
    passes = {key: (robust_scale(a, quantile), one_pass(a)) for key, a in arrays.items()}
    return scale_free_from_passes(arrays, passes, bins)


Pass = tuple[float, tuple[float, float, np.ndarray, np.ndarray]]


def scale_free_from_passes(
    arrays: Mapping[K, np.ndarray] | None,
    passes: Mapping[K, Pass],
    bins: int,
    counts: Mapping[K, np.ndarray] | None = None,
) -> dict[K, ScaleFree]:
    """:func:`scale_free_stats` from each network's robust scale and :func:`one_pass`, computed
    beforehand on its own (the ``measures@`` stages): only the histograms on the shared
    normalised edges need every network's range, so only they are left to do here. ``counts``:
    those histograms, made beforehand on these edges (the ``histograms@`` stages); then
    ``arrays`` is not read."""
    scales = {key: p[0] for key, p in passes.items()}
    lows = [p[1][0] / scales[key] for key, p in passes.items() if np.isfinite(p[1][0])]
    highs = [p[1][1] / scales[key] for key, p in passes.items() if np.isfinite(p[1][1])]
    edges = shared_edges(min(lows, default=0.0), max(highs, default=1.0), bins)
    out = {}
    for key in passes:
        if counts is not None:
            binned = np.asarray(counts[key])
        else:
            assert arrays is not None, "scale_free_from_passes needs the arrays or their counts"
            binned = image_histograms(arrays[key], edges * scales[key])
        _, _, hoyer, kurt = passes[key][1]
        out[key] = ScaleFree(
            scale=scales[key],
            entropy_bits=float(entropy(binned.sum(axis=0))),
            image_entropy_bits=entropy(binned),
            hoyer=hoyer,
            kurtosis=kurt,
        )
    return out
