"""Seed-level verdicts: does a claim hold over training runs, not only over images of one run?

The variants of a study share their initialisation per seed, so a claim "A has more of m than B"
is tested on the **paired differences** ``d_s = m(A, s) − m(B, s)``, one per training seed (for a
claim about one network, ``d_s`` is the per-seed value itself, e.g. within − between):

* the mean of ``d`` and a **t-interval** ``mean ± t_{n−1, 1−α/2} · sd(d)/√n`` over the ``n`` seeds
  (Student; ``t`` = 12.71 for n = 2, 4.30 for n = 3);
* an **exact sign-flip permutation test** of ``mean(d) = 0``: all ``2ⁿ`` sign patterns of ``d``;
  its smallest attainable two-sided p is ``2/2ⁿ`` (0.25 for n = 3), so it is reported with that
  floor and only decides nothing below n = 6 at α = 0.05.

The verdict, for a claim that ``d`` is positive (``direction=+1``) or negative (``−1``):
*too few seeds* when n < 3 (an interval from two runs says little), *holds* when the whole
t-interval lies on the claimed side of 0, *contradicted* when it lies on the other side, and
*inconclusive* otherwise. An image bootstrap within trained networks
(:func:`cnnscope.analysis.seeds.bootstrap_difference`) measures image-to-image variation only and
is reported beside the verdict, labelled image-level, never as the verdict.
"""

from __future__ import annotations

from itertools import product
from typing import Any

import numpy as np
from scipy import stats

HOLDS, CONTRADICTED, INCONCLUSIVE, TOO_FEW = "holds", "contradicted", "inconclusive", "too few seeds"
#: Fewest seeds for a verdict.
MIN_SEEDS = 3
#: The sign-flip test enumerates every sign pattern up to this many seeds (2¹⁶ patterns).
MAX_EXACT = 16


def sign_flip_p(d: np.ndarray) -> float:
    """Exact two-sided p of the sign-flip permutation test of ``mean(d) = 0`` (NaN for n = 0 or
    n > :data:`MAX_EXACT`)."""
    d = np.asarray(d, dtype=np.float64)
    n = len(d)
    if n == 0 or n > MAX_EXACT:
        return float("nan")
    signs = np.array(list(product((1.0, -1.0), repeat=n)))
    means = np.abs(signs @ d) / n
    observed = abs(d.mean())
    return float(np.mean(means >= observed - 1e-12 * max(1.0, observed)))


def t_interval(d: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Student t-interval of the mean of ``d`` (NaN bounds below two values)."""
    d = np.asarray(d, dtype=np.float64)
    n = len(d)
    if n < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * d.std(ddof=1) / np.sqrt(n)
    return float(d.mean() - half), float(d.mean() + half)


def seed_verdict(d: np.ndarray, direction: int = 1, confidence: float = 0.95) -> dict[str, Any]:
    """Mean, t-interval, sign-flip p and verdict of the per-seed differences ``d`` for a claim
    that they are positive (``direction=1``) or negative (``-1``)."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction}")
    d = np.asarray(d, dtype=np.float64)
    d = d[np.isfinite(d)]
    n = len(d)
    low, high = t_interval(d, confidence)
    if n < MIN_SEEDS:
        verdict = TOO_FEW
    elif direction * low > 0 and direction * high > 0:
        verdict = HOLDS
    elif direction * low < 0 and direction * high < 0:
        verdict = CONTRADICTED
    else:
        verdict = INCONCLUSIVE
    return {
        "n_seeds": n,
        "mean_difference": float(d.mean()) if n else float("nan"),
        "seed_ci_low": low,
        "seed_ci_high": high,
        "sign_flip_p": sign_flip_p(d),
        "sign_flip_min_p": float(2.0 / 2**n) if n else float("nan"),
        "verdict": verdict,
    }
