"""The files a trajectory stage writes, and the study's trajectories read back as one table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cnnscope.layout import TRAJECTORY_TABLE, has_oips, load_oips, run_dir


def read_trajectories(
    folder: Path, variants: Sequence[str], seeds: Sequence[int], name: str = TRAJECTORY_TABLE
) -> pd.DataFrame:
    """Every ``<folder>/<variant>/seed<k>/<name>`` that exists, with ``variant`` and ``seed`` columns
    (empty when none does)."""
    frames = []
    for variant in variants:
        for seed in seeds:
            path = run_dir(folder, variant, seed) / name
            if path.is_file():
                frame = pd.read_csv(path, keep_default_na=False, na_values=["nan"])
                frames.append(frame.assign(variant=variant, seed=seed))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_oips(folder: Path, variant: str, seed: int) -> dict[str, object] | None:
    """The tracked maps' OIPs over training of one network (``oips.pt``), or None."""
    path = run_dir(folder, variant, seed)
    return load_oips(path) if has_oips(path) else None
