"""What a map extracts, in words: how class-selective its top exemplars are.

A map's top exemplars (the ``exemplars`` stage: the k test images whose maximum over positions is
highest) carry labels. Their class histogram ``p`` gives a **class selectivity**
``1 − H(p) / log₂ min(k, C)`` in [0, 1] — 1 when all k images are of one class, 0 when they are
spread as evenly as k images over C classes can be (the normaliser is ``min(k, C)`` because 9
images can hold at most 9 classes) — and a **dominant class** with its share. A map is *mostly one
class* when more than half its top images share a class. A map silent on data (its best image
drives it to 0 or less) has no meaningful top images and is left out.

Even a random network's maps have top images from few classes by chance and by pixel statistics,
so each layer's mean selectivity is read beside the untrained network's, and variants are compared
on paired per-seed differences (:func:`cnnscope.analysis.verdicts.seed_verdict`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cnnscope.analysis.verdicts import seed_verdict


def map_selectivity(top_labels: np.ndarray, top_values: np.ndarray, num_classes: int) -> pd.DataFrame:
    """One row per map from its top images' labels ``(M, k)`` and values ``(M, k)``: ``selectivity``,
    ``dominant`` (class index), ``dominant_share``, ``silent`` (NaN selectivity when silent)."""
    labels = np.asarray(top_labels, dtype=np.int64)
    m, k = labels.shape
    counts = np.stack([np.bincount(row, minlength=num_classes) for row in labels]) if m else np.zeros((0, num_classes))
    p = counts / max(k, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
    top = max(2, min(k, num_classes))
    silent = np.asarray(top_values)[:, 0] <= 0 if m else np.zeros(0, bool)
    selectivity = np.where(silent, np.nan, 1 - h / np.log2(top))
    return pd.DataFrame(
        {
            "map": np.arange(m),
            "selectivity": selectivity,
            "dominant": counts.argmax(axis=1) if m else np.zeros(0, int),
            "dominant_share": np.where(silent, np.nan, counts.max(axis=1) / max(k, 1) if m else 0.0),
            "silent": silent,
        }
    )


def layer_summary(maps: pd.DataFrame) -> pd.DataFrame:
    """Per ``variant, seed, layer``: mean selectivity over live maps, the share of live maps that
    are mostly one class, live and silent map counts. ``maps``: :func:`map_selectivity` rows with
    ``variant``, ``seed``, ``layer``."""
    live = maps[~maps["silent"].astype(bool)]
    grouped = live.groupby(["variant", "seed", "layer"], sort=False)
    out = grouped.agg(
        selectivity=("selectivity", "mean"),
        mostly_one_class=("dominant_share", lambda s: float((s > 0.5).mean())),
        live_maps=("map", "size"),
    ).reset_index()
    silent = maps.groupby(["variant", "seed", "layer"], sort=False)["silent"].sum().rename("silent_maps")
    return out.merge(silent.reset_index(), on=["variant", "seed", "layer"], how="right").fillna({"live_maps": 0})


def layer_contrasts(
    summary: pd.DataFrame, contrasts: Sequence[Sequence[str]], null: str | None, confidence: float
) -> pd.DataFrame:
    """Per layer and pair (each contrast, and each contrast's variant against the untrained
    ``null``): the paired per-seed difference of mean selectivity with its seed-level verdict
    (claimed direction: more selective)."""
    pairs = [tuple(c) for c in contrasts]
    if null is not None:
        pairs += [(a, null) for a in dict.fromkeys(c[0] for c in contrasts) if a != null]
    rows = []
    for layer in dict.fromkeys(summary["layer"]):
        table = summary[summary["layer"] == layer].set_index(["variant", "seed"])["selectivity"]
        for a, b in pairs:
            seeds = sorted(
                {s for v, s in table.index if v == a} & {s for v, s in table.index if v == b}
            )  # fmt: skip
            d = np.array([table[a, s] - table[b, s] for s in seeds], dtype=np.float64)
            # compare.sesoi has no smallest effect for selectivity: 0 gives no equivalence verdict
            rows.append({"layer": layer, "variant": a, "reference": b, **seed_verdict(d, 1, confidence, 0.0)})
    return pd.DataFrame(rows)


def paragraph(
    layer: str, summary: pd.DataFrame, contrasts: pd.DataFrame, classes: Sequence[str], maps: pd.DataFrame
) -> str:
    """A few generated sentences on ``layer``: per variant the share of maps that respond mostly to
    one class and the mean selectivity (over seeds), the most common dominant classes of the first
    variant, and each comparison's verdict."""
    rows = summary[summary["layer"] == layer]
    means = rows.groupby("variant", sort=False)[["selectivity", "mostly_one_class"]].mean()
    parts = [
        f"{v}: {r['mostly_one_class']:.0%} of live maps respond mostly to one class "
        f"(mean selectivity {r['selectivity']:.2f})"
        for v, r in means.iterrows()
    ]
    text = f"`{layer}` — " + "; ".join(parts) + "."
    first = maps[(maps["layer"] == layer) & ~maps["silent"].astype(bool) & (maps["dominant_share"] > 0.5)]
    if len(first):
        lead = first[first["variant"] == first["variant"].iloc[0]]
        common = lead["dominant"].value_counts().head(3)
        named = ", ".join(f"{classes[int(c)]} ({n})" for c, n in common.items())
        text += f" The classes {lead['variant'].iloc[0]}'s one-class maps prefer most (maps, all seeds): {named}."
    # a study without contrasts has an empty table without columns
    for _, c in (contrasts[contrasts["layer"] == layer] if len(contrasts) else contrasts).iterrows():
        text += (
            f" {c['variant']} − {c['reference']}: {c['mean_difference']:+.3f} over {int(c['n_seeds'])} seeds, "
            f"[{c['seed_ci_low']:+.3f}, {c['seed_ci_high']:+.3f}], {c['verdict']}."
        )
    return text
