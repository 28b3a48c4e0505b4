"""Each layer's activation scale, and whether a layer is *silent on data* (a degenerate null).

An untrained network is a null model only if its layers still carry the image: with PyTorch's
default initialisation (``kaiming_uniform_(a=√5)``, weight variance ``1/(3·fan_in)``) each ReLU
layer keeps about a sixth of its input's second moment, so a deep random network's activations
shrink towards its biases and its deep layers pass (almost) the same values for every image (He,
Zhang, Ren & Sun, "Delving Deep into Rectifiers", ICCV 2015, derive the variance-preserving
``2/fan_in``). Such a layer has entropy 0 on shared bins, near-1 Jaccard between any two images and
a tiny OIP activation — a comparison against it says nothing about training. Per (network, layer):

* ``rms``: root mean square of the values over the evaluation sample (the activation scale);
* ``active_fraction``: share of values that are non-zero;
* ``image_spread``: each node's standard deviation over images, averaged over nodes;
* ``silent``: fewer than 0.1 % of the values are non-zero, or the nodes hardly vary between images
  (``image_spread < 10⁻³ · rms``): the layer passes a constant, not the image.

A claim's trained − untrained contrast on a layer that is silent in the untrained network is given
the verdict *degenerate null* and kept out of the verdicts (:mod:`.claims`).
"""

from __future__ import annotations

import numpy as np

CHUNK = 256
#: Below this share of non-zero values a layer is silent.
MIN_ACTIVE = 1e-3
#: Below this ratio of the between-image spread to the rms a layer is silent.
MIN_RELATIVE_SPREAD = 1e-3


def activation_scale(array: np.ndarray) -> dict[str, float | bool]:
    """Scale, activity, spread over images and the silent flag of one layer's ``(N, ...)`` output."""
    n = len(array)
    if n == 0:
        return {"rms": float("nan"), "active_fraction": float("nan"), "image_spread": float("nan"), "silent": True}
    s1: np.ndarray | None = None
    s2: np.ndarray | None = None
    nonzero = 0
    for start in range(0, n, CHUNK):
        chunk = np.asarray(array[start : start + CHUNK], dtype=np.float64)
        x = chunk.reshape(len(chunk), -1)
        s1 = x.sum(axis=0) if s1 is None else s1 + x.sum(axis=0)
        s2 = (x * x).sum(axis=0) if s2 is None else s2 + (x * x).sum(axis=0)
        nonzero += int(np.count_nonzero(x))
    assert s1 is not None and s2 is not None
    mean, second = s1 / n, s2 / n
    rms = float(np.sqrt(second.mean()))
    spread = float(np.sqrt(np.clip(second - mean * mean, 0, None)).mean())
    active = nonzero / (n * len(s1))
    silent = active < MIN_ACTIVE or spread < MIN_RELATIVE_SPREAD * rms or rms == 0
    return {"rms": rms, "active_fraction": active, "image_spread": spread, "silent": bool(silent)}
