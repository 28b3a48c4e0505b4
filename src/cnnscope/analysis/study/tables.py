"""The tidy tables of a study, one function per table; each returns its table.

Rows are keyed by variant, seed, image group and layer; the definitions of each quantity live in
the modules that compute them (:mod:`..information`, :mod:`..histograms`, :mod:`..certainty`,
:mod:`..patterns`, :mod:`..linear_probe`, :mod:`..seeds`).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import permutations
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cnnscope.activations import SOFTMAX
from cnnscope.analysis.certainty import certainty
from cnnscope.analysis.histograms import ImageMoments
from cnnscope.analysis.information import entropy, js_divergence, kl_divergence, probabilities, smoothed
from cnnscope.analysis.linear_probe import pooled_features, probe_accuracy, probe_split
from cnnscope.analysis.patterns import common_active
from cnnscope.analysis.seeds import bootstrap_difference, seed_summary
from cnnscope.analysis.study.common import EVAL, INPUT, Key, PerImage, Sets, class_groups, split_groups

if TYPE_CHECKING:
    from cnnscope.analysis.network import NetworkMeasures

#: What each table holds (listed in the compare stage's ``index.json``).
TABLES = {
    "layer_stats": "entropy (bits), sparsity, mean, std, information gain, JS vs input; per layer and group",
    "input_stats": "the same statistics of the input pixels per group",
    "histograms": "counts and probabilities on the shared bin edges (variant 'input', seed -1: pixels)",
    "divergences": "KL(variant‖reference) and JS between variants, same seed, smoothed histograms (bits)",
    "certainty": "softmax entropy, max/true-class probability, prediction per probe; means over the eval sample",
    "softmax": "class probabilities per variant, seed and probe",
    "linear_probe": "held-out accuracy of a logistic regression on pooled activations per layer",
    "similarity": "mean within-class and between-class cosine similarity of activations per layer",
    "fcp": "nodes of the deepest feature map active in all / any probe image of one class, Jaccard",
    "differences": "variant − reference of per-image quantities with two-level bootstrap CIs",
    "seed_summary": "mean ± std over seeds of every per-seed quantity",
}

#: Per-image quantities whose variant differences get bootstrap confidence intervals.
DIFFERENCE_QUANTITIES = ("entropy_bits", "sparsity", "mean", "predictive_entropy_bits")


def input_stats(
    probe_names: list[str], input_counts: dict[str, np.ndarray], pixels: dict[str, np.ndarray]
) -> pd.DataFrame:
    """Entropy, sparsity, mean and std of the input pixels per image group."""
    rows = []
    for g, h in split_groups(probe_names, input_counts[EVAL], input_counts["probe"]).items():
        px = pixels[EVAL] if g == EVAL else pixels["probe"][probe_names.index(g)][None]
        rows.append(
            {
                "group": g,
                "entropy_bits": float(entropy(h)),
                "sparsity": float((px == 0).mean()),
                "mean": float(px.mean()),
                "std": float(px.std()),
            }
        )
    return pd.DataFrame(rows)


def layer_stats(
    probe_names: list[str],
    moments: dict[Key, ImageMoments],
    counts: dict[Key, np.ndarray],
    input_counts: dict[str, np.ndarray],
) -> tuple[pd.DataFrame, PerImage]:
    """Per variant, seed, group and layer: entropy, sparsity, mean, std, information gain over the
    input and JS to the input; also each eval image's entropy, sparsity and mean (for the CIs)."""
    input_hist = split_groups(probe_names, input_counts[EVAL], input_counts["probe"])
    rows, per_image = [], {}
    for (v, s, g, L), m in moments.items():
        if g != EVAL:
            continue
        ev_counts, pr_counts = counts[v, s, EVAL, L], counts[v, s, "probe", L]
        per_image[v, s, L] = {"entropy_bits": entropy(ev_counts), "sparsity": m.sparsity, "mean": m.mean}
        pm = moments[v, s, "probe", L]
        for group, h in split_groups(probe_names, ev_counts, pr_counts).items():
            if group == EVAL:
                mean = float(m.mean.mean())
                std = float(np.sqrt(np.mean(m.std**2 + m.mean**2) - mean**2))
                sparsity = float(m.sparsity.mean())
            else:
                i = probe_names.index(group)
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
    return pd.DataFrame(rows), per_image


def histogram_table(
    probe_names: list[str],
    edges: dict[str, np.ndarray],
    counts: dict[Key, np.ndarray],
    input_counts: dict[str, np.ndarray],
) -> pd.DataFrame:
    """Counts and probabilities per bin; the input pixels as variant ``input``, seed -1."""
    frames = []

    def add(variant: str, seed: int, layer: str, group: str, h: np.ndarray) -> None:
        e = edges[layer]
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

    for g, h in split_groups(probe_names, input_counts[EVAL], input_counts["probe"]).items():
        add(INPUT, -1, INPUT, g, h)
    for (v, s, g, L), c in counts.items():
        if g == EVAL:
            for group, h in split_groups(probe_names, c, counts[v, s, "probe", L]).items():
                add(v, s, L, group, h)
    return pd.concat(frames, ignore_index=True)


def divergences(
    probe_names: list[str], variants: list[str], seeds: list[int], layers: list[str], counts: dict[Key, np.ndarray]
) -> pd.DataFrame:
    """KL(variant‖reference) and JS between variants, same seed, on smoothed histograms."""
    rows = []
    for v, r in permutations(variants, 2):
        for s in seeds:
            for L in layers:
                if (v, s, EVAL, L) not in counts or (r, s, EVAL, L) not in counts:
                    continue
                hv = split_groups(probe_names, counts[v, s, EVAL, L], counts[v, s, "probe", L])
                hr = split_groups(probe_names, counts[r, s, EVAL, L], counts[r, s, "probe", L])
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


def certainty_tables(
    sets: Sets,
    variants: list[str],
    seeds: list[int],
    probe_names: list[str],
    classes: list[str],
    labels: dict[str, np.ndarray],
) -> tuple[pd.DataFrame, pd.DataFrame, PerImage]:
    """Softmax certainty (eval means and per probe) and the probes' class probabilities; also each
    eval image's predictive entropy (the entropy of its class distribution, not of a histogram of
    its probabilities) for the CIs."""
    cert_rows, soft_rows, per_image = [], [], {}
    for v, s in ((v, s) for v in variants for s in seeds if (v, s) in sets):
        aset = sets[v, s]
        ev = certainty(np.asarray(aset.array(EVAL, SOFTMAX), dtype=np.float64), labels[EVAL])
        per_image[v, s, SOFTMAX] = {"predictive_entropy_bits": ev["entropy_bits"]}
        cert_rows.append(
            {
                "variant": v,
                "seed": s,
                "sample": EVAL,
                "label": -1,
                **{k: float(np.mean(x)) for k, x in ev.items() if k != "predicted"},
            }
        )
        probs = np.asarray(aset.array("probe", SOFTMAX), dtype=np.float64)
        pc = certainty(probs, labels["probe"])
        for i, name in enumerate(probe_names):
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
                    {"variant": v, "seed": s, "sample": name, "class": classes[k], "probability": float(p)}
                )
    return pd.DataFrame(cert_rows), pd.DataFrame(soft_rows), per_image


def linear_probe_table(
    sets: Sets, layers: list[str], labels: np.ndarray, test_fraction: float, order: np.ndarray | None = None
) -> pd.DataFrame:
    """Held-out accuracy of a logistic regression on each layer's pooled activations, split in the
    sample's seeded image ``order`` (:mod:`cnnscope.analysis.sample_order`), not its stored one."""
    train, test = probe_split(labels, test_fraction, order=order)
    rows = []
    for (v, s), aset in sets.items():
        for L in layers:
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
    return pd.DataFrame(rows)


def network_table(networks: Mapping[tuple[str, int], NetworkMeasures], table: str, layers: list[str]) -> pd.DataFrame:
    """One table of per-network rows (:mod:`cnnscope.analysis.network`: the linear probe, the
    within/between-class similarity), one row per network and layer of ``layers``, in that order."""
    return pd.DataFrame(
        [{"variant": v, "seed": s, **nm.row(table, L)} for (v, s), nm in networks.items() for L in layers]
    )


def fcp_table(sets: Sets, layer: str, classes: list[str], probe_labels: list[int]) -> pd.DataFrame:
    """Nodes of ``layer`` active in all / any probe image of one class, and their Jaccard index."""
    rows = []
    for k, idx in class_groups(probe_labels):
        for (v, s), aset in sets.items():
            fcp = common_active(np.asarray(aset.array("probe", layer)[idx], dtype=np.float32))
            rows.append(
                {
                    "variant": v,
                    "seed": s,
                    "layer": layer,
                    "class": classes[k],
                    "images": len(idx),
                    **{m: fcp[m] for m in ("active_all", "active_any", "jaccard")},
                }
            )
    return pd.DataFrame(rows)


def differences(
    pairs: list[tuple[str, str]],
    layers: list[str],
    seeds: list[int],
    per_image: PerImage,
    resamples: int,
    confidence: float,
) -> pd.DataFrame:
    """variant − reference of every per-image quantity, with two-level bootstrap CIs (images, seeds)."""
    rows = []
    for a, b in pairs:
        for L in layers:
            for q in DIFFERENCE_QUANTITIES:
                xa = [per_image[a, s, L][q] for s in seeds if q in per_image.get((a, s, L), {})]
                xb = [per_image[b, s, L][q] for s in seeds if q in per_image.get((b, s, L), {})]
                if xa and xb:
                    ci = bootstrap_difference(np.stack(xa), np.stack(xb), resamples, confidence)
                    rows.append(
                        {"quantity": q, "layer": L, "variant": a, "reference": b, "confidence": confidence, **ci}
                    )
    return pd.DataFrame(rows)


def seed_summaries(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """mean ± std over seeds of every per-seed quantity of the eval sample."""
    t = tables
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
