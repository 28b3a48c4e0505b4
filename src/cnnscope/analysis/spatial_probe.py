"""Spatial linear probes: is the class linearly readable from a layer *with its layout kept*?

The channel-mean probe of :mod:`.linear_probe` throws away where things are: on a first layer it
mostly reads the image's brightness, so a random first layer scores like a trained one. Here a
``(C, H, W)`` output is **average-pooled to a ``grid × grid`` layout** per map
(``adaptive_avg_pool2d``), keeping coarse position, and flattened to ``C·grid²`` features; a vector
layer is used as it is. A standardised multinomial logistic regression is fitted on a fixed,
class-stratified part of the evaluation sample and scored on the rest (:func:`.linear_probe.probe_split`),
so every network is probed on the same images.

Each accuracy ``p`` on ``m`` held-out images comes with its binomial **standard error**
``√(p(1−p)/m)``; the **chance level** is the accuracy of always answering the most frequent
training class; the untrained network of the study is the baseline a trained layer must beat.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cnnscope.analysis.linear_probe import probe_accuracy

CHUNK = 256


def grid_features(array: np.ndarray, grid: int = 2) -> np.ndarray:
    """``(N, C·grid²)`` features: each map average-pooled to ``grid × grid``; ``(N, D)`` as is."""
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    if np.asarray(array[:0]).ndim != 4:
        return np.asarray(array, dtype=np.float32).reshape(len(array), -1)
    parts = []
    for start in range(0, len(array), CHUNK):
        x = torch.from_numpy(np.array(array[start : start + CHUNK], dtype=np.float32))
        parts.append(F.adaptive_avg_pool2d(x, grid).flatten(1).numpy())
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def chance_level(labels: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    """Held-out accuracy of always predicting the most frequent class of the training part."""
    labels = np.asarray(labels)
    values, counts = np.unique(labels[train], return_counts=True)
    return float(np.mean(labels[test] == values[counts.argmax()]))


def standard_error(accuracy: float, n_test: int) -> float:
    """Binomial standard error of an accuracy measured on ``n_test`` images."""
    return float(np.sqrt(accuracy * (1 - accuracy) / n_test)) if n_test else float("nan")


def spatial_probe(
    array: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray, grid: int = 2
) -> dict[str, float]:
    """Accuracy, its standard error and the feature count of the spatial probe of one layer."""
    x = grid_features(array, grid)
    acc = probe_accuracy(x, labels, train, test)
    return {"features": x.shape[1], "accuracy": acc, "std_error": standard_error(acc, len(test))}
