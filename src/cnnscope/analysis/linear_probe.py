"""Linear probes: how linearly separable the classes are in one layer's representation.

Features are the layer's output *pooled* per channel — the spatial mean of each feature map for a
``(C, H, W)`` output, the values themselves for a vector — so every layer is probed with at most a
few hundred features. A standardised multinomial logistic regression is fitted on a fixed,
class-stratified half of the evaluation sample and scored (accuracy) on the other half. The split
depends only on the labels and the images' seeded order (:mod:`.sample_order`), not on the order
the sample is stored in, so every variant and seed is probed on the same images.
"""

from __future__ import annotations

import numpy as np

# scikit-learn (and the SciPy it loads, ~80 MB and ~0.9 s) is imported by the two functions that
# fit or split, not here: the trajectory stage imports this module before its streaming pass and
# fits only after it, and the stages that never probe (histograms) do not load it at all.


def pooled_features(array: np.ndarray) -> np.ndarray:
    """``(N, C)`` channel means of a ``(N, C, H, W)`` output; ``(N, D)`` outputs are returned as is."""
    x = np.asarray(array, dtype=np.float32)
    return x.reshape(*x.shape[:2], -1).mean(axis=2) if x.ndim > 2 else x.reshape(len(x), -1)


def probe_split(
    labels: np.ndarray, test_fraction: float, seed: int = 0, order: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Train/test positions into the evaluation sample (stratified when every class has ≥ 2 images).

    ``order``: the sample's positions in its seeded image order (:func:`.sample_order.sample_order`);
    the split is drawn in that order, so the same images land on the same side however the
    sample is stored (the stored order is class-sorted). Without it, the stored order is used."""
    labels = np.asarray(labels)
    positions = np.arange(len(labels)) if order is None else np.asarray(order)
    labels = labels[positions]
    from sklearn.model_selection import train_test_split

    _, counts = np.unique(labels, return_counts=True)
    stratify = labels if counts.min() >= 2 else None
    train, test = train_test_split(positions, test_size=test_fraction, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(test)


def probe_accuracy(features: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    """Held-out accuracy of a logistic regression fitted on ``features[train]``."""
    labels = np.asarray(labels)
    if len(np.unique(labels[train])) < 2:
        return float("nan")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
    # one BLAS thread: the problems are tiny, and thread start-up/oversubscription dominated
    # (benchmarks/README.md)
    with threadpool_limits(limits=1):
        clf.fit(features[train], labels[train])
        return float(clf.score(features[test], labels[test]))
