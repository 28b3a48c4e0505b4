"""The compact metrics of a study for ``dvc metrics show`` (``metrics/compare.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnnscope.activations import SOFTMAX
from cnnscope.io import atomic_dir


def dvc_summary(
    tables: dict[str, pd.DataFrame],
    variants: list[str],
    seeds: list[int],
    feature_maps: list[str],
    eval_images: int,
    contrasts: list[tuple[str, str]],
) -> dict[str, Any]:
    """Per variant: accuracy and the feature maps' entropy, sparsity and probe accuracy (mean ± std
    over seeds); per contrast ``a − b`` (key ``<a>_minus_<b>``): the entropy and sparsity differences."""
    summ = tables["seed_summary"]

    def get(v: str, L: str, q: str) -> tuple[float, float]:
        row = summ[(summ["variant"] == v) & (summ["layer"] == L) & (summ["quantity"] == q)]
        return (
            (round(float(row["mean"].iloc[0]), 4), round(float(row["std"].iloc[0]), 4))
            if len(row)
            else (np.nan, np.nan)
        )

    out: dict[str, Any] = {"eval_images": eval_images, "seeds": seeds, "variants": {}}
    for v in variants:
        entry: dict[str, Any] = {}
        if "certainty" in tables:
            entry["accuracy"], entry["accuracy_std"] = get(v, SOFTMAX, "accuracy")
            entry["softmax_entropy_bits"], _ = get(v, SOFTMAX, "softmax_entropy_bits")
        for L in feature_maps:
            e, es = get(v, L, "entropy_bits")
            sp, sps = get(v, L, "sparsity")
            acc, _ = get(v, L, "probe_accuracy")
            entry[L] = {
                "entropy_bits": e,
                "entropy_bits_std": es,
                "sparsity": sp,
                "sparsity_std": sps,
                "linear_probe_acc": acc,
            }
        out["variants"][v] = entry
    diffs = tables["differences"]
    for a, b in contrasts:
        bd = diffs[(diffs["variant"] == a) & (diffs["reference"] == b)] if len(diffs) else diffs
        if len(bd):
            out[f"{a}_minus_{b}"] = {
                L: {
                    q: {
                        k: round(float(r[k]), 4) if k != "holds" else bool(r[k])
                        for k in ("difference", "ci_low", "ci_high", "holds")
                    }
                    for q, r in bd[bd["layer"] == L].set_index("quantity").iterrows()
                    if q in ("entropy_bits", "sparsity")
                }
                for L in [*feature_maps, SOFTMAX]
                if L in set(bd["layer"])
            }
    return out


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
