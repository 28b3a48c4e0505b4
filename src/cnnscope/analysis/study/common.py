"""Names and small helpers shared by the study's tables, figure data and summary."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cnnscope.activations import ActivationSet

#: Layers that repeat their input (a reshape, eval-mode dropout); left out of histograms and probes.
PASS_THROUGH = {"Flatten", "Dropout", "Identity"}
EVAL = "eval"
INPUT = "input"

#: (variant, seed, group, layer) → per-image values; (variant, seed) → an activation set.
Key = tuple[str, int, str, str]
Sets = Mapping[tuple[str, int], ActivationSet]
#: (variant, seed, layer) → quantity → one value per evaluation image.
PerImage = dict[tuple[str, int, str], dict[str, np.ndarray]]


def split_groups(probe_names: list[str], per_eval: np.ndarray, per_probe: np.ndarray) -> dict[str, np.ndarray]:
    """Pool eval images (sum of counts / rows), keep probe images one by one, as ``group → row``."""
    out = {EVAL: per_eval.sum(axis=0)}
    out.update({name: per_probe[i] for i, name in enumerate(probe_names)})
    return out


def class_groups(probe_labels: list[int]) -> list[tuple[int, np.ndarray]]:
    """The probe classes with at least two probe images, and those images' indices: the FCP groups."""
    labels = np.asarray(probe_labels)
    return [(int(k), np.flatnonzero(labels == k)) for k in dict.fromkeys(labels.tolist()) if (labels == k).sum() >= 2]
