"""One seeded order of the evaluation sample for every measure that batches or splits it.

The extract stage stores the evaluation sample sorted by class. A measure that takes its
minibatches or its train/test split *by position* then depends on that storage order: minibatch
CKA (Nguyen, Raghu & Kornblith, ICLR 2021) over class-sorted batches sees two or three classes per
batch, so its average within-batch HSIC misses most between-class structure and reads far from
the full-batch debiased CKA (Kornblith et al., ICML 2019; on the default study 0.886 against
0.824). Nguyen et al. draw their minibatches at random; here every such measure first puts the
sample into **one fixed, seeded random order** that depends only on the images themselves (their
sample ids), never on the order they were stored in: the ids are sorted, then permuted with
``numpy.random.default_rng(seed)``. The seed is ``compare.sample_order_seed`` and is recorded in
the compare stage's provenance, so the order is reproducible and shared by every network.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def sample_order(sample_ids: Sequence[int] | np.ndarray, seed: int = 0) -> np.ndarray:
    """Positions into the stored sample, in the seeded random order of its images: the same images
    give the same sequence of *images* whatever order they are stored in."""
    ids = np.asarray(sample_ids)
    canonical = np.argsort(ids, kind="stable")
    return canonical[np.random.default_rng(seed).permutation(len(ids))]


def shuffled(n: int, seed: int = 0) -> np.ndarray:
    """A seeded random order of ``n`` positions (when the images carry no ids)."""
    return np.random.default_rng(seed).permutation(n)
