"""Everything the ``compare`` stage computes from one network's activations alone, computed once
per network so that it can run as its own stage (``measures@<variant>-<seed>``) beside the others.

Why: ``compare`` read every layer of every network several times in one process (moments,
histograms, linear probes, similarity, spatial probes, CKA Gram matrices, class patterns), and on
a study of 15 networks it became the longest stage of the pipeline. Most of that work depends on
one (variant, seed) only; here it is done in one read per layer, and ``compare`` keeps what needs
several networks (shared bin edges and the histograms on them, CKA between networks, map
matching, seed statistics, claims). The results are the exact values the one-process path
computed (the same functions on the same arrays), stored losslessly: table rows as JSON (floats
round-trip exactly) and arrays as ``.npy`` in one ``.npz``.

Rows carry no ``variant``/``seed``: ``compare`` prepends them, so a network's results do not
depend on its name.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnscope.activations import SOFTMAX, ActivationSet
from cnnscope.analysis.activation_scale import activation_scale
from cnnscope.analysis.cka import batch_grams
from cnnscope.analysis.class_patterns import (
    active,
    chance_counts,
    check_two_per_class,
    contrast_count,
    overlap_within_between,
    percentile,
)
from cnnscope.analysis.histograms import ImageMoments, image_moments
from cnnscope.analysis.linear_probe import pooled_features, probe_accuracy, probe_split
from cnnscope.analysis.pattern_classifier import confusion_rows, pattern_predictions, score
from cnnscope.analysis.patterns import class_similarity
from cnnscope.analysis.sample_order import sample_order
from cnnscope.analysis.scalefree import one_pass, robust_scale
from cnnscope.analysis.spatial_probe import chance_level, spatial_probe
from cnnscope.analysis.study.common import EVAL, PASS_THROUGH
from cnnscope.layout import MEASURES_ARRAYS as ARRAYS
from cnnscope.layout import MEASURES_ROWS as ROWS

PROBE = "probe"
#: The tables of the deepest map's class patterns (:func:`pattern_rows`).
PATTERN_TABLES = ("fcp_contrast", "overlap", "pattern_classification", "pattern_confusion")
MOMENT_FIELDS = ("sparsity", "mean", "std", "low", "high")


@dataclass
class NetworkMeasures:
    """One network's rows per table (``layer`` or ``classifier`` first, no variant/seed) and its
    arrays by name (``moments/<group>/<layer>/<field>``, ``scalefree/<layer>/<field>``,
    ``gram/<layer>/<batch>``)."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)

    def row(self, table: str, layer: str) -> dict[str, Any]:
        """The row of ``table`` for ``layer``."""
        return next(r for r in self.rows[table] if r["layer"] == layer)

    def moments(self, group: str, layer: str) -> ImageMoments:
        return ImageMoments(**{k: self.arrays[f"moments/{group}/{layer}/{k}"] for k in MOMENT_FIELDS})

    def scale_pass(self, layer: str) -> tuple[float, tuple[float, float, np.ndarray, np.ndarray]]:
        """The robust scale and :func:`~cnnscope.analysis.scalefree.one_pass` of the eval sample."""
        a = {k: self.arrays[f"scalefree/{layer}/{k}"] for k in ("scale", "range", "hoyer", "kurtosis")}
        return float(a["scale"][0]), (float(a["range"][0]), float(a["range"][1]), a["hoyer"], a["kurtosis"])

    def grams(self, layer: str) -> list[np.ndarray]:
        """The Gram matrix of each CKA minibatch of ``layer``, in batch order."""
        count = int(self.arrays[f"gram/{layer}/batches"][0])
        return [self.arrays[f"gram/{layer}/{i}"] for i in range(count)]


@dataclass(frozen=True)
class NetworkSettings:
    """What the per-network measures need: the ``compare`` keys of ``params.yaml``, with no defaults
    of their own (conf/ holds them; :meth:`cnnscope.analysis.measures.MeasureSettings.from_config`
    reads them, and its :meth:`~cnnscope.analysis.measures.MeasureSettings.network` gives these)."""

    #: Share of the evaluation sample held out to score the linear and spatial probes.
    probe_test_fraction: float
    #: Seed of the one random order of the evaluation sample that every batched or split measure
    #: follows (:mod:`.sample_order`): the stored sample is sorted by class.
    sample_order_seed: int
    #: Quantile of the non-zero |x| that sets each (network, layer)'s scale.
    scale_quantile: float
    cka_batch: int
    probe_grid: int
    #: Random draws for the class-pattern chance distributions.
    fcp_draws: int
    overlap_resamples: int
    confidence: float
    #: The two classes whose mutual confusion is reported (the article's 4 and 9), by class name.
    confusion_pair: tuple[str, str]


def compared_layers(aset: ActivationSet) -> list[str]:
    """The layers ``compare`` analyses: every captured layer but those that repeat their input."""
    return [name for name in aset.layers if aset.kinds.get(name) not in PASS_THROUGH]


def probed_layers(aset: ActivationSet, layers: Sequence[str]) -> set[str]:
    """The spatial probe reads each layer after its activation (and the logits): a convolution's
    pre-activation and the max-pool after it carry the same layout, at 2-3x the fitting time."""
    last = aset.layers[-2] if SOFTMAX in aset.layers else aset.layers[-1]
    return {name for name in layers if aset.kinds.get(name) == "ReLU"} | {last}


def pair_indices(classes: Sequence[str], names: tuple[str, str]) -> tuple[int, int] | None:
    """Indices of the two named classes (None when the data lacks one: no confusion reported)."""
    found = [list(classes).index(n) for n in names if n in classes]
    return (found[0], found[1]) if len(found) == 2 else None


def head_predictions(aset: ActivationSet, rows: np.ndarray) -> np.ndarray:
    """The network's own predictions (argmax of its float32 softmax) for eval positions ``rows``."""
    return np.asarray(aset.array(EVAL, SOFTMAX), dtype=np.float64)[rows].argmax(axis=1)


def pattern_rows(
    aset: ActivationSet,
    deepest: str,
    labels: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    order: np.ndarray,
    settings: NetworkSettings,
) -> dict[str, list[dict[str, Any]]]:
    """The deepest map's class-pattern contrast against its chance draws (one row per probe class
    with ≥ 2 probes), its within/between overlap and the binary-pattern classifier beside the
    network's head. The chance draws and the overlap bootstrap draw by position, so they read the
    sample in its seeded ``order`` (not its class-sorted storage order)."""
    check_two_per_class(labels)  # the chance draws need two images of every class: say so first
    classes = aset.classes
    probe_labels = np.asarray(aset.group(PROBE).labels)
    groups = [k for k in dict.fromkeys(probe_labels.tolist()) if (probe_labels == k).sum() >= 2]
    pair = pair_indices(classes, settings.confusion_pair)
    patterns = active(aset.array(EVAL, deepest))
    probes = active(aset.array(PROBE, deepest))
    fcp_rows = []
    for k in groups:
        inside = probe_labels == k
        k_size, m_size = int(inside.sum()), int((~inside).sum())
        if m_size == 0:
            continue
        draws = chance_counts(patterns[order], labels[order], k_size, m_size, settings.fcp_draws)
        count = contrast_count(probes[inside], probes[~inside])
        fcp_rows.append(
            {
                "layer": deepest,
                "class": classes[k],
                "group_images": k_size,
                "contrast_images": m_size,
                "contrast_count": count,
                "same_class_mean": float(draws["same_class"].mean()),
                "same_class_p05": float(np.quantile(draws["same_class"], 0.05)),
                "same_class_p95": float(np.quantile(draws["same_class"], 0.95)),
                "mixed_mean": float(draws["mixed"].mean()),
                "mixed_p05": float(np.quantile(draws["mixed"], 0.05)),
                "mixed_p95": float(np.quantile(draws["mixed"], 0.95)),
                "percentile_in_same_class": percentile(count, draws["same_class"]),
                "percentile_in_mixed": percentile(count, draws["mixed"]),
                "draws": settings.fcp_draws,
            }
        )
    ov = overlap_within_between(patterns[order], labels[order], settings.overlap_resamples, settings.confidence)
    predicted = pattern_predictions(patterns, labels, train, test)
    classified = [{"classifier": "binary pattern", **score(predicted, labels[test], pair)}]
    confusion = confusion_rows(predicted, labels[test], classes, classifier="binary pattern")
    if SOFTMAX in aset.layers:
        head = head_predictions(aset, test)
        classified.append({"classifier": "network head", **score(head, labels[test], pair)})
        confusion += confusion_rows(head, labels[test], classes, classifier="network head")
    return {
        "fcp_contrast": fcp_rows,
        "overlap": [{"layer": deepest, **ov}],
        "pattern_classification": classified,
        "pattern_confusion": confusion,
    }


def network_measures(aset: ActivationSet, settings: NetworkSettings, patterns: bool = True) -> NetworkMeasures:
    """Every per-network quantity of ``compare``, each layer read once (per image group);
    ``patterns``: also the deepest map's class patterns (:func:`pattern_rows`)."""
    layers = compared_layers(aset)
    labels = np.asarray(aset.group(EVAL).labels)
    order = sample_order(aset.group(EVAL).sample_ids, settings.sample_order_seed)
    train, test = probe_split(labels, settings.probe_test_fraction, order=order)
    probed = probed_layers(aset, layers)
    chance = chance_level(labels, train, test)
    rows: dict[str, list[dict[str, Any]]] = {
        k: [] for k in ("linear_probe", "similarity", "activation_scale", "spatial_probe")
    }
    arrays: dict[str, np.ndarray] = {}
    for layer in layers:
        x = aset.array(EVAL, layer)
        features = pooled_features(x)
        rows["linear_probe"].append(
            {
                "layer": layer,
                "features": features.shape[1],
                "train_images": len(train),
                "test_images": len(test),
                "accuracy": probe_accuracy(features, labels, train, test),
            }
        )
        rows["similarity"].append({"layer": layer, **class_similarity(x, labels)})
        if layer == SOFTMAX:  # a distribution over classes, not a map: the rest is for maps
            continue
        for group, values in ((EVAL, x), (PROBE, aset.array(PROBE, layer))):
            m = image_moments(values)
            arrays.update({f"moments/{group}/{layer}/{k}": getattr(m, k) for k in MOMENT_FIELDS})
        rows["activation_scale"].append({"layer": layer, **activation_scale(x)})
        low, high, hoyer, kurt = one_pass(x)
        arrays[f"scalefree/{layer}/scale"] = np.array([robust_scale(x, settings.scale_quantile)])
        arrays[f"scalefree/{layer}/range"] = np.array([low, high])
        arrays[f"scalefree/{layer}/hoyer"], arrays[f"scalefree/{layer}/kurtosis"] = hoyer, kurt
        grams = batch_grams(x, settings.cka_batch, order)
        arrays[f"gram/{layer}/batches"] = np.array([len(grams)])
        arrays.update({f"gram/{layer}/{i}": g for i, g in enumerate(grams)})
        if layer in probed:
            probe = spatial_probe(x, labels, train, test, settings.probe_grid)
            rows["spatial_probe"].append(
                {
                    "layer": layer,
                    "grid": settings.probe_grid if x.ndim == 4 else 0,
                    **probe,
                    "chance": chance,
                    "train_images": len(train),
                    "test_images": len(test),
                }
            )
        del x
    feature_maps = [m for m in aset.feature_maps if m in layers]
    if feature_maps and patterns:
        rows.update(pattern_rows(aset, feature_maps[-1], labels, train, test, order, settings))
    return NetworkMeasures(rows, arrays)


def _plain(value: Any) -> Any:
    """numpy scalars as the Python values JSON writes (floats keep every bit: ``repr`` round-trips)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def save(measures: NetworkMeasures, directory: str | Path) -> None:
    """Write ``rows.json`` and ``arrays.npz`` into ``directory`` (the caller makes it atomic).
    JSON keeps each row's key order (the tables' column order) and writes NaN as ``NaN``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ROWS).write_text(json.dumps(measures.rows, default=_plain, indent=1) + "\n")
    write_arrays(directory / ARRAYS, measures.arrays)


def write_arrays(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """``arrays`` as one ``.npz`` that :func:`numpy.load` reads. Not :func:`numpy.savez`: it stamps
    each member with the current time, and a fixed stamp keeps the bytes (and the DVC hash) the
    same on every run. Deflated at zlib's fastest level: per-image histograms are mostly zeros (a
    tenth of their size either way), the CKA Gram matrices hardly compress at all, and the default
    level took 4× as long for 1–20 % smaller files (benchmarks/README.md, "Per-stage fixed costs")."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
            archive.writestr(member, buffer.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)


def load(directory: str | Path) -> NetworkMeasures:
    """Read what :func:`save` wrote; arrays are read from the ``.npz`` when used, not all at once."""
    directory = Path(directory)
    rows = json.loads((directory / ROWS).read_text())
    return NetworkMeasures(rows, np.load(directory / ARRAYS, allow_pickle=False))
