"""Draw every figure of the ``compare`` stage from :class:`~cnnscope.analysis.StudyResults`.

Returns an index entry (path relative to the output folder, one-line caption, kind) per figure so
the report can embed them without guessing file names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from cnnscope.analysis.study import EVAL, INPUT, StudyResults
from cnnscope.viz.activations import (
    class_mean_grid,
    edge_filter_figure,
    fcp_grid,
    feature_map_figure,
    histogram_overlay,
    kernel_change_figure,
    layer_profile,
    pixel_values_figure,
    softmax_bars,
)
from cnnscope.viz.common import save_figure
from cnnscope.viz.measures import render_measures
from cnnscope.viz.style import MIN_HISTOGRAM_VALUES, per_row_scale


def render_compare(
    res: StudyResults, out_dir: str | Path, max_maps: int, edge_stages: dict[str, dict[str, np.ndarray]] | None
) -> list[dict[str, Any]]:
    """Every figure of the compare stage (:func:`render_study`'s and the CKA heatmap of
    :func:`~cnnscope.viz.measures.render_measures`); returns their ``index.json`` entries."""
    return render_study(res, out_dir, max_maps, edge_stages) + render_measures(res.tables["cka_overview"], out_dir)


def render_study(
    res: StudyResults,
    out_dir: str | Path,
    max_maps: int,
    edge_stages: dict[str, dict[str, np.ndarray]] | None = None,
) -> list[dict[str, Any]]:
    """Write all figures under ``out_dir/figures`` and return their index entries; ``edge_stages``
    (:func:`cnnscope.analysis.edge_filters.edge_filter_stages` of the first probe) adds the
    hand-made-filter figures."""
    out = Path(out_dir)
    entries: list[dict[str, Any]] = []

    def save(fig: Figure, name: str, kind: str, caption: str) -> None:
        rel = f"figures/{name}.png"
        save_figure(fig, out / rel)
        entries.append({"path": rel, "kind": kind, "caption": caption})

    first = res.seeds[0]
    for layer, by_variant in res.probe_maps.items():
        rows = [m[i][:max_maps] for i in range(len(res.probe_names)) for m in by_variant.values()]
        scale = (
            "each row on its own colour scale (divided by its largest value, given beside its label): on one "
            "shared scale a whole row would look silent"
            if per_row_scale(rows)
            else "one colour scale for the whole figure"
        )
        save(
            feature_map_figure(
                {p: {v: m[i] for v, m in by_variant.items()} for i, p in enumerate(res.probe_names)},
                f"{layer}: first {max_maps} maps of every probe (seed {first})",
                max_maps,
            ),
            f"feature_maps_{layer}",
            "feature_maps",
            f"Feature maps of {layer} for every probe (rows: probe · variant; columns: the first {max_maps} "
            f"maps, by index; seed {first}); {scale}.",
        )
    for group in [EVAL, *res.probe_names]:
        panels: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {
            "input pixels ([0, 1])": (res.edges[INPUT], {"input": _prob(res.histograms[INPUT, group, INPUT])})
        }
        for layer in _histogram_layers(res):
            panels[layer] = (
                res.edges[layer],
                {
                    v: _prob(res.histograms[v, group, layer])
                    for v in res.variants
                    if (v, group, layer) in res.histograms
                },
            )
        what = "the evaluation sample" if group == EVAL else f"probe '{group}'"
        save(
            histogram_overlay(panels, f"Activation distributions over {what} (shared bins, seeds pooled)"),
            f"histograms_{group}",
            "histograms",
            f"Activation histograms per layer on shared bin edges for {what}, input pixels first (black); "
            f"log scale, seeds pooled, empty bins left out; layers with ≤ {MIN_HISTOGRAM_VALUES} values per "
            "image (logits, softmax) are in the tables, not here.",
        )
    for i, probe in enumerate(res.probe_names):
        if res.probe_softmax:
            true = res.probe_labels[i]
            save(
                softmax_bars(
                    {v: (m[i], s[i]) for v, (m, s) in res.probe_softmax.items()},
                    res.classes,
                    true,
                    f"Softmax of probe '{probe}' (true class {res.classes[true]}, green)",
                ),
                f"softmax_{probe}",
                "softmax",
                f"Class probabilities for probe '{probe}' per variant (mean ± std over seeds).",
            )
    frozen = [v for v, d in res.kernel_changes.items() if not np.any(d)]
    if frozen:  # a sentence, not a figure of zeros
        text = (
            f"The first-layer kernels of {', '.join(frozen)} are frozen (fixed by hand, not trained): training "
            "left them unchanged, so there is no change to draw."
        )
        entries.append({"kind": "kernels", "text": text, "caption": text})  # no "path": the report writes the text
    changed = {v: d for v, d in res.kernel_changes.items() if v not in frozen}
    if changed:
        untrained = [v for v in res.kernels if v not in res.kernel_changes]
        save(
            kernel_change_figure(changed, f"First-layer kernels: trained − initial (seed {first})"),
            "kernel_changes",
            "kernels",
            f"How training moved each first-layer kernel (trained minus initial weights, seed {first}, input "
            "channels averaged), one colour scale for all variants"
            + (f"; left out: {', '.join(untrained)} (not trained, change zero)." if untrained else "."),
        )
    for fcp in res.fcp_groups:
        cls = res.classes[fcp["class"]]
        for v, maps in fcp["maps"].items():
            save(
                fcp_grid(
                    dict(zip(fcp["names"], maps, strict=True)),
                    fcp["mask"][v],
                    f"{v}: {res.feature_maps[-1]} maps of class {cls}",
                ),
                f"fcp_{v}_class{cls}",
                "fcp",
                f"Class patterns (FCPs) of {v} on {res.feature_maps[-1]} for probes {', '.join(fcp['names'])} "
                f"(class {cls}); red dots: nodes active in all of them.",
            )
    for v, means in res.class_mean_maps.items():
        save(
            class_mean_grid(means, res.classes, f"{v}: class-mean {res.feature_maps[-1]} patterns"),
            f"class_means_{v}",
            "fcp",
            f"Class-mean activation patterns of {v} on {res.feature_maps[-1]} over the evaluation sample.",
        )
    if res.probe_images is not None and len(res.probe_images) and edge_stages:
        grey = res.probe_images[0].mean(axis=0).round().astype(np.uint8)
        probe = res.probe_names[0]
        colour = res.probe_images[0].shape[0] > 1
        what = "the channel mean of the colour image (what the fixed kernels read)" if colour else "the image"
        save(
            edge_filter_figure(grey, edge_stages, f"Hand-made filters on probe '{probe}'"),
            "edge_filters",
            "edge_filters",
            f"Probe '{probe}' ({what}) → each fixed edge kernel → ReLU → 2×2 max-pool.",
        )
        save(
            pixel_values_figure(grey, f"Probe '{probe}': pixel values"),
            "pixel_values",
            "edge_filters",
            f"Probe '{probe}', {what}, cropped to the pixels unlike the border's background (1 px margin), each "
            "pixel's value (0–255) written in its cell; ticks give the original row and column.",
        )
    save(
        layer_profile(
            _profiles(res), res.layers, res.layer_kinds, "Per-layer summary (mean ± std over seeds, evaluation sample)"
        ),
        "layer_profile",
        "summary",
        "The measures of the verdicts per layer and variant (mean ± std over seeds, evaluation sample): Hoyer "
        "sparsity and normalised entropy (scale-free, claim (a)) and linear-probe accuracy on channel means; one "
        "column per layer kind, layers of a kind in network order; a kind a measure does not apply to is left out.",
    )
    return entries


def _histogram_layers(res: StudyResults) -> list[str]:
    """Binned layers with more than :data:`MIN_HISTOGRAM_VALUES` values per image."""
    return [L for L in res.layers if L in res.edges and res.layer_sizes.get(L, 0) > MIN_HISTOGRAM_VALUES]


def _prob(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else counts.astype(np.float64)


#: The layer profile's rows: the scale-free measures claim (a) is judged on, then the probe; y labels in words.
PROFILE = {
    "hoyer": "Hoyer sparsity\n(0 dense, 1 one active)",
    "entropy_norm_bits": "normalised entropy\n(bits, scale-free)",
    "probe_accuracy": "linear-probe accuracy\n(channel means)",
}


def _profiles(res: StudyResults) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """``{y label: {variant: (mean, std)}}`` over seeds per layer (NaN where a layer has no value):
    Hoyer and normalised entropy from the ``scale_free`` table, probe accuracy from ``seed_summary``."""
    scale_free, summ = res.tables["scale_free"], res.tables["seed_summary"]
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for quantity, label in PROFILE.items():
        out[label] = {}
        for v in res.variants:
            if quantity in scale_free:
                runs = scale_free[scale_free["variant"] == v].groupby("layer")[quantity]
                rows = runs.agg(["mean", "std"]).reindex(res.layers)
            else:
                rows = summ[(summ["variant"] == v) & (summ["quantity"] == quantity)].set_index("layer")
                rows = rows.reindex(res.layers)
            out[label][v] = (rows["mean"].to_numpy(float), rows["std"].fillna(0).to_numpy(float))
    return out
