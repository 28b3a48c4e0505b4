"""Compare every variant and seed of a study: the numbers behind the ``compare`` stage.

Input: the activation sets of ``variants × seeds`` (all extracted on the same probe and
evaluation images) and those images. Output: tidy pandas tables — one per quantity, one row per
variant, seed, image group and layer (:mod:`.tables`) — the small arrays the figures need
(:mod:`.figures`); the stage's headline metrics are :func:`cnnscope.analysis.measure_summary.headline`.
Which variants are differenced follows the study's roles (:mod:`.roles`), never their names.

Image groups: ``eval`` (the evaluation sample, histograms pooled over its images) and each probe
image by name. The input pixels (in [0, 1]) are binned into ``bins`` bins on [0, 1] and act as the
reference for the *information gain* of a layer, ``H(input) − H(layer)`` in bits, and for its
``JS(layer, input)``: both histograms have ``bins`` equal-width bins over their own shared range,
so the divergence compares the *shapes* of the two distributions after mapping each range to [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from cnnscope.activations import SOFTMAX, ActivationSet
from cnnscope.analysis.histograms import image_histograms, pooled_pixels, shared_edges
from cnnscope.analysis.study import figures, tables
from cnnscope.analysis.study.common import EVAL, INPUT, PASS_THROUGH, Sets
from cnnscope.analysis.study.roles import Roles
from cnnscope.errors import CnnscopeError
from cnnscope.progress import track

if TYPE_CHECKING:
    from cnnscope.analysis.network import NetworkMeasures, NetworkSettings

__all__ = ["EVAL", "INPUT", "Roles", "StudyError", "StudyResults", "compare_study"]


class StudyError(CnnscopeError, ValueError):
    """The activation sets cannot be compared (different images or layers)."""


@dataclass
class StudyResults:
    """Tables (tidy DataFrames by name), the metrics summary (set by the stage), and the arrays the figures draw."""

    variants: list[str]
    seeds: list[int]
    classes: list[str]
    layers: list[str]
    #: Post-ReLU convolution outputs as the model names them, shallow to deep.
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
    #: variant → first-layer kernels after minus before training (first seed; trained variants only),
    #: set by the stage from the checkpoints (:func:`.figures.kernel_changes`).
    kernel_changes: dict[str, np.ndarray] = field(default_factory=dict)
    #: layer → module kind (``Conv2d``, ``ReLU``, …) and layer → values per image.
    layer_kinds: dict[str, str] = field(default_factory=dict)
    layer_sizes: dict[str, int] = field(default_factory=dict)
    #: FCP groups: class label, probe names, and per variant the maps ``(k, C, H, W)`` and common mask.
    fcp_groups: list[dict[str, Any]] = field(default_factory=list)
    #: variant → class-mean maps ``(K, C, H, W)`` of the deepest conv layer (first seed).
    class_mean_maps: dict[str, np.ndarray] = field(default_factory=dict)
    probe_images: np.ndarray | None = None

    @property
    def deepest_map(self) -> str | None:
        """The deepest feature map of the model (where FCPs and the claims look), if any was captured."""
        return self.feature_maps[-1] if self.feature_maps else None


def _check_consistent(sets: Sets) -> tuple[ActivationSet, list[str]]:
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
                    "extract.eval_samples (cnnscope repro extract)"
                )
    return ref, layers


def compare_study(
    sets: Sets,
    images: torch.Tensor,
    roles: Roles,
    bins: int,
    bootstrap: int,
    confidence: float,
    network: NetworkSettings,
    networks: Mapping[tuple[str, int], NetworkMeasures] | None = None,
    histograms: Mapping[tuple[str, int], Mapping[str, np.ndarray]] | None = None,
) -> StudyResults:
    """Every comparison of the study. ``images`` are the prepared uint8 images (indexed by sample
    id); ``roles`` say which variant pairs get difference CIs.

    ``networks``: each network's own measures (:mod:`cnnscope.analysis.network`, the
    ``measures@`` stages), computed here with the settings ``network`` when not given;
    ``histograms``: each network's counts on the shared edges (:mod:`cnnscope.analysis.shared_bins`,
    the ``histograms@`` stages), binned here when not given. What is left here needs several
    networks (divergences, seed statistics)."""
    if not sets:
        raise StudyError("no activation sets to compare")
    ref, layers = _check_consistent(sets)
    from cnnscope.analysis.shared_bins import layer_edges  # it imports .common

    if networks is None:
        from cnnscope.analysis.network import network_measures  # it imports .common

        networks = {net: network_measures(aset, network, patterns=False) for net, aset in sets.items()}
    variants = list(dict.fromkeys(v for v, _ in sets))
    seeds = sorted({s for _, s in sets})
    layers = [name for name in layers if ref.kinds.get(name) not in PASS_THROUGH]
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
        layer_kinds={L: ref.kinds.get(L, "other") for L in layers},
        layer_sizes={L: int(np.prod(ref.manifest["shapes"][L])) for L in layers},
    )
    names, first = res.probe_names, seeds[0]
    groups = {EVAL: ev, "probe": pr}
    labels = {g: np.asarray(info.labels) for g, info in groups.items()}
    pixels = {
        g: pooled_pixels(images[torch.as_tensor(info.sample_ids, dtype=torch.long)]) for g, info in groups.items()
    }

    # The softmax is a distribution over classes, not a map: no histogram, entropy-of-values or
    # sparsity rows (its certainty tables use the float32 probabilities themselves).
    binned = [L for L in layers if L != SOFTMAX]
    keys = [(v, s, g, L) for (v, s) in sets for g in groups for L in binned]
    # Pass 1 (each network's own stage): per-image moments; shared edges per layer over every
    # variant, seed and group.
    moments = {(v, s, g, L): networks[v, s].moments(g, L) for v, s, g, L in keys}
    res.edges.update(layer_edges(networks, binned, bins))
    res.edges[INPUT] = shared_edges(0.0, 1.0, bins)
    # Pass 2 (the histograms@ stages, or here): per-image histograms on the shared edges.
    counts = {}
    with track("compare: binning activations", 0 if histograms else len(keys)) as advance:
        for v, s, g, L in keys:
            if histograms:
                counts[v, s, g, L] = histograms[v, s][f"counts/{g}/{L}"]
            else:
                counts[v, s, g, L] = image_histograms(sets[v, s].array(g, L), res.edges[L])
                advance()
    input_counts = {g: image_histograms(pixels[g], res.edges[INPUT]) for g in groups}

    t = res.tables
    t["layer_stats"], per_image = tables.layer_stats(names, moments, counts, input_counts)
    t["input_stats"] = tables.input_stats(names, input_counts, pixels)
    t["histograms"] = tables.histogram_table(names, res.edges, counts, input_counts)
    t["divergences"] = tables.divergences(names, variants, seeds, layers, counts)
    if SOFTMAX in layers:
        t["certainty"], t["softmax"], predictive = tables.certainty_tables(
            sets, variants, seeds, names, res.classes, labels
        )
        for key, values in predictive.items():
            per_image.setdefault(key, {}).update(values)
        res.probe_softmax = figures.probe_softmax(sets, variants, seeds)
    t["linear_probe"] = tables.network_table(networks, "linear_probe", layers)
    t["similarity"] = tables.network_table(networks, "similarity", layers)
    res.histograms = figures.summed_histograms(names, counts, input_counts)
    if (deepest := res.deepest_map) is not None:
        t["fcp"] = tables.fcp_table(sets, deepest, res.classes, res.probe_labels)
        res.fcp_groups = figures.fcp_groups(sets, variants, first, deepest, names, res.probe_labels)
        res.class_mean_maps = figures.class_mean_maps(sets, variants, first, deepest, labels[EVAL], len(res.classes))
        res.probe_maps = figures.probe_maps(sets, variants, first, res.feature_maps)
    res.kernels = figures.first_kernels(sets, variants, first)
    res.probe_images = images[torch.as_tensor(pr.sample_ids, dtype=torch.long)].numpy()
    t["differences"] = tables.differences(roles.pairs(variants), layers, seeds, per_image, bootstrap, confidence)
    t["seed_summary"] = tables.seed_summaries(t)
    return res
