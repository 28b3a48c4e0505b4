"""What the compare stage writes beside its tables for the review tools: metrics flattened for MLflow and the
per-variant layer profiles ``dvc plots`` draws."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnnscope.io import atomic_dir


def flat_metrics(tree: dict[str, Any], prefix: str) -> dict[str, float]:
    """``{prefix/key/...: number}`` of a nested summary (NaN left out), the form MLflow metrics take."""
    out: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}"
        if isinstance(value, dict):
            out.update(flat_metrics(value, name))
        elif isinstance(value, int | float) and value == value:  # skip NaN
            out[name] = float(value)
    return out


#: Columns of a variant's layer profile for ``dvc plots``: scale-free, so experiments compare.
PROFILE_COLUMNS = ["depth", "layer", "hoyer", "entropy_norm_bits", "kurtosis", "cka_to_input"]


def layer_profiles(tables: dict[str, pd.DataFrame], variants: list[str]) -> dict[str, pd.DataFrame]:
    """Per variant, one row per layer in forward order (``depth`` 0, 1, …): the scale-free
    statistics and the CKA to the pixels, means over seeds. ``dvc plots diff`` draws one line per
    variant and experiment from these (``plots/compare/<variant>.csv``), layer by layer."""
    sf = tables["scale_free"]
    cka = tables.get("cka")
    layers = list(dict.fromkeys(sf["layer"]))
    out = {}
    for v in variants:
        rows = sf[sf["variant"] == v]
        if rows.empty:
            continue
        profile = rows.groupby("layer", sort=False)[["hoyer", "entropy_norm_bits", "kurtosis"]].mean().reindex(layers)
        if cka is not None and len(cka):
            to_input = cka[(cka["variant_a"] == v) & (cka["variant_b"] == "input")]
            profile["cka_to_input"] = to_input.groupby("layer", sort=False)["cka"].mean().reindex(layers)
        else:
            profile["cka_to_input"] = np.nan
        profile = profile.round(4).reset_index().rename(columns={"index": "layer"})
        profile.insert(0, "depth", range(len(profile)))
        out[v] = profile[PROFILE_COLUMNS]
    return out


def write_layer_profiles(tables: dict[str, pd.DataFrame], variants: list[str], folder: Path) -> None:
    """:func:`layer_profiles` as ``<folder>/<variant>.csv``, the folder replaced atomically."""
    with atomic_dir(folder) as tmp:
        for variant, profile in layer_profiles(tables, variants).items():
            profile.to_csv(tmp / f"{variant}.csv", index=False)
