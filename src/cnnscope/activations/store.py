"""Streaming on-disk format for captured activations: one ``.npy`` per group and stored layer.

Layout of an activation directory (one variant and seed)::

    manifest.json             layers, per-sample shapes, dtype, kinds, sample ids, labels, names,
                              and the recipe of every layer that is derived rather than stored
    <group>/<layer>.npy       (N, *shape) array of a stored layer; groups are ``probe`` and ``eval``
    <group>/input.npy         (N, C, H, W) uint8 images the network saw (before standardisation)
    first_conv_weight.npy     the learned first-layer kernels (out, in, k, k), float32
    recipe_weights.npz        float32 parameters of the recipes that need them (a convolution on
                              the input)

Layers that cost more to write than to recompute (ReLU, max-pooling, flatten, a convolution on the
input; see :mod:`cnnscope.activations.recipes`) have no file: :meth:`ActivationSet.array`
recomputes them.

Each ``.npy`` gets its header (with the final shape) first and its rows appended batch by batch,
so memory stays flat in N: only one batch of activations is ever held. Plain writes are used
instead of a write-mode memmap because dirty mapped pages count against the process' resident
memory until flushed. Readers open the files with ``np.load(mmap_mode="r")``.
"""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from cnnscope.activations.recipes import INPUT, Recipe, apply
from cnnscope.layout import MANIFEST

FIRST_CONV_FILE = "first_conv_weight.npy"
RECIPE_WEIGHTS = "recipe_weights.npz"
FORMAT = "cnnscope-activations/3"


class NpyStreamWriter:
    """Append rows to an ``.npy`` file whose total shape is known up front."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self.path, self.shape, self.dtype = path, shape, dtype
        self.rows = 0
        self._fh: IO[bytes] = path.open("wb")
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_2_0(self._fh, header)

    def append(self, batch: np.ndarray) -> None:
        if batch.shape[1:] != self.shape[1:] or batch.dtype != self.dtype:
            raise ValueError(
                f"{self.path.name}: batch {batch.shape} {batch.dtype} does not fit {self.shape} {self.dtype}"
            )
        if self.rows + len(batch) > self.shape[0]:
            raise ValueError(f"{self.path.name}: more than {self.shape[0]} rows written")
        self._fh.write(np.ascontiguousarray(batch).data)
        self.rows += len(batch)

    def close(self) -> None:
        self._fh.close()
        if self.rows != self.shape[0]:
            raise ValueError(f"{self.path.name}: {self.rows} rows written, header says {self.shape[0]}")


class GroupWriter:
    """Writers for every stored layer of one group (``probe`` or ``eval``).

    The file writes of batch *k* run on a background thread while the network computes batch
    *k + 1* (writes release the GIL); at most one batch is in flight, so memory stays bounded by two
    batches of activations. Batches arrive in each layer's stored dtype ``dtypes[name]``
    (:func:`~cnnscope.activations.capture.capture` converts them).
    """

    def __init__(
        self, directory: Path, n: int, shapes: dict[str, tuple[int, ...]], dtypes: dict[str, torch.dtype]
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.writers = {
            name: NpyStreamWriter(directory / f"{name}.npy", (n, *shape), _numpy_dtype(dtypes[name]))
            for name, shape in shapes.items()
        }
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="activation-writer")
        self._pending: Future[None] | None = None

    def _write(self, outputs: dict[str, torch.Tensor]) -> None:
        for name, writer in self.writers.items():
            writer.append(outputs[name].cpu().numpy())

    def append(self, outputs: dict[str, torch.Tensor]) -> None:
        self._wait()
        self._pending = self._pool.submit(self._write, outputs)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self._pool.shutdown()
            for writer in self.writers.values():
                writer.close()


def _numpy_dtype(dtype: torch.dtype) -> np.dtype[Any]:
    return np.dtype(torch.empty(0, dtype=dtype).numpy().dtype)


@dataclass(frozen=True)
class GroupInfo:
    """What a group holds: sample ids (indices into the prepared images), labels, optional names."""

    name: str
    sample_ids: list[int]
    labels: list[int]
    names: list[str]

    def __len__(self) -> int:
        return len(self.sample_ids)


class ActivationSet:
    """Read access to one activation directory (a variant and seed): stored layers memory-mapped, derived
    layers recomputed from their recipes."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        path = self.directory / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"no activations at {self.directory} (missing {MANIFEST}): run extract")
        self.manifest: dict[str, Any] = json.loads(path.read_text())
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{path}: format {self.manifest.get('format')!r}, expected {FORMAT!r}")

    @property
    def layers(self) -> list[str]:
        return list(self.manifest["layers"])

    @property
    def feature_maps(self) -> list[str]:
        """Captured post-ReLU convolution outputs, shallow to deep."""
        return list(self.manifest["feature_maps"])

    @property
    def kinds(self) -> dict[str, str]:
        return dict(self.manifest["kinds"])

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    def group(self, name: str) -> GroupInfo:
        groups = self.manifest["groups"]
        if name not in groups:
            raise KeyError(f"{self.directory}: no group {name!r}; groups are {sorted(groups)}")
        g = groups[name]
        return GroupInfo(name, list(g["sample_ids"]), list(g["labels"]), list(g.get("names", [])))

    def array(self, group: str, layer: str) -> np.ndarray:
        """The ``(N, *shape)`` activations of ``layer`` for ``group``, in the stored dtype.

        A stored layer is memory-mapped read-only. A derived layer is recomputed from the stored
        layer (or the input images) its recipes start at, in batches of the extraction's size, into
        a new in-memory array. It is not cached: a cache holding every derived layer of every set
        would grow with N, and recomputing costs far less than the analyses that read it.
        """
        if layer not in self.manifest["layers"]:
            raise KeyError(f"{self.directory}: layer {layer!r} not captured; captured: {', '.join(self.layers)}")
        self.group(group)
        derived: dict[str, Recipe] = self.manifest["derived"]
        chain: list[str] = []
        source = layer
        while source in derived:  # the layers from the stored source the chain starts at, in order
            chain.insert(0, source)
            source = derived[source]["source"]
        if not chain:
            return np.load(self._path(group, layer), mmap_mode="r")
        rows = np.load(self._path(group, source), mmap_mode="r")
        dtype: torch.dtype = getattr(torch, self.manifest["dtype"])
        params = self._recipe_weights() if any(derived[name]["op"] == "conv2d" for name in chain) else {}
        out = np.empty((len(rows), *self.manifest["shapes"][layer]), dtype=self.manifest["dtype"])
        step = self.manifest["batch_size"]
        for start in range(0, len(rows), step):
            x = torch.from_numpy(np.array(rows[start : start + step]))
            if source == INPUT:
                x = self._standardize(x)
            for name in chain:
                x = apply(name, derived[name], x, params).to(dtype)
            out[start : start + len(x)] = x.numpy()
        return out

    def _path(self, group: str, layer: str) -> Path:
        return self.directory / group / f"{layer}.npy"

    def _standardize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images → the standardised float32 input, by the same operations as the model's."""
        stats = self.manifest[INPUT]
        mean = torch.tensor(stats["mean"], dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(stats["std"], dtype=torch.float32).view(1, -1, 1, 1)
        return (images.float() / 255 - mean) / std

    def _recipe_weights(self) -> dict[str, np.ndarray]:
        with np.load(self.directory / RECIPE_WEIGHTS) as archive:
            return {key: archive[key] for key in archive.files}

    def first_conv_weight(self) -> np.ndarray | None:
        path = self.directory / FIRST_CONV_FILE
        return np.load(path) if path.is_file() else None
