"""Seed-level verdicts: does a claim hold over training runs, not only over images of one run?

The variants of a study share their initialisation per seed, so a claim "A has more of m than B"
is tested on the **paired differences** ``d_s = m(A, s) − m(B, s)``, one per training seed (for a
claim about one network, ``d_s`` is the per-seed value itself, e.g. within − between):

* the mean of ``d`` and a **t-interval** ``mean ± t_{n−1, 1−α/2} · sd(d)/√n`` over the ``n`` seeds
  (Student; ``t`` = 12.71 for n = 2, 4.30 for n = 3);
* an **exact sign-flip permutation test** of ``mean(d) = 0``: all ``2ⁿ`` sign patterns of ``d``;
  its smallest attainable two-sided p is ``2/2ⁿ`` (0.25 for n = 3), so it is reported with that
  floor and only decides nothing below n = 6 at α = 0.05.

Each claim declares a **smallest effect size of interest** (SESOI, ``δ``, in ``compare.sesoi`` with
its reason): a difference smaller than δ is negligible whatever its sign (Lakens, "Equivalence
tests", Soc. Psychol. Personal. Sci. 2017). The verdict, for a claim that ``d`` is positive
(``direction=+1``) or negative (``−1``), from the t-interval at ``confidence``:

* *too few seeds* when n < 3 (an interval from two runs says little);
* **equivalent** when the whole interval lies inside ``(−δ, +δ)``: the two one-sided tests (TOST)
  reject both "≤ −δ" and "≥ +δ" at ``(1 − confidence)/2`` each (``tost_p`` is the larger of the
  two one-sided p's) — the difference is negligible, neither a confirmation nor a contradiction;
* *holds* when the whole interval lies on the claimed side of 0 (and not inside ±δ);
* *contradicted* only when the whole interval lies beyond δ on the other side: a real effect
  against the claim, not a negligible one (a CKA difference of 0.0007 near a ceiling is not);
* *inconclusive* otherwise.

Two verdicts are given outside :func:`seed_verdict` and are never tested (not in :data:`TESTED`,
so not in the Holm family): *degenerate null*, a trained − untrained control whose untrained
network is silent on data in the claim's layer, and *not converged*, a claim (d) row computed on
OIP ascents that mostly did not converge (:mod:`.convergence`).

Beside the raw difference: the standardised paired effect ``d_z = mean(d)/sd(d)`` (Cohen 1988;
Lakens 2013), and over a table of claims the **Holm–Bonferroni** adjusted sign-flip p
(:func:`holm`; Holm, Scand. J. Stat. 1979), which controls the family-wise error. With n seeds
the sign-flip p is at least ``2/2ⁿ`` (0.25 for n = 3), so neither p can decide below n = 6: the
verdict comes from the interval, the p's show how little a few seeds can reject.
"""

from __future__ import annotations

from itertools import product
from typing import Any

import numpy as np

# scipy.stats (~0.3 s, tens of MB) is imported by the two t-tests that use it: the per-network
# stages import this module through the study's tables without testing anything (issue 22, item 7)

HOLDS, CONTRADICTED, INCONCLUSIVE, TOO_FEW = "holds", "contradicted", "inconclusive", "too few seeds"
EQUIVALENT = "equivalent"
#: A trained − untrained contrast whose untrained network is silent on the data in the claim's
#: layer: no baseline (kept out of the verdicts and of the Holm family).
DEGENERATE = "degenerate null"
#: A claim (d) row whose OIP ascents mostly did not converge (fewer than ``compare.min_converged``
#: of a network's live maps, :mod:`.convergence`): the OIPs are still largely their start noise,
#: so the row measures the ascent's budget, not the maps (kept out of the verdicts and of the Holm
#: family, like :data:`DEGENERATE`).
NOT_CONVERGED = "not converged"
#: Verdicts that enter the Holm family (a tested row).
TESTED = (HOLDS, CONTRADICTED, INCONCLUSIVE, EQUIVALENT)
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


def t_interval(d: np.ndarray, confidence: float) -> tuple[float, float]:
    """Student t-interval of the mean of ``d`` (NaN bounds below two values)."""
    d = np.asarray(d, dtype=np.float64)
    n = len(d)
    if n < 2:
        return float("nan"), float("nan")
    from scipy import stats

    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * d.std(ddof=1) / np.sqrt(n)
    return float(d.mean() - half), float(d.mean() + half)


def tost_p(d: np.ndarray, sesoi: float) -> float:
    """p of the two one-sided t-tests of ``|mean(d)| < sesoi`` (the larger of the two; NaN below
    two values or without a positive SESOI)."""
    d = np.asarray(d, dtype=np.float64)
    n = len(d)
    if n < 2 or not sesoi > 0:
        return float("nan")
    se = d.std(ddof=1) / np.sqrt(n)
    if se == 0:
        return 0.0 if abs(d.mean()) < sesoi else 1.0
    from scipy import stats

    lower = stats.t.sf((d.mean() + sesoi) / se, n - 1)  # H0: mean ≤ −δ
    upper = stats.t.cdf((d.mean() - sesoi) / se, n - 1)  # H0: mean ≥ +δ
    return float(max(lower, upper))


def effect_size_dz(d: np.ndarray) -> float:
    """Paired standardised effect ``d_z = mean(d) / sd(d)`` (NaN below two values or with sd 0)."""
    d = np.asarray(d, dtype=np.float64)
    if len(d) < 2:
        return float("nan")
    sd = d.std(ddof=1)
    return float(d.mean() / sd) if sd > 0 else float("nan")


def holm(p: np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p's of ``p`` (NaN entries are left out of the family and stay NaN):
    the k-th smallest of m is multiplied by ``m − k + 1``, then made monotone and capped at 1."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(len(p), np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = len(valid)
    if not m:
        return out
    ranked = valid[np.argsort(p[valid], kind="stable")]
    adjusted = np.maximum.accumulate(p[ranked] * (m - np.arange(m)))
    out[ranked] = np.minimum(adjusted, 1.0)
    return out


def seed_verdict(d: np.ndarray, direction: int, confidence: float, sesoi: float) -> dict[str, Any]:
    """Mean, t-interval, sign-flip p, d_z, TOST p and verdict of the per-seed differences ``d`` for a
    claim that they are positive (``direction=1``) or negative (``-1``), with smallest effect size
    of interest ``sesoi`` (0: no equivalence verdict, contradicted whenever the interval excludes 0)."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction}")
    if not sesoi >= 0:
        raise ValueError(f"the smallest effect size of interest must be >= 0, got {sesoi}")
    d = np.asarray(d, dtype=np.float64)
    d = d[np.isfinite(d)]
    n = len(d)
    low, high = t_interval(d, confidence)
    if n < MIN_SEEDS:
        verdict = TOO_FEW
    elif sesoi > 0 and -sesoi < low and high < sesoi:
        verdict = EQUIVALENT
    elif direction * low > 0 and direction * high > 0:
        verdict = HOLDS
    elif direction * low < -sesoi and direction * high < -sesoi:
        verdict = CONTRADICTED
    else:
        verdict = INCONCLUSIVE
    return {
        "n_seeds": n,
        "mean_difference": float(d.mean()) if n else float("nan"),
        "effect_dz": effect_size_dz(d),
        "seed_ci_low": low,
        "seed_ci_high": high,
        "sesoi": float(sesoi),
        "sign_flip_p": sign_flip_p(d),
        "sign_flip_min_p": float(2.0 / 2**n) if n else float("nan"),
        "tost_p": tost_p(d, sesoi),
        "verdict": verdict,
    }
