"""What the ``compare`` stage adds on top of :func:`.measures.compute_measures`: the overviews that set
each between-variant value beside its seed-to-seed baseline, the claims table with its verdicts, and
the headline numbers of ``metrics/compare.json``.

Why a module of its own: :mod:`.measures` computes the numbers of every network and layer; this one
reads those tables back as a study (which pairs are baselines, which claims they test, what is
headline) and needs nothing of the activations but the predictive entropies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cnnscope.activations import SOFTMAX, ActivationSet
from cnnscope.analysis.claim_family import COLUMNS, join_contrasts, with_holm
from cnnscope.analysis.claims import claims_table
from cnnscope.analysis.information import entropy
from cnnscope.analysis.measures import (
    EVAL,
    INPUT,
    MeasureResults,
    MeasureSettings,
    Net,
    compute_measures,
)
from cnnscope.analysis.network import NetworkMeasures


def _comparison(row: pd.Series) -> tuple[str, str]:
    """Name and kind of one network pair: between variants (same seed), seed-to-seed, or to the input."""
    a, b = str(row["variant_a"]), str(row["variant_b"])
    if b == INPUT:
        return f"{a} vs input", "input"
    if a == b:
        return f"{a} seed vs seed", "seed-to-seed"
    if row["seed_a"] == row["seed_b"]:
        return f"{a} vs {b}", "between"
    return f"{a} vs {b} (other seeds)", "between, other seeds"


def pair_overview(table: pd.DataFrame, values: Sequence[str]) -> pd.DataFrame:
    """Means over seeds of ``values`` per layer and comparison (a pair of variants at the same seed,
    two seeds of one variant — the baseline a between-variant value must be read against — or a
    variant and the input pixels), with the number of network pairs averaged."""
    if not len(table):
        return pd.DataFrame(columns=["layer", "comparison", "kind", *values, "pairs"])
    named = table.assign(
        comparison=[_comparison(r)[0] for _, r in table.iterrows()],
        kind=[_comparison(r)[1] for _, r in table.iterrows()],
    )
    named = named[named["kind"] != "between, other seeds"]
    grouped = named.groupby(["layer", "comparison", "kind"], sort=False)
    out = grouped[list(values)].mean()
    out["pairs"] = grouped.size()
    return out.reset_index()


def predictive_entropy(sets: Mapping[Net, ActivationSet]) -> dict[Net, np.ndarray]:
    """Per-image predictive entropy (bits) of each network's float32 class probabilities."""
    return {
        net: entropy(np.asarray(aset.array(EVAL, SOFTMAX), dtype=np.float64))
        for net, aset in sets.items()
        if SOFTMAX in aset.layers
    }


def study_claims(
    results: MeasureResults,
    sets: Mapping[Net, ActivationSet],
    tables: Mapping[str, pd.DataFrame],
    contrasts: Sequence[Sequence[str]],
    feature_maps: Sequence[str],
    confidence: float,
    resamples: int,
    sesoi: Mapping[str, float],
    null_models: Sequence[str],
) -> pd.DataFrame:
    """Claims (a), (a′), (b), (e), VI and their controls against the first of ``null_models`` for
    every ``[variant, reference]`` contrast (claims (c), (d) need the OIP stage and are added by the
    report), with image-level bootstrap intervals beside them and the Holm-adjusted p over the table."""
    entropies = predictive_entropy(sets)
    variants = list(dict.fromkeys(v for v, _ in sets))
    seeds = sorted({s for _, s in sets})

    def per_image(quantity: str, layer: str, variant: str) -> np.ndarray | None:
        if quantity == "predictive_entropy_bits":
            rows = [entropies[variant, s] for s in seeds if (variant, s) in entropies]
        else:
            rows = [
                results.per_image[variant, s, layer][quantity]
                for s in seeds
                if (variant, s, layer) in results.per_image
            ]
        return np.nan_to_num(np.stack(rows), nan=0.0) if rows else None

    merged = {**tables, **results.tables}
    first = feature_maps[0] if feature_maps else None
    deepest = feature_maps[-1] if feature_maps else None
    null = next((v for v in null_models if v in variants), None)
    frames = [
        claims_table(
            a,
            b,
            variants,
            merged,
            first,
            deepest,
            None,
            per_image,
            confidence=confidence,
            resamples=resamples,
            sesoi=sesoi,
            min_converged=None,  # no OIP summaries here: the report adds claims (c), (d)
            null=null,
        )
        for a, b in contrasts
    ]
    return with_holm(join_contrasts(frames)) if frames else pd.DataFrame(columns=COLUMNS)


def measure_study(
    sets: Mapping[Net, ActivationSet],
    pixels: np.ndarray,
    layers: Sequence[str],
    feature_maps: Sequence[str],
    classes: Sequence[str],
    tables: Mapping[str, pd.DataFrame],
    contrasts: Sequence[Sequence[str]],
    settings: MeasureSettings,
    resamples: int,
    reference_heads: Mapping[Net, ActivationSet] | None = None,
    null_models: Sequence[str] = (),
    networks: Mapping[Net, NetworkMeasures] | None = None,
    histograms: Mapping[Net, Mapping[str, np.ndarray]] | None = None,
) -> MeasureResults:
    """What the compare stage adds to :func:`~cnnscope.analysis.compare_study`'s ``tables``: every
    measure, the CKA and matching overviews (seed-to-seed baselines beside between-variant
    values) and the claims table."""
    res = compute_measures(sets, pixels, layers, feature_maps, classes, settings, reference_heads, networks, histograms)
    res.tables["cka_overview"] = pair_overview(res.tables["cka"], ["cka"])
    summary = res.tables["matching_summary"]
    columns = ["matched_corr", "same_index_corr", "best_corr", "same_index_fraction"]
    res.tables["matching_overview"] = pair_overview(summary, columns) if len(summary) else summary
    res.tables["claims"] = study_claims(
        res, sets, tables, contrasts, feature_maps, settings.confidence, resamples, settings.sesoi, null_models
    )
    return res


def headline(
    tables: Mapping[str, pd.DataFrame],
    variants: Sequence[str],
    seeds: Sequence[int],
    feature_maps: Sequence[str],
    eval_images: int,
) -> dict[str, Any]:
    """The headline numbers for ``metrics/compare.json``: per variant the accuracy and predictive
    entropy, the deepest map's scale-free sparsity and entropy and its spatial-probe accuracy, the
    first map's CKA to the pixels (means over seeds); and every claim's verdict. Everything else
    is in the tables."""

    def mean(table: str, value: str, **where: Any) -> float:
        rows = tables.get(table)
        if rows is None or rows.empty:
            return float("nan")
        for key, wanted in where.items():
            rows = rows[rows[key] == wanted]
        return round(float(rows[value].mean()), 4) if len(rows) else float("nan")

    deepest = feature_maps[-1] if feature_maps else None
    first = feature_maps[0] if feature_maps else None
    out: dict[str, Any] = {"eval_images": eval_images, "seeds": list(seeds), "variants": {}}
    for v in variants:
        entry = {
            "accuracy": mean("certainty", "correct", variant=v, sample=EVAL),
            "predictive_entropy_bits": mean("certainty", "entropy_bits", variant=v, sample=EVAL),
        }
        if deepest is not None:
            entry[f"{deepest}_hoyer"] = mean("scale_free", "hoyer", variant=v, layer=deepest)
            entry[f"{deepest}_entropy_norm_bits"] = mean("scale_free", "entropy_norm_bits", variant=v, layer=deepest)
            entry[f"{deepest}_spatial_probe_acc"] = mean("spatial_probe", "accuracy", variant=v, layer=deepest)
        if first is not None:
            entry[f"{first}_cka_to_input"] = mean("cka", "cka", variant_a=v, layer=first, variant_b=INPUT)
        out["variants"][v] = entry
    claims = tables.get("claims")
    if claims is not None and len(claims):
        # numbers only (`dvc metrics show` / `dvc exp show` columns): each claim's mean paired
        # difference, keyed by its letter and rank; statements and verdicts are in tables/claims.csv
        rank: dict[str, int] = {}
        out["claims"] = {}
        for _, r in claims.iterrows():
            rank[str(r["claim"])] = rank.get(str(r["claim"]), 0) + 1
            out["claims"][f"{r['claim']}{rank[str(r['claim'])]}"] = round(float(r["mean_difference"]), 4)
        out["claims_holding"] = int((claims["verdict"] == "holds").sum())
    return out


__all__ = ["headline", "measure_study", "pair_overview", "predictive_entropy", "study_claims"]
