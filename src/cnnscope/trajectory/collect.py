"""The files a trajectory stage writes, and the study's trajectories read back as one table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

TABLE, MAPS_TABLE, TENSORS = "trajectory.csv", "maps.csv", "oips.pt"


def read_trajectories(folder: Path, variants: Sequence[str], seeds: Sequence[int], name: str = TABLE) -> pd.DataFrame:
    """Every ``<folder>/<variant>/seed<k>/<name>`` that exists, with ``variant`` and ``seed`` columns
    (empty when none does)."""
    frames = []
    for variant in variants:
        for seed in seeds:
            path = folder / variant / f"seed{seed}" / name
            if path.is_file():
                frame = pd.read_csv(path, keep_default_na=False, na_values=["nan"])
                frames.append(frame.assign(variant=variant, seed=seed))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_oips(folder: Path, variant: str, seed: int) -> dict[str, object] | None:
    """The tracked maps' OIPs over training of one network (``oips.pt``), or None."""
    path = folder / variant / f"seed{seed}" / TENSORS
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
