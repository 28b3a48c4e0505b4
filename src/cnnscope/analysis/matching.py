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

import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment

from cnnscope.errors import CnnscopeError

CHUNK = 128


class MatchingError(CnnscopeError, ValueError):
    """A layer cannot be matched map by map (no maps, or different shapes)."""


def _as_maps(x: torch.Tensor) -> torch.Tensor:
    """``(n, C, H, W)`` chunk → ``(n·H·W, C)`` rows of map values per image and position."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).double()


def map_correlations(a: np.ndarray, b: np.ndarray, layer: str = "?") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlation matrix ``(C_a, C_b)`` of the maps of ``a`` and ``b`` (both ``(N, C, H, W)``, the
    same images), and the dead-map flags of each side."""
    if a.ndim != 4 or b.ndim != 4:
        raise MatchingError(
            f"layer {layer!r} has no feature maps (shape {a.shape[1:]}): map matching needs a "
            "convolutional layer (N, C, H, W); remove it from compare.matching_layers"
        )
    if a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
        raise MatchingError(
            f"layer {layer!r}: shapes {a.shape} and {b.shape} differ; match networks of one architecture"
        )
    ca, cb = a.shape[1], b.shape[1]
    s_a, s_b = torch.zeros(ca, dtype=torch.float64), torch.zeros(cb, dtype=torch.float64)
    q_a, q_b = torch.zeros(ca, dtype=torch.float64), torch.zeros(cb, dtype=torch.float64)
    s_ab = torch.zeros(ca, cb, dtype=torch.float64)
    rows = 0
    for start in range(0, len(a), CHUNK):
        xa = _as_maps(torch.from_numpy(np.array(a[start : start + CHUNK], dtype=np.float32)))
        xb = _as_maps(torch.from_numpy(np.array(b[start : start + CHUNK], dtype=np.float32)))
        s_a += xa.sum(dim=0)
        s_b += xb.sum(dim=0)
        q_a += xa.square().sum(dim=0)
        q_b += xb.square().sum(dim=0)
        s_ab += xa.T @ xb
        rows += len(xa)
    mean_a, mean_b = s_a / rows, s_b / rows
    cov = s_ab / rows - mean_a[:, None] * mean_b[None]
    var_a = (q_a / rows - mean_a.square()).clamp_min(0)
    var_b = (q_b / rows - mean_b.square()).clamp_min(0)
    dead_a, dead_b = var_a <= 1e-12 * (1 + mean_a.square()), var_b <= 1e-12 * (1 + mean_b.square())
    denom = (var_a[:, None] * var_b[None]).sqrt()
    corr = torch.where(dead_a[:, None] | dead_b[None], 0.0, cov / denom.clamp_min(1e-300))
    return corr.clamp(-1, 1).numpy(), dead_a.numpy(), dead_b.numpy()


def match_maps(corr: np.ndarray, dead_a: np.ndarray | None = None, dead_b: np.ndarray | None = None) -> pd.DataFrame:
    """The one-to-one matching of maximal summed correlation, one row per map of A.

    Columns: ``map_a``, ``map_b`` (its match), ``matched_corr``, ``same_index_corr`` (``R[i, i]``,
    NaN when B has no map ``i``), ``best_corr`` (the best map of B for ``i`` regardless of the
    one-to-one constraint), ``dead_a``, ``dead_b``.
    """
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
