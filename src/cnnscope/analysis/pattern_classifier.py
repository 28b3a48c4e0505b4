"""Classification by activation patterns (the MNIST article's part VI).

The article argues that the convolutional part of a CNN is what separates classes — badly
written 4s from 9s in particular — and that the dense head only reads the result. To measure
that, the deepest feature map is reduced to its **binary pattern** (node active > 0 or not), and
a **nearest class-mean pattern** classifier is fitted on one part of the evaluation sample: each
class is represented by the fraction of its training images in which each node is active, and a
held-out image gets the class whose mean pattern is nearest in Euclidean distance. Its accuracy is
set beside the network's own head and a plain MLP on the pixels (the ``mlp`` model of the zoo) on
the same held-out images, together with each one's **4↔9 confusion**: the share of held-out 4s
and 9s given the other of the two labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cnnscope.analysis.class_patterns import active


def class_mean_patterns(patterns: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K, D)`` fraction of each class's images in which each node is active (NaN for a class
    with no training image: it is never predicted)."""
    out = np.full((num_classes, patterns.shape[1]), np.nan)
    for k in range(num_classes):
        rows = patterns[np.asarray(labels) == k]
        if len(rows):
            out[k] = rows.mean(axis=0)
    return out


def nearest_mean_predict(patterns: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Class of the nearest class-mean pattern (squared Euclidean distance) for each row."""
    p = patterns.astype(np.float64)
    dist = (p * p).sum(axis=1)[:, None] - 2 * p @ np.nan_to_num(means).T + np.nansum(means * means, axis=1)[None]
    dist[:, np.isnan(means).all(axis=1)] = np.inf
    return dist.argmin(axis=1)


def pattern_predictions(maps: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Held-out predictions for ``maps[test]`` of the nearest class-mean binary pattern fitted on
    ``maps[train]``."""
    labels = np.asarray(labels)
    patterns = active(maps)
    means = class_mean_patterns(patterns[train], labels[train], int(labels.max()) + 1)
    return nearest_mean_predict(patterns[test], means)


def confusion_pair(predicted: np.ndarray, labels: np.ndarray, a: int, b: int) -> float:
    """Share of the images of class ``a`` or ``b`` predicted as the other one of the two."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    pair = (labels == a) | (labels == b)
    if not pair.any():
        return float("nan")
    swapped = ((labels == a) & (predicted == b)) | ((labels == b) & (predicted == a))
    return float(swapped[pair].mean())


def score(predicted: np.ndarray, labels: np.ndarray, pair: tuple[int, int] | None) -> dict[str, float]:
    """Accuracy and (when ``pair`` names two classes) their confusion."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    out = {"accuracy": float(np.mean(predicted == labels)) if len(labels) else float("nan")}
    out["pair_confusion"] = confusion_pair(predicted, labels, *pair) if pair is not None else float("nan")
    return out


def confusion_rows(
    predicted: np.ndarray, labels: np.ndarray, classes: Sequence[str], **ids: object
) -> list[dict[str, object]]:
    """The full confusion matrix of one classifier, tidy: one row per (true, predicted) class pair
    with its count of held-out images (zeros included, so every matrix has ``K × K`` rows), each
    row carrying ``ids`` (variant, seed, classifier)."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return [
        {**ids, "true": classes[t], "predicted": classes[p], "images": int(counts[t, p])}
        for t in range(len(classes))
        for p in range(len(classes))
    ]
