"""The evaluation sample: a deterministic, class-stratified subset of the test split."""

from __future__ import annotations

import torch

from cnnscope.errors import CnnscopeError


class EmptySampleError(CnnscopeError, ValueError):
    """The evaluation sample would hold no images."""


def stratified_sample(indices: torch.Tensor, labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Pick ``n`` of ``indices`` (labels ``labels``) with class proportions kept; sorted ids.

    Each class gets ``floor(n * n_c / N)`` images, the remainder going to the classes with the
    largest fractional parts (ties: lower label first); within a class a seeded permutation picks
    them. The choice depends only on the split and ``n``, never on the variant or training seed, so
    every network is evaluated on the same images and comparisons are paired. ``n`` larger than the
    split takes the whole split.
    """
    total = len(indices)
    if n <= 0 or total == 0:
        raise EmptySampleError(
            f"empty evaluation sample: extract.eval_samples={n}, test split has {total} images; "
            "set extract.eval_samples to a positive number and make sure prepare wrote a test split"
        )
    if n >= total:
        return indices.sort().values
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * n / total
    quota = exact.floor().long()
    remainder = exact - quota
    order = sorted(range(len(classes)), key=lambda i: (-float(remainder[i]), int(classes[i])))
    for i in order[: n - int(quota.sum())]:
        quota[i] += 1
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for cls, k in zip(classes.tolist(), quota.tolist(), strict=True):
        members = indices[labels == cls]
        chosen.append(members[torch.randperm(len(members), generator=gen)[:k]])
    return torch.cat(chosen).sort().values
