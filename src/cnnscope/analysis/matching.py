"""Map matching across networks: which map of network B does each map of network A correspond to?

Two networks can learn the same features in a different order of their maps. For one layer of
two networks run on the same images, each map is a vector of its values over every image and
position; the **correlation matrix** ``R[i, j]`` is the Pearson correlation of map ``i`` of A with
map ``j`` of B over those images × positions (Li, Yosinski, Clune, Lipson & Hopcroft, "Convergent
Learning: Do different neural networks learn the same representations?", ICLR 2016). A
**one-to-one matching** maximises the summed correlation (the Hungarian algorithm,
``scipy.optimize.linear_sum_assignment``). The matched correlations are set against the
**same-index** correlations ``R[i, i]``: the variants of a study share their initialisation per
seed, so a map that kept its index through training scores as high on both.

The sums behind ``R`` are accumulated chunk by chunk in float64, so memory is flat in the number
of images. A map that is constant over all images and positions (a dead ReLU) has no correlation
with anything; its row and column count as 0 and it is flagged.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

import numpy as np
import pandas as pd
import torch

from cnnscope.errors import CnnscopeError

CHUNK = 128
K = TypeVar("K", bound=Hashable)


class MatchingError(CnnscopeError, ValueError):
    """A layer cannot be matched map by map (no maps, or different shapes)."""


def _as_maps(x: torch.Tensor) -> torch.Tensor:
    """``(n, C, H, W)`` chunk → ``(n·H·W, C)`` rows of map values per image and position."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _check(arrays: Mapping[K, np.ndarray], layer: str) -> None:
    shapes = {tuple(a.shape) for a in arrays.values()}
    first = next(iter(arrays.values()))
    if first.ndim != 4:
        raise MatchingError(
            f"layer {layer!r} has no feature maps (shape {first.shape[1:]}): map matching needs a "
            "convolutional layer (N, C, H, W); remove it from compare.matching_layers"
        )
    if len({(s[0], *s[2:]) for s in shapes}) != 1:
        raise MatchingError(f"layer {layer!r}: shapes {sorted(shapes)} differ; match networks of one architecture")


def all_map_correlations(
    arrays: Mapping[K, np.ndarray], layer: str = "?", order: np.ndarray | None = None
) -> tuple[dict[tuple[K, K], np.ndarray], dict[K, np.ndarray]]:
    """Correlation matrices of the maps of every pair of networks (``(a, b)`` with ``a`` before
    ``b`` in ``arrays``) over images × positions, and each network's dead-map flags.

    The maps of all networks are laid side by side, so one product per chunk gives every pair's
    cross sums. Each map is shifted by its mean over the first chunk before the float32 products
    (covariances do not change under a shift, and centred sums lose no precision to a large
    mean); the sums accumulate in float64. The chunks follow ``order`` (the sample's seeded image
    order, :mod:`.sample_order`), so the first chunk's shift is not one class's mean when the
    sample is stored sorted by class.
    """
    _check(arrays, layer)
    names = list(arrays)
    widths = [arrays[k].shape[1] for k in names]
    offsets = np.concatenate([[0], np.cumsum(widths)])
    n = len(next(iter(arrays.values())))
    total = int(offsets[-1])
    s1 = torch.zeros(total, dtype=torch.float64)
    s2 = torch.zeros(total, total, dtype=torch.float64)
    shift: torch.Tensor | None = None
    rows = 0
    positions = np.arange(n) if order is None else np.asarray(order)
    for start in range(0, n, CHUNK):
        chunk = np.sort(positions[start : start + CHUNK])
        x = torch.cat(
            [_as_maps(torch.from_numpy(np.array(arrays[k][chunk], dtype=np.float32))) for k in names],
            dim=1,
        )
        if shift is None:
            shift = x.mean(dim=0)
        x = x - shift
        s1 += x.sum(dim=0).double()
        s2 += (x.T @ x).double()
        rows += len(x)
    mean = s1 / rows
    cov = s2 / rows - torch.outer(mean, mean)
    var = cov.diagonal().clamp_min(0)
    scale = var.sqrt()
    dead = var <= 1e-12 * (1 + ((shift if shift is not None else 0) + mean).square())
    corr = torch.where(dead[:, None] | dead[None], 0.0, cov / torch.outer(scale, scale).clamp_min(1e-300))
    matrix = corr.clamp(-1, 1).numpy()
    blocks = {k: slice(int(offsets[i]), int(offsets[i + 1])) for i, k in enumerate(names)}
    pairs = {(a, b): matrix[blocks[a], blocks[b]] for i, a in enumerate(names) for b in names[i + 1 :]}
    return pairs, {k: dead.numpy()[blocks[k]] for k in names}


def map_correlations(a: np.ndarray, b: np.ndarray, layer: str = "?") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlation matrix ``(C_a, C_b)`` of the maps of ``a`` and ``b`` (both ``(N, C, H, W)``, the
    same images), and the dead-map flags of each side."""
    pairs, dead = all_map_correlations({0: a, 1: b}, layer)
    return pairs[0, 1], dead[0], dead[1]


#: The columns of :func:`match_maps`, in its order.
MATCH_COLUMNS = ("map_a", "map_b", "matched_corr", "same_index_corr", "best_corr", "dead_a", "dead_b")


def match_maps(corr: np.ndarray, dead_a: np.ndarray | None = None, dead_b: np.ndarray | None = None) -> pd.DataFrame:
    """The one-to-one matching of maximal summed correlation, one row per map of A.

    Columns: ``map_a``, ``map_b`` (its match), ``matched_corr``, ``same_index_corr`` (``R[i, i]``,
    NaN when B has no map ``i``), ``best_corr`` (the best map of B for ``i`` regardless of the
    one-to-one constraint), ``dead_a``, ``dead_b``.
    """
    # imported here: the measures and histograms stages import this module; compare matches
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(corr, maximize=True)
    n_b = corr.shape[1]
    same = [float(corr[i, i]) if i < n_b else float("nan") for i in rows]
    return pd.DataFrame(
        {
            "map_a": rows,
            "map_b": cols,
            "matched_corr": corr[rows, cols],
            "same_index_corr": same,
            "best_corr": corr[rows].max(axis=1),
            "dead_a": np.zeros(len(rows), bool) if dead_a is None else dead_a[rows],
            "dead_b": np.zeros(len(rows), bool) if dead_b is None else dead_b[cols],
        }
    )


def matching_summary(table: pd.DataFrame) -> dict[str, float]:
    """Means over the maps alive in both networks: matched, same-index and best correlation, and
    the fraction of maps whose match is their own index."""
    live = table[~table["dead_a"] & ~table["dead_b"]]
    return {
        "maps": len(table),
        "live_maps": len(live),
        "matched_corr": float(live["matched_corr"].mean()) if len(live) else float("nan"),
        "same_index_corr": float(live["same_index_corr"].mean()) if len(live) else float("nan"),
        "best_corr": float(live["best_corr"].mean()) if len(live) else float("nan"),
        "same_index_fraction": float((live["map_a"] == live["map_b"]).mean()) if len(live) else float("nan"),
    }
