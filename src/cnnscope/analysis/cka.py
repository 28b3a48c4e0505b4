"""Debiased linear CKA: how similar two representations of the same images are.

Linear centred kernel alignment (Kornblith, Norouzi, Lee & Hinton, "Similarity of Neural Network
Representations Revisited", ICML 2019) compares the Gram matrices ``K = XXᵀ`` and ``L = YYᵀ`` of two
layers' outputs ``X`` (n × p) and ``Y`` (n × q) over the same n images (features flattened):

    CKA(X, Y) = HSIC(K, L) / √(HSIC(K, K) · HSIC(L, L)).

The plain (biased) HSIC estimator inflates CKA for few images and many features, so this module
uses the **unbiased HSIC** of Song, Smola, Gretton, Bedo & Borgwardt (JMLR 2012): with ``K̃``, ``L̃``
the Gram matrices with their diagonals set to 0,

    HSIC₁(K, L) = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − (2/(n−2)) · 1ᵀK̃L̃1] / (n(n−3)).

**Minibatch CKA** (Nguyen, Raghu & Kornblith, "Do Wide and Deep Networks Learn the Same Things?",
ICLR 2021) averages HSIC₁ of each of the three pairs over minibatches of ``b`` images taken in one
fixed order shared by all networks, then takes the ratio: memory is O(b² + b·features), flat in
the number of images. That order is a **seeded random permutation** of the sample
(:mod:`.sample_order`), as Nguyen et al. draw random minibatches: the evaluation sample is stored
sorted by class, and batches of two or three classes miss the between-class structure, which
biased the minibatch value far from the full-batch one (0.886 vs 0.824 on the default study).
CKA(X, X) = 1, and CKA is invariant to orthogonal transforms and isotropic scaling of either
representation, but not to arbitrary invertible linear maps. Because CKA can move without the
function moving (Davari et al., ICLR 2023), a between-variant value means something only beside
the seed-to-seed value of one variant.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from itertools import combinations_with_replacement
from typing import TypeVar

import numpy as np
import torch

from cnnscope.analysis.sample_order import shuffled

#: Images per minibatch (Nguyen et al. use 256 as well).
BATCH = 256
K = TypeVar("K", bound=Hashable)


def gram(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Linear Gram matrix ``XXᵀ`` of ``x`` ``(n, ...)`` with its features flattened, returned in
    float64. Float input is multiplied in its own precision (float32 sums of float16 activations
    are exact to ~1e-7 relative, far inside the estimator's noise, at a quarter of float64's cost)."""
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x))  # a copy: memmaps are read-only
    flat = t.reshape(len(t), -1)
    flat = flat.float() if flat.dtype in (torch.float16, torch.bfloat16) else flat
    return (flat @ flat.T).double()


def unbiased_hsic(k: torch.Tensor, l: torch.Tensor) -> float:  # noqa: E741 (the paper's names)
    """HSIC₁ of Gram matrices ``k``, ``l`` (n × n, n ≥ 4) — Song et al. 2012, eq. (5)."""
    n = k.shape[0]
    if n < 4:
        raise ValueError(f"the unbiased HSIC needs at least 4 images, got {n}")
    kt = k - torch.diag_embed(torch.diagonal(k))
    lt = l - torch.diag_embed(torch.diagonal(l))
    trace = (kt * lt).sum()
    sums = kt.sum() * lt.sum() / ((n - 1) * (n - 2))
    cross = kt.sum(dim=0) @ lt.sum(dim=1)
    return float((trace + sums - 2 * cross / (n - 2)) / (n * (n - 3)))


def cka(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Debiased linear CKA of two representations of the same images (all images in one batch)."""
    k, l = gram(x), gram(y)  # noqa: E741
    return _ratio(unbiased_hsic(k, l), unbiased_hsic(k, k), unbiased_hsic(l, l))


def _ratio(kl: float, kk: float, ll: float) -> float:
    denominator = np.sqrt(kk * ll) if kk > 0 and ll > 0 else 0.0
    return float(kl / denominator) if denominator > 0 else float("nan")


def batches(n: int, batch: int = BATCH) -> list[slice]:
    """The fixed minibatches ``[0, b), [b, 2b), …`` of ``n`` images; a last batch under 4 images
    (too few for HSIC₁) is merged into the one before."""
    if n < 4:
        raise ValueError(f"CKA needs at least 4 images, got {n}")
    starts = list(range(0, n, batch))
    if n - starts[-1] < 4 and len(starts) > 1:
        starts.pop()
    return [slice(s, e) for s, e in zip(starts, [*starts[1:], n], strict=True)]


def _positions(n: int, order: np.ndarray | None, seed: int) -> np.ndarray:
    positions = shuffled(n, seed) if order is None else np.asarray(order)
    if sorted(positions.tolist()) != list(range(n)):
        raise ValueError(f"order must be a permutation of the {n} images")
    return positions


def batch_grams(x: np.ndarray, batch: int = BATCH, order: np.ndarray | None = None, seed: int = 0) -> list[np.ndarray]:
    """The Gram matrix of each minibatch of one representation ``x`` ``(n, ...)``, in batch order
    (float32: :func:`gram` multiplies float32 rows, so nothing is lost). Each depends on this
    representation alone, so a network's Grams can be computed once, apart from the others
    (the ``measures@`` stages), and every pair's HSIC taken from them (:func:`cka_from_grams`)."""
    positions = _positions(len(x), order, seed)
    out = []
    for sl in batches(len(x), batch):
        rows = np.sort(positions[sl])  # HSIC₁ is invariant to the order within a batch; sorted reads are faster
        out.append(gram(np.array(x[rows], dtype=np.float32)).float().numpy())
    return out


def cka_from_grams(
    grams: Mapping[K, Sequence[np.ndarray] | Callable[[], Sequence[np.ndarray]]], pairs: Iterable[tuple[K, K]]
) -> dict[tuple[K, K], float]:
    """Minibatch debiased CKA of every pair in ``pairs`` from each representation's per-batch Gram
    matrices (:func:`batch_grams`, same batches for all; a callable is called when needed, so
    only the representations in ``pairs`` are read)."""
    wanted = list(pairs)
    names = list(grams)
    used = sorted({a for pair in wanted for a in pair}, key=names.index)
    per_rep = [g() if callable(g) else g for g in (grams[name] for name in used)]
    counts = {len(g) for g in per_rep}
    if len(counts) != 1:
        raise ValueError(f"CKA needs the same batches for every representation; batch counts {sorted(counts)}")
    total = torch.zeros(len(used), len(used), dtype=torch.float64)
    for i in range(counts.pop()):
        total += _hsic_matrix([torch.from_numpy(np.asarray(g[i])).double() for g in per_rep])
    index = {name: i for i, name in enumerate(used)}
    h = total.numpy()
    return {(a, b): _ratio(h[index[a], index[b]], h[index[a], index[a]], h[index[b], index[b]]) for a, b in wanted}


def minibatch_cka(
    reps: Mapping[K, np.ndarray],
    pairs: Iterable[tuple[K, K]] | None = None,
    batch: int = BATCH,
    order: np.ndarray | None = None,
    seed: int = 0,
) -> dict[tuple[K, K], float]:
    """Minibatch debiased CKA of every requested pair of representations (default: all pairs).

    ``reps`` maps a name to an ``(n, ...)`` array (memory-mapped arrays are read one batch at a
    time); every array holds the same n images in the same order. The batches follow ``order``
    (positions into the arrays; default: a permutation seeded by ``seed``), never the stored order.
    Each batch's Gram matrix is built once per representation and used for all its pairs.
    """
    names: Sequence[K] = list(reps)
    lengths = {len(reps[k]) for k in names}
    if len(lengths) != 1:
        raise ValueError(f"CKA needs the same images in every representation; lengths {sorted(lengths)}")
    wanted = list(pairs) if pairs is not None else [(a, b) for a, b in combinations_with_replacement(names, 2)]
    used = sorted({a for pair in wanted for a in pair}, key=names.index)
    positions = _positions(lengths.pop(), order, seed)
    grams = {name: batch_grams(reps[name], batch, positions) for name in used}
    return cka_from_grams(grams, wanted)


def _hsic_matrix(grams: Sequence[torch.Tensor]) -> torch.Tensor:
    """HSIC₁ of every pair of the Gram matrices of one batch at once: the three terms of
    :func:`unbiased_hsic` as a Gram matrix of the flattened zero-diagonal kernels, an outer product
    of their sums and one of their column sums."""
    n = grams[0].shape[0]
    if n < 4:
        raise ValueError(f"the unbiased HSIC needs at least 4 images, got {n}")
    zeroed = torch.stack([g - torch.diag_embed(torch.diagonal(g)) for g in grams])  # (m, n, n)
    flat = zeroed.reshape(len(grams), -1)
    sums, columns = flat.sum(dim=1), zeroed.sum(dim=1)
    trace = flat @ flat.T
    return (trace + torch.outer(sums, sums) / ((n - 1) * (n - 2)) - 2 * (columns @ columns.T) / (n - 2)) / (n * (n - 3))
