"""Compare every variant and seed of a study: the numbers behind the ``compare`` stage.

Input: the activation sets of ``variants × seeds`` (all extracted on the same probe and
evaluation images) and those images. Output: tidy pandas tables — one per quantity, one row per
variant, seed, image group and layer — plus the small arrays the figures need. The definitions of
each quantity live in the modules that compute them (:mod:`.information`, :mod:`.histograms`,
:mod:`.certainty`, :mod:`.patterns`, :mod:`.linear_probe`, :mod:`.seeds`).

Image groups: ``eval`` (the evaluation sample, histograms pooled over its images) and each probe
image by name. The input pixels (in [0, 1]) are binned into ``bins`` bins on [0, 1] and act as the
reference for the *information gain* of a layer, ``H(input) − H(layer)`` in bits, and for its
``JS(layer, input)``: both histograms have ``bins`` equal-width bins over their own shared range,
so the divergence compares the *shapes* of the two distributions after mapping each range to [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import permutations
from typing import Any

import numpy as np
import pandas as pd
import torch

from cnnscope.activations import SOFTMAX, ActivationSet
from cnnscope.analysis.certainty import certainty
from cnnscope.analysis.edge_filters import edge_filter_stages
from cnnscope.analysis.histograms import ImageMoments, image_histograms, image_moments, pooled_pixels, shared_edges
from cnnscope.analysis.information import entropy, js_divergence, kl_divergence, probabilities, smoothed
from cnnscope.analysis.linear_probe import pooled_features, probe_accuracy, probe_split
from cnnscope.analysis.patterns import class_means, class_similarity, common_active
from cnnscope.analysis.seeds import bootstrap_difference, seed_summary
from cnnscope.errors import CnnscopeError
from cnnscope.progress import track

#: Layers that repeat their input (a reshape, eval-mode dropout); left out of histograms and probes.
PASS_THROUGH = {"Flatten", "Dropout", "Identity"}
EVAL = "eval"
INPUT = "input"


#: (variant, seed, group, layer) → per-image values; (variant, seed) → an activation set.
Key = tuple[str, int, str, str]
Sets = Mapping[tuple[str, int], ActivationSet]


class StudyError(CnnscopeError, ValueError):
    """The activation sets cannot be compared (different images or layers)."""


@dataclass
class StudyResults:
    """Tables (tidy DataFrames by name), the metrics summary, and the arrays the figures draw."""

    variants: list[str]
    seeds: list[int]
    classes: list[str]
    layers: list[str]
    feature_maps: list[str]
    probe_names: list[str]
    probe_labels: list[int]
    eval_images: int = 0
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    edges: dict[str, np.ndarray] = field(default_factory=dict)
    #: (variant, group, layer) → counts summed over seeds; ``layer == "input"`` for pixels.
    histograms: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)
    #: layer → variant → probe maps ``(P, C, H, W)`` of the first seed.
    probe_maps: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    #: variant → (mean, std) over seeds of the probes' softmax ``(P, K)``.
    probe_softmax: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    kernels: dict[str, np.ndarray] = field(default_factory=dict)
    #: FCP groups: class label, probe names, and per variant the maps ``(k, C, H, W)`` and common mask.
    fcp_groups: list[dict[str, Any]] = field(default_factory=list)
    #: variant → class-mean maps ``(K, C, H, W)`` of the deepest conv layer (first seed).
    class_mean_maps: dict[str, np.ndarray] = field(default_factory=dict)
    probe_images: np.ndarray | None = None
    edge_stages: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def _check_consistent(sets: dict[tuple[str, int], ActivationSet]) -> tuple[ActivationSet, list[str]]:
    """All sets must hold the same images and share their layers; returns a reference set and layers."""
    items = list(sets.items())
    (ref_key, ref) = items[0]
    layers = [name for name in ref.layers if all(name in s.layers for s in sets.values())]
    if not layers:
        raise StudyError("the activation sets share no layer; re-run extract with the same extract.layers")
    for key, s in items[1:]:
        for group in (EVAL, "probe"):
            if s.group(group).sample_ids != ref.group(group).sample_ids:
                raise StudyError(
                    f"activations of {key[0]} seed {key[1]} hold other {group} images than {ref_key[0]} "
                    f"seed {ref_key[1]}: re-run extract for all variants with the same data and "
                    "extract.eval_samples (dvc repro extract)"
                )
    return ref, layers


def compare_study(
    sets: dict[tuple[str, int], ActivationSet],
    images: torch.Tensor,
    bins: int = 64,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    probe_test_fraction: float = 0.5,
) -> StudyResults:
    """Every comparison of the study. ``images`` are the prepared uint8 images (indexed by sample id)."""
    if not sets:
        raise StudyError("no activation sets to compare")
    ref, layers = _check_consistent(sets)
    variants = list(dict.fromkeys(v for v, _ in sets))
    seeds = sorted({s for _, s in sets})
    kinds = ref.kinds
    layers = [name for name in layers if kinds.get(name) not in PASS_THROUGH]
    ev, pr = ref.group(EVAL), ref.group("probe")
    res = StudyResults(
        variants=variants,
        seeds=seeds,
        classes=ref.classes,
        layers=layers,
        feature_maps=[m for m in ref.feature_maps if m in layers],
        probe_names=pr.names or [f"probe{i}" for i in range(len(pr))],
        probe_labels=pr.labels,
        eval_images=len(ev),
    )
    groups = {EVAL: ev, "probe": pr}
    labels = {g: np.asarray(info.labels) for g, info in groups.items()}
    pixels = {
        g: pooled_pixels(images[torch.as_tensor(info.sample_ids, dtype=torch.long)]) for g, info in groups.items()
    }

    keys = [(v, s, g, L) for (v, s) in sets for g in groups for L in layers]
    with track("compare", 2 * len(keys) + 3) as advance:  # one step per array read, then the tables
        # Pass 1: per-image moments; shared edges per layer over every variant, seed and group.
        moments = {}
        for v, s, g, L in keys:
            moments[v, s, g, L] = image_moments(sets[v, s].array(g, L))
            advance()
        for L in layers:
            lows = [m.low.min() for (_, _, _, l2), m in moments.items() if l2 == L and len(m.low)]
            highs = [m.high.max() for (_, _, _, l2), m in moments.items() if l2 == L and len(m.high)]
            res.edges[L] = shared_edges(float(min(lows)), float(max(highs)), bins)
        res.edges[INPUT] = shared_edges(0.0, 1.0, bins)

        # Pass 2: per-image histograms on the shared edges.
        counts = {}
        for v, s, g, L in keys:
            counts[v, s, g, L] = image_histograms(sets[v, s].array(g, L), res.edges[L])
            advance()
        input_counts = {g: image_histograms(pixels[g], res.edges[INPUT]) for g in groups}

        res.tables["layer_stats"], res.tables["input_stats"], per_image = _layer_stats(
            res, moments, counts, input_counts, pixels
        )
        res.tables["histograms"] = _histogram_table(res, counts, input_counts)
        res.tables["divergences"] = _divergences(res, counts)
        _certainty_tables(res, sets, labels, per_image)
        advance()
        _linear_probes(res, sets, labels[EVAL], probe_test_fraction)
        advance()
        _patterns(res, sets, labels[EVAL])
        advance()
    res.kernels = {v: k for v in variants if (k := sets[v, seeds[0]].first_conv_weight()) is not None}
    probe_ids = torch.as_tensor(pr.sample_ids, dtype=torch.long)
    res.probe_images = images[probe_ids].numpy()
    if len(probe_ids):
        res.edge_stages = edge_filter_stages(images[probe_ids[0]])
    res.tables["differences"] = _differences(res, per_image, bootstrap, confidence)
    res.tables["seed_summary"] = _seed_summaries(res)
    res.summary = _summary(res)
    return res


def _group_names(res: StudyResults) -> list[str]:
    return [EVAL, *res.probe_names]


def _split_groups(res: StudyResults, per_eval: np.ndarray, per_probe: np.ndarray) -> dict[str, np.ndarray]:
    """Pool eval images (sum of counts / rows), keep probe images one by one, as ``group → row``."""
    out = {EVAL: per_eval.sum(axis=0)}
    out.update({name: per_probe[i] for i, name in enumerate(res.probe_names)})
    return out


def _layer_stats(
    res: StudyResults,
    moments: dict[Key, ImageMoments],
    counts: dict[Key, np.ndarray],
    input_counts: dict[str, np.ndarray],
    pixels: dict[str, np.ndarray],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[tuple[str, int, str], dict[str, np.ndarray]]]:
    input_rows = []
    input_hist = _split_groups(res, input_counts[EVAL], input_counts["probe"])
    for g, h in input_hist.items():
        px = pixels[EVAL] if g == EVAL else pixels["probe"][res.probe_names.index(g)][None]
        input_rows.append(
            {
                "group": g,
                "entropy_bits": float(entropy(h)),
                "sparsity": float((px == 0).mean()),
                "mean": float(px.mean()),
                "std": float(px.std()),
            }
        )
    rows, per_image = [], {}
    for (v, s, g, L), m in moments.items():
        if g != EVAL:
            continue
        ev_counts, pr_counts = counts[v, s, EVAL, L], counts[v, s, "probe", L]
        per_image[v, s, L] = {"entropy_bits": entropy(ev_counts), "sparsity": m.sparsity, "mean": m.mean}
        pm = moments[v, s, "probe", L]
        hists = _split_groups(res, ev_counts, pr_counts)
        for group, h in hists.items():
            if group == EVAL:
                mean = float(m.mean.mean())
                std = float(np.sqrt(np.mean(m.std**2 + m.mean**2) - mean**2))
                sparsity = float(m.sparsity.mean())
            else:
                i = res.probe_names.index(group)
                mean, std, sparsity = float(pm.mean[i]), float(pm.std[i]), float(pm.sparsity[i])
            h_layer = float(entropy(h))
            rows.append(
                {
                    "variant": v,
                    "seed": s,
                    "group": group,
                    "layer": L,
                    "entropy_bits": h_layer,
                    "sparsity": sparsity,
                    "mean": mean,
                    "std": std,
                    "info_gain_bits": float(entropy(input_hist[group])) - h_layer,
                    "js_vs_input_bits": float(js_divergence(h, input_hist[group])),
                }
            )
    return pd.DataFrame(rows), pd.DataFrame(input_rows), per_image


def _histogram_table(
    res: StudyResults, counts: dict[Key, np.ndarray], input_counts: dict[str, np.ndarray]
) -> pd.DataFrame:
    frames = []

    def add(variant: str, seed: int, layer: str, group: str, h: np.ndarray) -> None:
        e = res.edges[layer]
        frames.append(
            pd.DataFrame(
                {
                    "variant": variant,
                    "seed": seed,
                    "group": group,
                    "layer": layer,
                    "bin": np.arange(len(h)),
                    "left": e[:-1],
                    "right": e[1:],
                    "count": h,
                    "probability": probabilities(h),
                }
            )
        )

    for g, h in _split_groups(res, input_counts[EVAL], input_counts["probe"]).items():
        add(INPUT, -1, INPUT, g, h)
        res.histograms[INPUT, g, INPUT] = h
    for (v, s, g, L), c in counts.items():
        if g != EVAL:
            continue
        for group, h in _split_groups(res, c, counts[v, s, "probe", L]).items():
            add(v, s, L, group, h)
            key = (v, group, L)
            res.histograms[key] = res.histograms.get(key, 0) + h
    return pd.concat(frames, ignore_index=True)


def _divergences(res: StudyResults, counts: dict[Key, np.ndarray]) -> pd.DataFrame:
    """KL(variant‖reference) and JS between variants, same seed, on smoothed histograms."""
    rows = []
    for v, r in permutations(res.variants, 2):
        for s in res.seeds:
            for L in res.layers:
                if (v, s, EVAL, L) not in counts or (r, s, EVAL, L) not in counts:
                    continue
                hv = _split_groups(res, counts[v, s, EVAL, L], counts[v, s, "probe", L])
                hr = _split_groups(res, counts[r, s, EVAL, L], counts[r, s, "probe", L])
                for g in hv:
                    p, q = smoothed(hv[g]), smoothed(hr[g])
                    rows.append(
                        {
                            "variant": v,
                            "reference": r,
                            "seed": s,
                            "group": g,
                            "layer": L,
                            "kl_bits": float(kl_divergence(p, q)),
                            "js_bits": float(js_divergence(p, q)),
                        }
                    )
    return pd.DataFrame(rows, columns=["variant", "reference", "seed", "group", "layer", "kl_bits", "js_bits"])


def _certainty_tables(
    res: StudyResults,
    sets: Sets,
    labels: dict[str, np.ndarray],
    per_image: dict[tuple[str, int, str], dict[str, np.ndarray]],
) -> None:
    """Softmax certainty tables; also adds each eval image's predictive entropy (the entropy of its
    class distribution, not of a histogram of its probabilities) to ``per_image`` for the CIs."""
    if SOFTMAX not in res.layers:
        return
    cert_rows, soft_rows = [], []
    for v in res.variants:
        per_seed = []
        for s in res.seeds:
            if (v, s) not in sets:
                continue
            ev = certainty(np.asarray(sets[v, s].array(EVAL, SOFTMAX), dtype=np.float64), labels[EVAL])
            per_image.setdefault((v, s, SOFTMAX), {})["predictive_entropy_bits"] = ev["entropy_bits"]
            cert_rows.append(
                {
                    "variant": v,
                    "seed": s,
                    "sample": EVAL,
                    "label": -1,
                    **{k: float(np.mean(x)) for k, x in ev.items() if k != "predicted"},
                }
            )
            probs = np.asarray(sets[v, s].array("probe", SOFTMAX), dtype=np.float64)
            per_seed.append(probs)
            pc = certainty(probs, labels["probe"])
            for i, name in enumerate(res.probe_names):
                cert_rows.append(
                    {
                        "variant": v,
                        "seed": s,
                        "sample": name,
                        "label": int(labels["probe"][i]),
                        **{k: float(x[i]) for k, x in pc.items()},
                    }
                )
                for k, p in enumerate(probs[i]):
                    soft_rows.append(
                        {"variant": v, "seed": s, "sample": name, "class": res.classes[k], "probability": float(p)}
                    )
        stack = np.stack(per_seed)
        res.probe_softmax[v] = (stack.mean(axis=0), stack.std(axis=0, ddof=1) if len(stack) > 1 else 0 * stack[0])
    res.tables["certainty"] = pd.DataFrame(cert_rows)
    res.tables["softmax"] = pd.DataFrame(soft_rows)


def _linear_probes(res: StudyResults, sets: Sets, labels: np.ndarray, test_fraction: float) -> None:
    train, test = probe_split(labels, test_fraction)
    rows = []
    for (v, s), aset in sets.items():
        for L in res.layers:
            x = pooled_features(aset.array(EVAL, L))
            rows.append(
                {
                    "variant": v,
                    "seed": s,
                    "layer": L,
                    "features": x.shape[1],
                    "train_images": len(train),
                    "test_images": len(test),
                    "accuracy": probe_accuracy(x, labels, train, test),
                }
            )
    res.tables["linear_probe"] = pd.DataFrame(rows)


def _patterns(res: StudyResults, sets: Sets, labels: np.ndarray) -> None:
    sim_rows, fcp_rows = [], []
    for (v, s), aset in sets.items():
        for L in res.layers:
            sim_rows.append({"variant": v, "seed": s, "layer": L, **class_similarity(aset.array(EVAL, L), labels)})
    res.tables["similarity"] = pd.DataFrame(sim_rows)
    if not res.feature_maps:
        return
    deepest = res.feature_maps[-1]
    probe_labels = np.asarray(res.probe_labels)
    classes_with_group = [k for k in dict.fromkeys(probe_labels.tolist()) if (probe_labels == k).sum() >= 2]
    for k in classes_with_group:
        idx = np.flatnonzero(probe_labels == k)
        group: dict[str, Any] = {"class": int(k), "names": [res.probe_names[i] for i in idx], "maps": {}, "mask": {}}
        for (v, s), aset in sets.items():
            maps = np.asarray(aset.array("probe", deepest)[idx], dtype=np.float32)
            fcp = common_active(maps)
            fcp_rows.append(
                {
                    "variant": v,
                    "seed": s,
                    "layer": deepest,
                    "class": res.classes[k],
                    "images": len(idx),
                    **{m: fcp[m] for m in ("active_all", "active_any", "jaccard")},
                }
            )
            if s == res.seeds[0]:
                group["maps"][v], group["mask"][v] = maps, fcp["mask"]
        res.fcp_groups.append(group)
    res.tables["fcp"] = pd.DataFrame(fcp_rows)
    for v in res.variants:
        aset = sets[v, res.seeds[0]]
        res.class_mean_maps[v] = class_means(aset.array(EVAL, deepest), labels, len(res.classes))
        for L in res.feature_maps:
            res.probe_maps.setdefault(L, {})[v] = np.asarray(aset.array("probe", L), dtype=np.float32)


def _pairs(variants: list[str]) -> list[tuple[str, str]]:
    """benchmark − dummy when both exist, and every variant − untrained when it exists."""
    pairs = [("benchmark", "dummy")] if {"benchmark", "dummy"} <= set(variants) else []
    if "untrained" in variants:
        pairs += [(v, "untrained") for v in variants if v != "untrained"]
    return pairs


def _differences(
    res: StudyResults,
    per_image: dict[tuple[str, int, str], dict[str, np.ndarray]],
    resamples: int,
    confidence: float,
) -> pd.DataFrame:
    rows = []
    for a, b in _pairs(res.variants):
        for L in res.layers:
            for q in ("entropy_bits", "sparsity", "mean", "predictive_entropy_bits"):
                xa = [per_image[a, s, L][q] for s in res.seeds if q in per_image.get((a, s, L), {})]
                xb = [per_image[b, s, L][q] for s in res.seeds if q in per_image.get((b, s, L), {})]
                if xa and xb:
                    ci = bootstrap_difference(np.stack(xa), np.stack(xb), resamples, confidence)
                    rows.append(
                        {"quantity": q, "layer": L, "variant": a, "reference": b, "confidence": confidence, **ci}
                    )
    return pd.DataFrame(rows)


def _seed_summaries(res: StudyResults) -> pd.DataFrame:
    t = res.tables
    parts = [
        seed_summary(
            t["layer_stats"][t["layer_stats"]["group"] == EVAL],
            ["variant", "layer"],
            ["entropy_bits", "sparsity", "mean", "std", "info_gain_bits", "js_vs_input_bits"],
        ),
        seed_summary(t["linear_probe"], ["variant", "layer"], ["accuracy"]).replace({"accuracy": "probe_accuracy"}),
        seed_summary(t["similarity"], ["variant", "layer"], ["within", "between", "separation"]),
    ]
    if "certainty" in t:
        ev = t["certainty"][t["certainty"]["sample"] == EVAL].assign(layer=SOFTMAX)
        parts.append(
            seed_summary(ev, ["variant", "layer"], ["entropy_bits", "max_prob", "correct"]).replace(
                {"entropy_bits": "softmax_entropy_bits", "correct": "accuracy"}
            )
        )
    return pd.concat(parts, ignore_index=True)


def _summary(res: StudyResults) -> dict[str, Any]:
    """The compact metrics for ``dvc metrics show``: feature-map layers, accuracy, key differences."""
    summ = res.tables["seed_summary"]

    def get(v: str, L: str, q: str) -> tuple[float, float]:
        row = summ[(summ["variant"] == v) & (summ["layer"] == L) & (summ["quantity"] == q)]
        return (
            (round(float(row["mean"].iloc[0]), 4), round(float(row["std"].iloc[0]), 4))
            if len(row)
            else (np.nan, np.nan)
        )

    out: dict[str, Any] = {"eval_images": res.eval_images, "seeds": res.seeds, "variants": {}}
    for v in res.variants:
        entry: dict[str, Any] = {}
        if "certainty" in res.tables:
            entry["accuracy"], entry["accuracy_std"] = get(v, SOFTMAX, "accuracy")
            entry["softmax_entropy_bits"], _ = get(v, SOFTMAX, "softmax_entropy_bits")
        for L in res.feature_maps:
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
    diffs = res.tables["differences"]
    bd = diffs[(diffs["variant"] == "benchmark") & (diffs["reference"] == "dummy")] if len(diffs) else diffs
    if len(bd):
        out["benchmark_minus_dummy"] = {
            L: {
                q: {
                    k: round(float(r[k]), 4) if k != "holds" else bool(r[k])
                    for k in ("difference", "ci_low", "ci_high", "holds")
                }
                for q, r in bd[bd["layer"] == L].set_index("quantity").iterrows()
                if q in ("entropy_bits", "sparsity")
            }
            for L in [*res.feature_maps, SOFTMAX]
            if L in set(bd["layer"])
        }
    return out
