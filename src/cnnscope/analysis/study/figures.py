"""The arrays the compare figures draw, gathered from the activation sets; each function returns them.

Figures show the first seed of each variant (maps, FCP masks, class means, kernel changes) or pool
the seeds (histograms, softmax mean ± std); the tables hold every seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnscope.activations import SOFTMAX
from cnnscope.activations.capture import first_conv_weight
from cnnscope.analysis.patterns import class_means, common_active
from cnnscope.analysis.study.common import EVAL, INPUT, Key, Sets, class_groups, split_groups
from cnnscope.errors import CnnscopeError
from cnnscope.layout import initial_checkpoint
from cnnscope.models import load_model


def summed_histograms(
    probe_names: list[str], counts: dict[Key, np.ndarray], input_counts: dict[str, np.ndarray]
) -> dict[tuple[str, str, str], np.ndarray]:
    """``(variant, group, layer)`` → counts summed over seeds; ``("input", group, "input")`` for pixels."""
    out: dict[tuple[str, str, str], np.ndarray] = {}
    for g, h in split_groups(probe_names, input_counts[EVAL], input_counts["probe"]).items():
        out[INPUT, g, INPUT] = h
    for (v, s, g, L), c in counts.items():
        if g == EVAL:
            for group, h in split_groups(probe_names, c, counts[v, s, "probe", L]).items():
                out[v, group, L] = out.get((v, group, L), 0) + h
    return out


def probe_softmax(sets: Sets, variants: list[str], seeds: list[int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """variant → (mean, std) over seeds of the probes' softmax ``(P, K)`` (std 0 with one seed)."""
    out = {}
    for v in variants:
        stack = np.stack(
            [np.asarray(sets[v, s].array("probe", SOFTMAX), dtype=np.float64) for s in seeds if (v, s) in sets]
        )
        out[v] = (stack.mean(axis=0), stack.std(axis=0, ddof=1) if len(stack) > 1 else 0 * stack[0])
    return out


def probe_maps(sets: Sets, variants: list[str], seed: int, layers: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """layer → variant → the probe images' maps ``(P, C, H, W)`` of ``seed``."""
    return {L: {v: np.asarray(sets[v, seed].array("probe", L), dtype=np.float32) for v in variants} for L in layers}


def class_mean_maps(
    sets: Sets, variants: list[str], seed: int, layer: str, labels: np.ndarray, num_classes: int
) -> dict[str, np.ndarray]:
    """variant → class-mean maps ``(K, C, H, W)`` of ``layer`` over the evaluation sample."""
    return {v: class_means(sets[v, seed].array(EVAL, layer), labels, num_classes) for v in variants}


def fcp_groups(
    sets: Sets, variants: list[str], seed: int, layer: str, probe_names: list[str], probe_labels: list[int]
) -> list[dict[str, Any]]:
    """Per probe class with ≥ 2 probes: its label, probe names, and per variant the maps
    ``(k, C, H, W)`` of ``layer`` and the mask of nodes active in all of them."""
    groups = []
    for k, idx in class_groups(probe_labels):
        group: dict[str, Any] = {"class": k, "names": [probe_names[i] for i in idx], "maps": {}, "mask": {}}
        for v in variants:
            maps = np.asarray(sets[v, seed].array("probe", layer)[idx], dtype=np.float32)
            group["maps"][v], group["mask"][v] = maps, common_active(maps)["mask"]
        groups.append(group)
    return groups


def first_kernels(sets: Sets, variants: list[str], seed: int) -> dict[str, np.ndarray]:
    """variant → learned first-layer kernels of ``seed`` (variants without a stored conv are left out)."""
    return {v: k for v in variants if (k := sets[v, seed].first_conv_weight()) is not None}


def initial_kernels(models_dir: Path, variants: list[str], seed: int) -> dict[str, np.ndarray]:
    """variant → first-layer kernels of ``seed`` before training, from the ``initial.ckpt`` the
    train stage saves before the first step (loaded through :mod:`cnnscope.models`)."""
    out = {}
    for v in variants:
        path = initial_checkpoint(models_dir, v, seed)
        if not path.is_file():
            raise CnnscopeError(
                f"no initial weights at {path}: the train stage saves them before the first step; "
                f"re-run it for {v} seed {seed} (cnnscope repro train)"
            )
        if (first := first_conv_weight(load_model(path))) is not None:
            out[v] = first[1].float().numpy()
    return out


def kernel_changes(trained: dict[str, np.ndarray], initial: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """variant → trained minus initial first-layer kernels, for the variants that have both."""
    return {v: trained[v] - initial[v] for v in initial if v in trained}
