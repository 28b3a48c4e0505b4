"""Class patterns of feature maps (FCPs, the MNIST article) and class similarity of activations.

* **Common active nodes** of a group of images of one class: the nodes (map, row, column) of the
  deepest convolution whose post-ReLU activation is > 0 in *every* image of the group; their
  count, the count active in *any* image, and the Jaccard overlap ``|∩| / |∪|`` of the active sets.
* **Class-mean pattern**: the mean activation per node over the evaluation images of a class.
* **Within- vs between-class similarity**: mean cosine similarity of flattened activations over
  all pairs of distinct images of the same class, and over all pairs of different classes.
  A representation that groups classes has ``within > between``; ``separation = within − between``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def common_active(maps: np.ndarray) -> dict[str, Any]:
    """Active-node overlap of ``maps`` ``(k, C, H, W)`` (k ≥ 1 images of one class)."""
    active = np.asarray(maps) > 0
    all_ = active.all(axis=0)
    any_ = active.any(axis=0)
    union = int(any_.sum())
    return {
        "mask": all_,
        "active_all": int(all_.sum()),
        "active_any": union,
        "jaccard": float(all_.sum() / union) if union else float("nan"),
    }


def class_means(array: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean activation per class, ``(num_classes, *shape)`` (NaN for a class with no images)."""
    labels = np.asarray(labels)
    out = np.full((num_classes, *array.shape[1:]), np.nan, dtype=np.float64)
    for k in range(num_classes):
        idx = np.flatnonzero(labels == k)
        if len(idx):
            out[k] = np.asarray(array[idx], dtype=np.float64).mean(axis=0)
    return out


def class_similarity(array: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean within-class and between-class cosine similarity of flattened activations.

    Uses ``Σ_{i≠j∈S} u_i·u_j = ‖Σ_{i∈S} u_i‖² − |S|`` for unit vectors ``u``, so it costs one pass
    over the data instead of an ``N × N`` matrix. All-zero activation vectors (no direction) are
    left out.
    """
    x = torch.from_numpy(np.array(array, dtype=np.float32).reshape(len(array), -1))  # a copy: memmaps are read-only
    norms = x.norm(dim=1)
    keep = norms > 0
    u = x[keep] / norms[keep].unsqueeze(1)
    y = torch.as_tensor(np.asarray(labels))[keep]
    n = len(u)
    # class sums of unit vectors; their squared norms in float64 (the ``− |S|`` cancels most of them)
    classes = torch.unique(y)
    sums = torch.stack([u[y == k].sum(dim=0) for k in classes]).double()
    sizes = torch.stack([(y == k).sum() for k in classes]).double()
    total_pairs = n * (n - 1)
    total_sum = float(sums.sum(dim=0).square().sum()) - n
    within_sum = float((sums.square().sum(dim=1) - sizes).sum())
    within_pairs = int((sizes * (sizes - 1)).sum())
    between_pairs = total_pairs - within_pairs
    within = within_sum / within_pairs if within_pairs else float("nan")
    between = (total_sum - within_sum) / between_pairs if between_pairs else float("nan")
    return {"within": within, "between": between, "separation": within - between}
