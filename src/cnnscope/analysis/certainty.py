"""Softmax certainty: how sure a network is of its answer (the frog article's class bars)."""

from __future__ import annotations

import numpy as np

from cnnscope.analysis.information import entropy


def certainty(probs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image certainty of softmax outputs ``probs`` ``(N, K)`` against true ``labels``.

    * ``entropy_bits``: Shannon entropy of the class distribution (0 = certain, ``log2 K`` = uniform);
    * ``max_prob``: probability of the predicted class; ``predicted``: its index (argmax);
    * ``true_prob``: probability given to the true class; ``correct``: 1 if ``predicted == label``.
    """
    p = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    predicted = p.argmax(axis=1)
    return {
        "entropy_bits": entropy(p),
        "max_prob": p.max(axis=1),
        "predicted": predicted,
        "true_prob": p[np.arange(len(p)), labels],
        "correct": (predicted == labels).astype(np.float64),
    }
