"""The issue-13 measures of a study, computed layer by layer from the activation sets.

Each (network, layer) array is read once per layer and serves every measure that needs it:
scale-free statistics (:mod:`.scalefree`), debiased minibatch CKA between every pair of networks
and to the input pixels (:mod:`.cka`), map matching (:mod:`.matching`) and spatial linear probes
(:mod:`.spatial_probe`). The deepest feature map also gives the class-pattern contrast with its
chance level, the within/between active-set overlap (:mod:`.class_patterns`) and classification
by binary activation patterns beside each network's own head (:mod:`.pattern_classifier`).

A *network* is a (variant, seed) pair. Output: tidy tables, one row per network (or pair), layer
and quantity, plus the per-image arrays that image-level intervals need. What the ``compare`` stage
reads from these tables as a study (seed baselines, claims, headline) is :mod:`.measure_summary`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from cnnscope.activations import SOFTMAX, ActivationSet
from cnnscope.analysis.cka import batch_grams, cka_from_grams
from cnnscope.analysis.class_patterns import (
    ClassPatternError,
    check_two_per_class,
    overlap_within_between,
)
from cnnscope.analysis.linear_probe import probe_split
from cnnscope.analysis.matching import (
    MATCH_COLUMNS,
    MatchingError,
    all_map_correlations,
    match_maps,
    matching_summary,
)
from cnnscope.analysis.network import (
    PATTERN_TABLES,
    NetworkMeasures,
    NetworkSettings,
    head_predictions,
    network_measures,
    pair_indices,
)
from cnnscope.analysis.pattern_classifier import confusion_rows, pattern_predictions, score
from cnnscope.analysis.sample_order import sample_order
from cnnscope.analysis.scalefree import scale_free_from_passes

Net = tuple[str, int]
EVAL, PROBE, INPUT = "eval", "probe", "input"
#: The pixel-space baseline of the class-pattern measures: the input pixels binarised at 0.5.
PIXELS = "binarised pixels"
#: Threshold of the binarised pixels (in [0, 1]): a digit's stroke against its background.
PIXEL_THRESHOLD = 0.5

#: What each table holds (listed in the compare stage's ``index.json``).
TABLES = {
    "scale_free": "per network and layer: robust scale, normalised entropy (bits), Hoyer sparsity, kurtosis",
    "cka": "debiased minibatch linear CKA of every pair of networks and of each network to the input, per layer",
    "cka_overview": "CKA means over seeds per layer: between variants, seed-to-seed baseline, to the input",
    "spatial_probe": "held-out accuracy, standard error and chance of a logistic regression on grid-pooled maps",
    "matching": "per layer and network pair: each map's Hungarian match, matched and same-index correlations",
    "matching_summary": "per layer and network pair: mean matched / same-index / best correlation over live maps",
    "matching_overview": "the matching summary averaged over seeds per layer and comparison",
    "fcp_contrast": "the article's contrast count on the probes vs same-class and mixed chance draws",
    "overlap": "mean Jaccard of active deepest-map nodes within vs between classes, image bootstrap interval",
    "pattern_classification": "held-out accuracy and pair confusion: binary-pattern classifier vs network heads",
    "pattern_confusion": "full held-out confusion counts (true × predicted) of the binary pattern and of each head",
    "claims": "the seed claims (a), (a′), (b), (e), part VI and their controls: paired per-seed differences, "
    "d_z, SESOI, TOST and Holm-adjusted p, verdicts",
    "activation_scale": "per network and layer: rms, share of non-zero values, spread over images, silent on data",
}


@dataclass(frozen=True)
class MeasureSettings(NetworkSettings):
    """What the measures need besides the activations (``compare`` keys of ``params.yaml``): the
    per-network measures' settings (:class:`.network.NetworkSettings`, one list of them for both
    stages) and those of the measures across networks. No defaults: conf/ holds them."""

    bins: int
    #: Feature-map layers matched map by map; empty: every feature map.
    matching_layers: Sequence[str]
    #: Smallest effect size of interest per claim measure (``compare.sesoi``; :mod:`.verdicts`).
    sesoi: Mapping[str, float]

    @classmethod
    def from_config(cls, cfg: Any) -> MeasureSettings:
        """From the ``compare`` section of ``params.yaml`` (a :class:`cnnscope.config.CompareConfig`):
        its keys named as a field here pass through; the others are converted or renamed."""
        same_named = {f.name: getattr(cfg, f.name) for f in fields(cls) if hasattr(cfg, f.name)}
        first, second = cfg.confusion_pair
        converted = {
            "matching_layers": tuple(cfg.matching_layers),
            "probe_test_fraction": cfg.linear_probe_test_fraction,
            "confusion_pair": (str(first), str(second)),
            "sesoi": {str(k): float(v) for k, v in dict(cfg.sesoi).items()},
        }
        return cls(**(same_named | converted))

    def network(self) -> NetworkSettings:
        """The settings of the per-network measures (:mod:`.network`) among these."""
        return NetworkSettings(**{f.name: getattr(self, f.name) for f in fields(NetworkSettings)})


@dataclass
class MeasureResults:
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: (variant, seed, layer) → per-image scale-free arrays (``hoyer``, ``entropy_norm_bits``).
    per_image: dict[tuple[str, int, str], dict[str, np.ndarray]] = field(default_factory=dict)


def compute_measures(
    sets: Mapping[Net, ActivationSet],
    pixels: np.ndarray,
    layers: Sequence[str],
    feature_maps: Sequence[str],
    classes: Sequence[str],
    settings: MeasureSettings,
    reference_heads: Mapping[Net, ActivationSet] | None = None,
    networks: Mapping[Net, NetworkMeasures] | None = None,
    histograms: Mapping[Net, Mapping[str, np.ndarray]] | None = None,
) -> MeasureResults:
    """Every measure for ``layers`` (``softmax`` is left out: it is a distribution, not a map).

    ``pixels``: the evaluation images ``(N, D)`` in [0, 1], the 'input' representation for CKA.
    ``reference_heads``: networks of another architecture (the pixel ``mlp``) extracted on the
    same images, whose heads join the pattern-classification table only. ``networks``: each
    network's own measures (:mod:`.network`, the ``measures@`` stages; computed here when not given);
    ``histograms``: their scale-free counts (:mod:`.shared_bins`, the ``histograms@`` stages; binned
    here when not given).
    """
    nets = list(sets)
    ref = sets[nets[0]]
    labels = np.asarray(ref.group(EVAL).labels)
    order = sample_order(ref.group(EVAL).sample_ids, settings.sample_order_seed)
    train, test = probe_split(labels, settings.probe_test_fraction, order=order)
    matching = _matching_layers(ref, settings.matching_layers, layers, feature_maps)
    out = MeasureResults()
    rows: dict[str, list[dict[str, Any]]] = {
        k: [] for k in ("scale_free", "cka", "spatial_probe", "matching", "activation_scale")
    }
    map_rows: list[pd.DataFrame] = []
    if networks is None:
        networks = {net: network_measures(sets[net], settings.network()) for net in nets}
    input_grams = batch_grams(pixels, settings.cka_batch, order)
    for layer in [name for name in layers if name != SOFTMAX]:
        # each network's own numbers come from its measures; the arrays are read for what needs
        # every network at once (the shared normalised bins, map matching)
        binned = {net: histograms[net][f"scalefree/{layer}"] for net in nets} if histograms else None
        arrays = {net: sets[net].array(EVAL, layer) for net in nets} if not binned or layer in matching else {}
        for v, s in nets:
            rows["activation_scale"].append({"variant": v, "seed": s, **networks[v, s].row("activation_scale", layer)})
        passes = {net: networks[net].scale_pass(layer) for net in nets}
        for (v, s), sf in scale_free_from_passes(arrays, passes, settings.bins, binned).items():
            rows["scale_free"].append(
                {
                    "variant": v,
                    "seed": s,
                    "layer": layer,
                    "scale": sf.scale,
                    "entropy_norm_bits": sf.entropy_bits,
                    "hoyer": float(np.nanmean(sf.hoyer)) if np.isfinite(sf.hoyer).any() else float("nan"),
                    "kurtosis": float(np.nanmean(sf.kurtosis)) if np.isfinite(sf.kurtosis).any() else float("nan"),
                }
            )
            out.per_image[v, s, layer] = {"hoyer": sf.hoyer, "entropy_norm_bits": sf.image_entropy_bits}
        grams: dict[Any, list[np.ndarray]] = {**{net: networks[net].grams(layer) for net in nets}, INPUT: input_grams}
        pairs = [*combinations(nets, 2), *((net, INPUT) for net in nets)]
        for (a, b), value in cka_from_grams(grams, pairs).items():
            vb, sb = (INPUT, -1) if b == INPUT else (str(b[0]), int(b[1]))
            rows["cka"].append(
                {"layer": layer, "variant_a": a[0], "seed_a": a[1], "variant_b": vb, "seed_b": sb, "cka": value}
            )
        for v, s in nets:
            rows["spatial_probe"] += [
                {"variant": v, "seed": s, **r} for r in networks[v, s].rows["spatial_probe"] if r["layer"] == layer
            ]
        if layer in matching:
            correlations, dead = all_map_correlations(arrays, layer, order)
            for a, b in combinations(nets, 2):
                table = match_maps(correlations[a, b], dead[a], dead[b])
                ids = {"layer": layer, "variant_a": a[0], "seed_a": a[1], "variant_b": b[0], "seed_b": b[1]}
                map_rows.append(table.assign(**ids))
                rows["matching"].append({**ids, **matching_summary(table)})
        del arrays, grams
    out.tables["scale_free"] = pd.DataFrame(rows["scale_free"])
    out.tables["cka"] = pd.DataFrame(rows["cka"])
    out.tables["spatial_probe"] = pd.DataFrame(rows["spatial_probe"])
    out.tables["matching_summary"] = pd.DataFrame(rows["matching"])
    out.tables["activation_scale"] = pd.DataFrame(rows["activation_scale"])
    lead = ["layer", "variant_a", "seed_a", "variant_b", "seed_b"]
    maps = pd.concat(map_rows, ignore_index=True) if map_rows else pd.DataFrame(columns=[*lead, *MATCH_COLUMNS])
    # a study of one network has no pair: its table is empty, but written, as the atlas stage reads it
    out.tables["matching"] = maps[[*lead, *MATCH_COLUMNS]]
    if feature_maps:
        _deepest_patterns(out, networks, nets, labels, test, classes, settings)
        _pixel_baselines(out, pixels, labels, train, test, classes, settings, order)
        pair = pair_indices(classes, settings.confusion_pair)
        extra = [
            {
                "variant": v,
                "seed": s,
                "classifier": "network head",
                **score(head_predictions(aset, test), labels[test], pair),
            }
            for (v, s), aset in (reference_heads or {}).items()
        ]
        heads = [  # the reference heads' full confusion (part VI: the pixel MLP's)
            row
            for (v, s), aset in (reference_heads or {}).items()
            for row in confusion_rows(
                head_predictions(aset, test), labels[test], classes, variant=v, seed=s, classifier="network head"
            )
        ]
        out.tables["pattern_confusion"] = pd.concat(
            [out.tables["pattern_confusion"], pd.DataFrame(heads)], ignore_index=True
        )
        if extra:
            table = out.tables["pattern_classification"]
            out.tables["pattern_classification"] = pd.concat([table, pd.DataFrame(extra)], ignore_index=True).assign(
                test_images=len(test), pair=table["pair"].iloc[0] if len(table) else ""
            )
    return out


def _matching_layers(
    ref: ActivationSet, wanted: Sequence[str], layers: Sequence[str], feature_maps: Sequence[str]
) -> set[str]:
    """The layers to match map by map, checked before any work: each must be a compared layer with maps."""
    if not wanted:
        return set(feature_maps)
    unknown = [name for name in wanted if name not in layers]
    if unknown:
        raise MatchingError(
            f"compare.matching_layers names {unknown}, which the study does not compare; layers: {', '.join(layers)}"
        )
    flat = [name for name in wanted if len(ref.manifest["shapes"][name]) != 3]
    if flat:
        raise MatchingError(
            f"compare.matching_layers names {flat}, which have no feature maps (not (C, H, W)): map matching "
            f"needs a convolutional layer, e.g. {', '.join(feature_maps) or 'none captured'}"
        )
    return set(wanted)


def _deepest_patterns(
    out: MeasureResults,
    networks: Mapping[Net, NetworkMeasures],
    nets: Sequence[Net],
    labels: np.ndarray,
    test: np.ndarray,
    classes: Sequence[str],
    settings: MeasureSettings,
) -> None:
    """Class-pattern contrast with its chance level, overlap, pattern classification and its full
    confusion: each network's rows (:func:`.network.pattern_rows`, its ``measures@`` stage)."""
    check_two_per_class(labels)
    rows: dict[str, list[dict[str, Any]]] = {table: [] for table in PATTERN_TABLES}
    for v, s in nets:
        for table in PATTERN_TABLES:
            rows[table] += [{"variant": v, "seed": s, **r} for r in networks[v, s].rows[table]]
    out.tables["fcp_contrast"] = pd.DataFrame(rows["fcp_contrast"])
    out.tables["overlap"] = pd.DataFrame(rows["overlap"])
    table = pd.DataFrame(rows["pattern_classification"])
    table["test_images"] = len(test)
    pair = pair_indices(classes, settings.confusion_pair)
    table["pair"] = "↔".join(classes[c] for c in pair) if pair is not None else ""
    out.tables["pattern_classification"] = table
    out.tables["pattern_confusion"] = pd.DataFrame(rows["pattern_confusion"])


def _pixel_baselines(
    out: MeasureResults,
    pixels: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    classes: Sequence[str],
    settings: MeasureSettings,
    order: np.ndarray,
) -> None:
    """The pixel-space baselines of claim (e) and part VI (issue 25): the same within/between
    Jaccard and the same nearest class-mean binary-pattern classifier on the input pixels binarised
    at :data:`PIXEL_THRESHOLD`, one row each (``variant`` :data:`PIXELS`, ``seed`` −1) — what a
    binary pattern reads without any network."""
    binary = np.asarray(pixels) > PIXEL_THRESHOLD
    ov = overlap_within_between(binary[order], labels[order], settings.overlap_resamples, settings.confidence)
    row = {"variant": PIXELS, "seed": -1, "layer": INPUT, **ov}
    out.tables["overlap"] = pd.concat([out.tables["overlap"], pd.DataFrame([row])], ignore_index=True)
    pair = pair_indices(classes, settings.confusion_pair)
    predicted = pattern_predictions(binary.astype(np.float32), labels, train, test)
    table = out.tables["pattern_classification"]
    extra = {"variant": PIXELS, "seed": -1, "classifier": "binary pattern", **score(predicted, labels[test], pair)}
    out.tables["pattern_classification"] = pd.concat([table, pd.DataFrame([extra])], ignore_index=True).assign(
        test_images=len(test), pair=table["pair"].iloc[0] if len(table) else ""
    )


def split_reference_heads(
    sets: Mapping[Net, ActivationSet],
) -> tuple[dict[Net, ActivationSet], dict[Net, ActivationSet]]:
    """Split the study's networks into those of the most common architecture (compared layer by
    layer; ties go to the first network's) and the others — e.g. a pixel ``mlp`` variant — whose heads only join the
    pattern-classification table."""
    names = {net: aset.manifest.get("model", {}).get("name") for net, aset in sets.items()}
    counts = Counter(names.values())
    main = max(counts, key=lambda name: (counts[name], name == names[next(iter(sets))]))
    same = {net: aset for net, aset in sets.items() if names[net] == main}
    return same, {net: aset for net, aset in sets.items() if names[net] != main}


__all__ = ["ClassPatternError", "MeasureResults", "MeasureSettings", "compute_measures", "split_reference_heads"]
