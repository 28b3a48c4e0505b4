"""Linear probes: how linearly separable the classes are in one layer's representation.

Features are the layer's output *pooled* per channel — the spatial mean of each feature map for a
``(C, H, W)`` output, the values themselves for a vector — so every layer is probed with at most a
few hundred features. A standardised multinomial logistic regression is fitted on a fixed,
class-stratified half of the evaluation sample and scored (accuracy) on the other half. The split
depends only on the labels and the images' seeded order (:mod:`.sample_order`), not on the order
the sample is stored in, so every variant and seed is probed on the same images.

The regression is the estimator scikit-learn's ``LogisticRegression()`` defines (softmax cross-entropy
summed over the training images plus ``‖W‖² / 2C`` with ``C = 1``, intercepts not penalised, features
standardised on the training part), solved here in float64 by SciPy's L-BFGS-B (the solver
scikit-learn calls) on the analytic gradient. The objective is strictly convex, so a converged solver
finds the same weights whichever library runs it; scikit-learn itself added about 145 MB and 2 s to
every stage that probes (benchmarks/README.md, "Trajectories"), ``scipy.optimize`` about 40 MB and
0.3 s, and torch's optimisers would load ``torch._dynamo`` (150 MB).
"""

from __future__ import annotations

import numpy as np

#: Inverse regularisation strength, as scikit-learn's default ``C``.
C = 1.0
#: L-BFGS iterations at most; the probes here converge in tens to a few hundred.
MAX_ITER = 500
#: Stop when the largest gradient entry of the mean objective is below this (scikit-learn's
#: default stops at 1e-4; on the default study's probes this reaches a lower objective than it in
#: every case, in about the same time: benchmarks/README.md).
TOLERANCE = 1e-5


def pooled_features(array: np.ndarray) -> np.ndarray:
    """``(N, C)`` channel means of a ``(N, C, H, W)`` output; ``(N, D)`` outputs are returned as is."""
    x = np.asarray(array, dtype=np.float32)
    return x.reshape(*x.shape[:2], -1).mean(axis=2) if x.ndim > 2 else x.reshape(len(x), -1)


def probe_split(
    labels: np.ndarray, test_fraction: float, seed: int = 0, order: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Train/test positions into the evaluation sample, stratified when every class has ≥ 2 images.

    Stratified: each class's positions are permuted with ``numpy.random.default_rng(seed)`` (classes
    in sorted order) and its first ``test_fraction · n_c`` (rounded half up) go to the test part, at least one
    and never all. Otherwise the whole sample is permuted and ``ceil(test_fraction · n)`` are tested.

    ``order``: the sample's positions in its seeded image order (:func:`.sample_order.sample_order`);
    the split is drawn in that order, so the same images land on the same side however the
    sample is stored (the stored order is class-sorted). Without it, the stored order is used."""
    positions = np.arange(len(labels)) if order is None else np.asarray(order)
    labels = np.asarray(labels)[positions]
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    if len(labels) and counts.min() >= 2:
        test = []
        for c, n in zip(classes, counts, strict=True):
            members = positions[labels == c][rng.permutation(n)]
            test.append(members[: min(max(int(np.floor(test_fraction * n + 0.5)), 1), n - 1)])
        tested = np.concatenate(test)
    else:
        tested = positions[rng.permutation(len(positions))][: int(np.ceil(test_fraction * len(positions)))]
    return np.sort(np.setdiff1d(positions, tested)), np.sort(tested)


def fit_logistic(x: np.ndarray, y: np.ndarray, classes: int, c: float = C) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``(D, K)`` and intercepts ``(K,)`` minimising the softmax cross-entropy of ``x``
    (float64, standardised) against ``y`` plus ``‖W‖² / 2c``, both divided by the image count (which
    moves no minimum but keeps the tolerance independent of the sample size), with SciPy's L-BFGS-B
    on the analytic gradient."""
    from scipy.optimize import minimize  # ~40 MB and 0.3 s, only in the stages that probe

    n, d = x.shape
    onehot = np.eye(classes)[y]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weights, bias = theta[: d * classes].reshape(d, classes), theta[d * classes :]
        logits = x @ weights + bias
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        residual = (np.exp(log_p) - onehot) / n
        loss = -(onehot * log_p).sum() / n + (weights**2).sum() / (2 * c * n)
        grad = np.concatenate([(x.T @ residual + weights / (c * n)).ravel(), residual.sum(axis=0)])
        return float(loss), grad

    start = np.zeros(d * classes + classes)
    found = minimize(
        objective, start, jac=True, method="L-BFGS-B",
        options={"maxiter": MAX_ITER, "gtol": TOLERANCE, "ftol": 64 * np.finfo(float).eps},
    )  # fmt: skip
    return found.x[: d * classes].reshape(d, classes), found.x[d * classes :]


def probe_accuracy(features: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    """Held-out accuracy of the standardised logistic regression fitted on ``features[train]``."""
    labels = np.asarray(labels)
    classes, y = np.unique(labels[train], return_inverse=True)
    if len(classes) < 2:
        return float("nan")
    x = np.asarray(features, dtype=np.float64).reshape(len(labels), -1)
    fit = x[train]
    mean, std = fit.mean(axis=0), fit.std(axis=0)
    std[std == 0] = 1.0  # a constant feature stays 0 after centring, as StandardScaler leaves it
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # one BLAS thread: the problems are tiny (benchmarks/README.md)
        weights, bias = fit_logistic((fit - mean) / std, y, len(classes))
    predicted = classes[(((x[test] - mean) / std) @ weights + bias).argmax(axis=1)]
    return float(np.mean(predicted == labels[test]))
