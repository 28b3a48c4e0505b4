"""The ``prepare`` stage's library half: source → :class:`PreparedData` + manifest.

Order of operations (all seeded by ``data.split_seed``):
1. probes are taken from the source's test split (or from a test split carved off a source that
   has none) and removed from it, so no probe is in any split a model trains or selects on;
2. validation is a stratified ``val_fraction`` of the training pool (or of the test split, with
   ``val_from: test``);
3. the rest is put in stratified order; the training split is its first ``train_size`` images and
   every subset a shorter prefix — nested by construction.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import torch

from cnnscope.config import DataConfig, ValSource, to_container
from cnnscope.data.prepared import PreparedData, subset_key
from cnnscope.data.sources import DataError, RawSource, load_source
from cnnscope.data.splits import resolve_probes, split_off, stratified_order, subset_counts
from cnnscope.io import atomic_dir, file_sha256, resolve_user_path, write_json
from cnnscope.layout import MANIFEST


def build_prepared(source: RawSource, cfg: DataConfig) -> PreparedData:
    """Splits, subsets, probes and training statistics for ``source`` under ``cfg``."""
    gen = torch.Generator().manual_seed(cfg.split_seed)
    n_train_pool = len(source.train_labels)
    if source.test_images is None or source.test_labels is None:
        images, labels = source.train_images, source.train_labels
        pool, test = split_off(torch.arange(n_train_pool), labels, cfg.test_fraction, gen)
        test = test.sort().values  # probe indices count in the source's own order
    else:
        images = torch.cat([source.train_images, source.test_images])
        labels = torch.cat([source.train_labels, source.test_labels])
        pool, test = torch.arange(n_train_pool), torch.arange(n_train_pool, len(labels))
    if len(test) == 0:
        raise DataError("the test split is empty: raise data.test_fraction or provide a test/ folder")

    probe_pos, probe_names = resolve_probes(list(cfg.probes), labels[test], source.classes)
    probes = test[probe_pos]
    test = test[~torch.isin(test, probes)]

    if cfg.val_from == ValSource.test:
        test, val = split_off(test, labels, cfg.val_fraction, gen)
        test = test.sort().values
    else:
        pool, val = split_off(pool, labels, cfg.val_fraction, gen)
    order = pool[stratified_order(labels[pool], gen)]
    if cfg.train_size is not None:
        if cfg.train_size > len(order):
            raise DataError(
                f"data.train_size={cfg.train_size} exceeds the {len(order)} images left for training "
                f"after validation: lower it or data.val_fraction"
            )
        order = order[: cfg.train_size]
    counts = subset_counts([float(s) for s in cfg.subsets], len(order))
    subsets = {subset_key(size): order[:count] for size, count in zip(cfg.subsets, counts, strict=True)}

    mean, std = channel_stats(images[order])
    return PreparedData(
        images=images.contiguous(),
        labels=labels,
        classes=list(source.classes),
        mean=mean,
        std=std,
        splits={"train": order, "val": val, "test": test, "probe": probes},
        subsets=subsets,
        probe_names=probe_names,
    )


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and sample standard deviation of uint8 ``images`` (N, C, H, W) on [0, 1].

    Exact: each channel's histogram of the 256 pixel values is an integer count, and the moments are
    formed from it with Python integers, so the result is the same bytes at any thread count (a float
    reduction is summed in a thread-dependent order). Chunked, so memory stays flat in N.
    """
    counts = torch.zeros(images.shape[1], 256, dtype=torch.int64)
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk].transpose(0, 1).reshape(images.shape[1], -1).long()
        for c in range(images.shape[1]):
            counts[c] += torch.bincount(block[c], minlength=256)
    values = range(256)
    means, stds = [], []
    for row in counts.tolist():
        n = sum(row)
        s1 = sum(v * k for v, k in zip(values, row, strict=True))
        s2 = sum(v * v * k for v, k in zip(values, row, strict=True))
        means.append(s1 / (255 * n))
        stds.append(math.sqrt((n * s2 - s1 * s1) / (n * (n - 1))) / 255)
    return means, stds


def manifest(prepared: PreparedData, source: RawSource, cfg: DataConfig, dataset_path: Path) -> dict[str, Any]:
    """What was prepared from what: the record every later result points back to."""
    root = resolve_user_path(cfg.root).resolve() if cfg.root else None
    files = {_display_path(p, root): _checksum(p) for p in source.files}
    return {
        "source": cfg.name.value,
        "config": to_container_data(cfg),
        "files_sha256": files,
        "dataset_sha256": file_sha256(dataset_path),
        "image_shape": list(prepared.images.shape[1:]),
        "classes": prepared.classes,
        "mean": prepared.mean,
        "std": prepared.std,
        "sizes": {name: len(idx) for name, idx in prepared.splits.items()},
        "subset_sizes": {key: len(idx) for key, idx in prepared.subsets.items()},
        "probes": [
            {"name": name, "index": int(idx), "label": prepared.classes[int(prepared.labels[idx])]}
            for name, idx in zip(prepared.probe_names, prepared.splits["probe"], strict=True)
        ],
    }


def to_container_data(cfg: DataConfig) -> dict[str, Any]:
    return to_container(cfg)


def _display_path(path: Path, root: Path | None) -> str:
    """A machine-independent name for a source file: relative to ``data.root``, or its package path."""
    resolved = path.resolve()
    if root is not None and resolved.is_relative_to(root):
        return str(resolved.relative_to(root)) if resolved != root else resolved.name
    return "/".join(resolved.parts[-3:])


def _checksum(path: Path) -> str:
    """sha256 of a file, or of the sorted (relative path, content hash) list of a folder's files."""
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(f"{file.relative_to(path)}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def prepare(cfg: DataConfig, out_dir: Path) -> dict[str, Any]:
    """Read the source, build splits and write ``out_dir`` atomically; returns the manifest."""
    source = load_source(cfg)
    prepared = build_prepared(source, cfg)
    with atomic_dir(out_dir) as tmp:
        dataset_path = prepared.save(tmp)
        record = manifest(prepared, source, cfg, dataset_path)
        write_json(tmp / MANIFEST, record)
    return record
