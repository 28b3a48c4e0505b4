"""Information measures of binned activation distributions (all in bits).

Definitions, for histogram counts ``c`` over ``B`` bins turned into probabilities ``p = c / Σc``:

* **Shannon entropy** ``H(p) = −Σ_i p_i log2 p_i`` (empty bins contribute 0). It is at most
  ``log2 B``; a distribution piled into few bins (e.g. ReLU zeros) has low entropy.
* **Kullback–Leibler divergence** ``KL(p‖q) = Σ_i p_i log2(p_i / q_i)``: the extra bits needed to
  code samples of ``p`` with a code built for ``q``. It is infinite when ``q_i = 0 < p_i``, so
  comparisons between networks first smooth both histograms with :func:`smoothed`.
* **Jensen–Shannon divergence** ``JS(p, q) = ½ KL(p‖m) + ½ KL(q‖m)`` with ``m = ½(p + q)``:
  symmetric, finite, in ``[0, 1]`` bits. (SciPy's ``jensenshannon`` returns its square root.)

These agree with ``scipy.stats.entropy(p, base=2)``, ``scipy.stats.entropy(p, q, base=2)`` and
``scipy.spatial.distance.jensenshannon(p, q, base=2) ** 2`` (tested); they are vectorised over
leading axes so a whole table of histograms is one call.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

#: Pseudo-count added to every bin before a KL divergence (Jeffreys' prior, ½ per bin).
PSEUDO_COUNT = 0.5


def probabilities(counts: ArrayLike) -> np.ndarray:
    """Counts → probabilities along the last axis (an all-zero row stays zero)."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum(axis=-1, keepdims=True)
    return np.divide(c, total, out=np.zeros_like(c), where=total > 0)


def smoothed(counts: ArrayLike, pseudo_count: float = PSEUDO_COUNT) -> np.ndarray:
    """Probabilities after adding ``pseudo_count`` to every bin, so no bin is exactly empty."""
    return probabilities(np.asarray(counts, dtype=np.float64) + pseudo_count)


def entropy(p: ArrayLike) -> np.ndarray:
    """Shannon entropy in bits of the distribution(s) ``p`` (last axis; normalised first)."""
    q = probabilities(p)
    terms = np.where(q > 0, q * np.log2(np.where(q > 0, q, 1.0)), 0.0)
    return -terms.sum(axis=-1)


def kl_divergence(p: ArrayLike, q: ArrayLike) -> np.ndarray:
    """``KL(p‖q)`` in bits (last axis; both normalised first); ``inf`` where ``q`` misses mass of ``p``."""
    pp, qq = np.broadcast_arrays(probabilities(p), probabilities(q))
    with np.errstate(divide="ignore"):
        ratio = np.log2(np.where(pp > 0, pp, 1.0)) - np.log2(np.where(pp > 0, qq, 1.0))
    return np.where(pp > 0, pp * ratio, 0.0).sum(axis=-1)


def js_divergence(p: ArrayLike, q: ArrayLike) -> np.ndarray:
    """Jensen–Shannon divergence in bits (last axis; both normalised first), in ``[0, 1]``."""
    pp, qq = probabilities(p), probabilities(q)
    m = 0.5 * (pp + qq)
    return 0.5 * kl_divergence(pp, m) + 0.5 * kl_divergence(qq, m)
