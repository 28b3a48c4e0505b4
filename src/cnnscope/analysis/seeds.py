"""Statistics over training seeds, and bootstrap confidence intervals for variant differences.

* **Mean ± std over seeds**: each quantity is first computed per seed; the table reports the mean
  and the sample standard deviation (``ddof=1``; NaN with a single seed) across seeds.
* **Difference A − B** of a per-image quantity ``x`` (e.g. the entropy of one image's activation
  histogram): ``mean_{seeds, images} x_A − mean_{seeds, images} x_B``, where both variants were
  evaluated on the same images. Its confidence interval is a two-level percentile bootstrap: each
  replicate resamples the seeds of each variant with replacement and the images with replacement
  (the same image draw for both variants, keeping the pairing). A claim "A is larger than B" holds
  at the chosen confidence when the whole interval lies above 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def seed_summary(table: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    """Mean, std and count over the ``seed`` column of ``table`` for each ``keys`` group (tidy)."""
    long = table.melt(id_vars=[*keys, "seed"], value_vars=values, var_name="quantity")
    grouped = long.groupby([*keys, "quantity"], sort=False)["value"]
    out = grouped.agg(mean="mean", std=lambda v: v.std(ddof=1), n_seeds="count").reset_index()
    return out


def bootstrap_difference(
    a: np.ndarray, b: np.ndarray, resamples: int, confidence: float, seed: int = 0
) -> dict[str, float]:
    """Difference of means of ``a`` and ``b`` (``(seeds, images)``, same images) with a bootstrap CI."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired bootstrap needs the same images: {a.shape[1]} vs {b.shape[1]}")
    rng = np.random.default_rng(seed)
    n_images = a.shape[1]
    images = rng.integers(0, n_images, size=(resamples, n_images))  # one draw per replicate, shared
    diffs = _resampled_means(a, images, rng) - _resampled_means(b, images, rng)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return {
        "difference": float(a.mean() - b.mean()),
        "ci_low": float(low),
        "ci_high": float(high),
        "holds": bool(low > 0 or high < 0),
    }


def _resampled_means(x: np.ndarray, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per replicate: resample the seeds (rows) with replacement, then average over ``images``.

    The mean over a seed multiset is a count-weighted mean of per-seed means, so the work is one
    ``(seeds, replicates)`` table of image-resampled means.
    """
    per_seed = x[:, images].mean(axis=2)  # (seeds, replicates)
    counts = rng.multinomial(len(x), np.full(len(x), 1 / len(x)), size=images.shape[0])  # (replicates, seeds)
    return (counts * per_seed.T).sum(axis=1) / len(x)
