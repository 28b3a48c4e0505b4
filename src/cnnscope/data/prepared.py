"""The prepared dataset: what the ``prepare`` stage writes and every later stage reads.

One file, ``dataset.pt``, holds uint8 images ``(N, C, H, W)``, int64 labels, class names, the
per-channel mean/std of the training split (images scaled to [0, 1]) and index tensors into
``images`` for each split, each nested training subset and the probe images. Everything is a
tensor, a list of str/float or a dict of those, so it loads with ``torch.load(weights_only=True)``.
A ``manifest.json`` beside it records the source, file checksums, sizes and probe ids.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnscope.errors import CnnscopeError
from cnnscope.io import atomic_write

DATASET_FILE = "dataset.pt"


@dataclass
class PreparedData:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    classes: list[str]
    mean: list[float]  # per channel, training split, [0, 1] scale
    std: list[float]
    #: ``train``, ``val``, ``test`` and ``probe``: int64 indices into ``images``.
    splits: dict[str, torch.Tensor]
    #: Nested training subsets keyed by their configured size (``"0.2"``, ``"10000"``).
    subsets: dict[str, torch.Tensor] = field(default_factory=dict)
    probe_names: list[str] = field(default_factory=list)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of a split (``train``/``val``/``test``/``probe``) or subset key."""
        if name in self.splits:
            idx = self.splits[name]
        elif name in self.subsets:
            idx = self.subsets[name]
        else:
            raise KeyError(
                f"no split or subset {name!r}; splits: {sorted(self.splits)}, subsets: {sorted(self.subsets)}"
            )
        return self.images[idx], self.labels[idx]

    def to_dict(self) -> dict[str, object]:
        return {
            "images": self.images,
            "labels": self.labels,
            "classes": list(self.classes),
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
            "splits": dict(self.splits),
            "subsets": dict(self.subsets),
            "probe_names": list(self.probe_names),
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``dataset.pt`` atomically; returns its path."""
        path = Path(directory) / DATASET_FILE
        with atomic_write(path, binary=True) as fh:
            torch.save(self.to_dict(), fh)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> PreparedData:
        path = Path(directory) / DATASET_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no prepared dataset at {path}: run the prepare stage (dvc repro prepare)")
        try:
            content = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:  # truncated, corrupt, not ours
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0][:160]
            raise CnnscopeError(
                f"{path} cannot be read ({reason}): it is truncated or corrupt — restore it with `dvc checkout "
                f"{directory}` or re-run the prepare stage (dvc repro prepare)"
            ) from None
        return cls(**content)


def subset_key(size: float) -> str:
    """Canonical key of a subset size: ``0.2`` → ``"0.2"``, ``10000.0`` → ``"10000"``."""
    return str(int(size)) if float(size) > 1 else repr(float(size))
