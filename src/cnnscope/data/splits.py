"""Deterministic, stratified splits; nested training subsets; held-out probe images.

The key idea is a *stratified order*: every image of the training pool gets a position such that
any prefix of the order holds (almost exactly) the class proportions of the whole pool. The
training cap and every subset are prefixes of one order, so a smaller subset is always inside a
larger one (the seed study's 10k-inside-50k) and all of them are stratified.
"""

from __future__ import annotations

import torch

from cnnscope.config import ProbeSpec
from cnnscope.errors import CnnscopeError


def stratified_order(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A permutation of ``range(len(labels))`` whose every prefix is class-stratified.

    Within each class the images are shuffled; the r-th of n_c images of class c gets the key
    (r + u) / n_c with u ~ U(0, 1), and sorting by key interleaves the classes in proportion.
    """
    keys = torch.empty(len(labels), dtype=torch.float64)
    for c in labels.unique(sorted=True).tolist():
        members = (labels == c).nonzero().squeeze(1)
        shuffled = members[torch.randperm(len(members), generator=generator)]
        jitter = torch.rand(len(members), generator=generator, dtype=torch.float64)
        keys[shuffled] = (torch.arange(len(members), dtype=torch.float64) + jitter) / len(members)
    return torch.argsort(keys, stable=True)


def split_off(
    indices: torch.Tensor, labels: torch.Tensor, fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``indices`` into (rest, held-out ``fraction``), stratified by ``labels[indices]``."""
    order = indices[stratified_order(labels[indices], generator)]
    n_held = round(fraction * len(indices))
    return order[n_held:], order[:n_held]


def resolve_probes(specs: list[ProbeSpec], labels: torch.Tensor, classes: list[str]) -> tuple[torch.Tensor, list[str]]:
    """Positions (into ``labels``, the source's test split) and names of the configured probes."""
    positions: list[int] = []
    names: list[str] = []
    for i, spec in enumerate(specs):
        if spec.label is None:
            if not 0 <= spec.index < len(labels):
                raise CnnscopeError(
                    f"data.probes[{i}].index={spec.index} is outside the test split (0..{len(labels) - 1})"
                )
            pos = spec.index
        else:
            if spec.label not in classes:
                raise CnnscopeError(
                    f"data.probes[{i}].label={spec.label!r} is not a class of this dataset; "
                    f"classes are: {', '.join(classes)}"
                )
            members = (labels == classes.index(spec.label)).nonzero().squeeze(1)
            if not 0 <= spec.index < len(members):
                raise CnnscopeError(
                    f"data.probes[{i}]: the test split has {len(members)} images of class "
                    f"{spec.label!r}, so index={spec.index} is out of range"
                )
            pos = int(members[spec.index])
        if pos in positions:
            raise CnnscopeError(f"data.probes[{i}] selects the same image as an earlier probe")
        positions.append(pos)
        names.append(spec.name or f"{spec.label or 'test'}_{spec.index}")
    return torch.tensor(positions, dtype=torch.int64), names


def subset_counts(sizes: list[float], n_train: int) -> list[int]:
    """Image counts of the configured subsets: a size ≤ 1 is a fraction of the training split."""
    counts = []
    for size in sizes:
        count = round(size * n_train) if size <= 1 else int(size)
        if not 0 < count <= n_train:
            raise CnnscopeError(
                f"data.subsets entry {size} means {count} images, but the training split has {n_train}: "
                "use a fraction ≤ 1 or a count ≤ the training size"
            )
        counts.append(count)
    return counts
