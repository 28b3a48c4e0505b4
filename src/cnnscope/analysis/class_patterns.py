"""Class patterns with a contrast and a chance level (the MNIST article's FCP comparison).

The article counts the nodes of the deepest feature map that are active (> 0) in *all* of a group
of same-class images (three 4s) and in *none* of a few images of other classes (a 1 and a 2): the
**contrast count**. A count alone says nothing — a layer with many always-on nodes scores high for
any images — so it is set against two chance distributions drawn from the evaluation sample with
a fixed seed:

* **same-class** draws: ``k`` images of one random class, contrasted with one image of each of
  ``m`` other, distinct random classes — what the count is for a class in general;
* **mixed** draws: ``k`` images of ``k`` distinct random classes, contrasted with ``m`` images of
  yet other classes — what it is when the group shares no class.

A class pattern exists when same-class draws score above mixed ones, and the probe group's count
is read against both (its percentile in each).

**Active-set overlap** of pairs: the Jaccard index ``|A_i ∩ A_j| / |A_i ∪ A_j|`` of the active
nodes of two images, averaged over same-class pairs (*within*) and different-class pairs
(*between*), with a percentile bootstrap over images (image-level: it says nothing about other
training runs).
"""

from __future__ import annotations

import numpy as np
import torch

from cnnscope.errors import CnnscopeError


class ClassPatternError(CnnscopeError, ValueError):
    """The evaluation sample cannot give a chance level (too few images per class)."""


def active(maps: np.ndarray) -> np.ndarray:
    """``(N, D)`` boolean active-node patterns (value > 0) of ``maps`` ``(N, ...)``."""
    return (np.asarray(maps) > 0).reshape(len(maps), -1)


def contrast_count(group: np.ndarray, others: np.ndarray) -> int:
    """Nodes active in every row of ``group`` and in no row of ``others`` (both ``(·, D)`` boolean)."""
    inside = group.all(axis=0)
    if len(others):
        inside &= ~others.any(axis=0)
    return int(inside.sum())


def check_two_per_class(labels: np.ndarray) -> None:
    """The chance level and the within-class overlap need at least two evaluation images per class."""
    classes, counts = np.unique(np.asarray(labels), return_counts=True)
    if len(counts) == 0 or counts.min() < 2:
        short = [int(c) for c, n in zip(classes, counts, strict=True) if n < 2]
        raise ClassPatternError(
            f"the evaluation sample has fewer than two images of class(es) {short or 'any'}: the FCP chance "
            "level needs at least two per class; raise extract.eval_samples"
        )


def _check_classes(labels: np.ndarray, k: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    check_two_per_class(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < k + m:
        raise ClassPatternError(
            f"the FCP chance level draws {k} + {m} images of distinct classes, but the evaluation sample has "
            f"only {len(classes)} classes"
        )
    eligible = classes[counts >= k]
    if not len(eligible):
        raise ClassPatternError(
            f"no class has {k} images in the evaluation sample for same-class draws; raise extract.eval_samples"
        )
    return classes, eligible


def chance_counts(
    patterns: np.ndarray, labels: np.ndarray, k: int, m: int, draws: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """Contrast counts of ``draws`` random same-class and mixed draws (``k`` in the group, ``m``
    contrast images) from the evaluation ``patterns`` ``(N, D)`` with ``labels``."""
    labels = np.asarray(labels)
    classes, eligible = _check_classes(labels, k, m)
    members = {int(c): np.flatnonzero(labels == c) for c in classes}
    rng = np.random.default_rng(seed)
    same, mixed = np.empty(draws, np.int64), np.empty(draws, np.int64)
    for i in range(draws):
        c = int(rng.choice(eligible))
        group = rng.choice(members[c], size=k, replace=False)
        rest = rng.choice(classes[classes != c], size=m, replace=False)
        others = [rng.choice(members[int(r)]) for r in rest]
        same[i] = contrast_count(patterns[group], patterns[others])
        picked = rng.choice(classes, size=k + m, replace=False)
        chosen = [rng.choice(members[int(r)]) for r in picked]
        mixed[i] = contrast_count(patterns[chosen[:k]], patterns[chosen[k:]])
    return {"same_class": same, "mixed": mixed}


def percentile(value: float, sample: np.ndarray) -> float:
    """Share of ``sample`` at or below ``value`` (the value's percentile in the chance distribution)."""
    return float(np.mean(np.asarray(sample) <= value)) if len(sample) else float("nan")


def pair_jaccard(patterns: np.ndarray) -> np.ndarray:
    """``(N, N)`` Jaccard index of the active sets of every pair of images (1 when both are empty)."""
    a = torch.from_numpy(np.array(patterns, dtype=np.float32))
    inter = a @ a.T
    sizes = a.sum(dim=1)
    union = sizes[:, None] + sizes[None] - inter
    return torch.where(union > 0, inter / union.clamp_min(1), 1.0).double().numpy()


def overlap_within_between(
    patterns: np.ndarray, labels: np.ndarray, resamples: int, confidence: float, seed: int = 0
) -> dict[str, float]:
    """Mean Jaccard of same-class and different-class pairs, their difference, and a percentile
    bootstrap interval of the difference over images.

    A bootstrap replicate draws the images with replacement; image ``i`` drawn ``w_i`` times
    enters the pair sums with weight ``w_i w_j`` (pairs of an image with itself left out), so a
    replicate is two matrix products instead of an ``N × N`` re-indexing.
    """
    labels = np.asarray(labels)
    jac = pair_jaccard(patterns)
    n = len(labels)
    same = (labels[:, None] == labels[None]) & ~np.eye(n, dtype=bool)
    diff = labels[:, None] != labels[None]
    rng = np.random.default_rng(seed)
    weights = np.vstack([np.ones(n), rng.multinomial(n, np.full(n, 1 / n), size=resamples)])  # row 0: the data

    def weighted_mean(mask: np.ndarray) -> np.ndarray:
        pairs = ((weights @ mask.astype(np.float64)) * weights).sum(axis=1)
        total = ((weights @ np.where(mask, jac, 0.0)) * weights).sum(axis=1)
        return np.divide(total, pairs, out=np.full(len(weights), np.nan), where=pairs > 0)

    within, between = weighted_mean(same), weighted_mean(diff)
    boot = (within - between)[1:]
    alpha = (1 - confidence) / 2
    low, high = np.nanquantile(boot, [alpha, 1 - alpha]) if resamples else (np.nan, np.nan)
    return {
        "within": float(within[0]),
        "between": float(between[0]),
        "difference": float(within[0] - between[0]),
        "image_ci_low": float(low),
        "image_ci_high": float(high),
    }
