"""Issue 25, item 1: no measure depends on the order the evaluation sample is stored in.

The extract stage stores the sample sorted by class; each test here feeds a class-sorted sample
and the same images shuffled, and asks for the same answer (and, for CKA, the full-batch value).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cnnscope.analysis.cka import cka, minibatch_cka
from conftest import conf_section, measure_settings


def _class_sorted_reps(n_per_class: int = 125, classes: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two representations of the same class-sorted images: both carry the class (through
    different linear maps) plus independent noise, so most of their shared structure is between
    classes — what a batch of one class cannot see."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    centres = rng.normal(size=(classes, 20))
    x = centres[labels] @ rng.normal(size=(20, 40)) + rng.normal(size=(len(labels), 40))
    y = centres[labels] @ rng.normal(size=(20, 30)) + rng.normal(size=(len(labels), 30))
    return x.astype(np.float32), y.astype(np.float32)


def test_minibatch_cka_of_a_class_sorted_sample_equals_full_batch_cka() -> None:
    x, y = _class_sorted_reps()
    full = cka(x, y)
    batched = minibatch_cka({"x": x, "y": y}, [("x", "y")], batch=256)["x", "y"]  # the compare stage's batch
    assert abs(batched - full) <= 0.005, (batched, full)


def test_sample_order_depends_on_the_images_not_their_storage_order() -> None:
    from cnnscope.analysis.sample_order import sample_order

    ids = np.array([40, 3, 17, 8, 25, 31, 12])
    stored = np.random.default_rng(1).permutation(len(ids))
    assert (ids[sample_order(ids, 0)] == ids[stored][sample_order(ids[stored], 0)]).all()
    assert not (ids[sample_order(ids, 0)] == ids[sample_order(ids, 1)]).all()  # the seed matters


def _sets_in_order(tmp_path: Path, prepared, shuffle: bool):  # type: ignore[no-untyped-def]
    """Activation sets of three random networks whose evaluation sample is stored sorted by class,
    or the same images shuffled."""
    from cnnscope.activations import ActivationSet, ImageGroup, extract_activations, resolve_layers
    from conftest import random_model

    test, train = prepared.splits["test"], prepared.splits["train"]
    # probes: three 4s against a 1 and a 2 (the article's FCP groups), so the chance draws run
    probe = torch.cat([train[prepared.labels[train] == k][:n] for k, n in ((4, 3), (1, 1), (2, 1))])
    order = np.argsort(prepared.labels[test].numpy(), kind="stable")
    if shuffle:
        order = np.random.default_rng(7).permutation(len(test))
    test = test[order]
    groups = {
        "eval": ImageGroup(prepared.images[test], test, prepared.labels[test]),
        "probe": ImageGroup(prepared.images[probe], probe, prepared.labels[probe], [f"p{i}" for i in range(5)]),
    }
    sets = {}
    for i, v in enumerate(("benchmark", "dummy")):
        for s in (0,):
            model = random_model(prepared, "mnist_cnn", seed=10 * s + i, width=0.25, hidden=8).eval()
            out = tmp_path / ("shuffled" if shuffle else "sorted") / v / f"seed{s}"
            float16 = conf_section("extract")["float16"]
            extract_activations(model, groups, resolve_layers(model, []), out, 64, float16, classes=prepared.classes)
            sets[v, s] = ActivationSet(out)
    return sets


@pytest.fixture(scope="module")
def sorted_and_shuffled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:  # type: ignore[type-arg]
    from cnnscope.analysis.measures import compute_measures
    from conftest import synthetic_prepared

    prepared = synthetic_prepared(n_per_class=40)
    tmp = tmp_path_factory.mktemp("order")
    out = []
    for shuffle in (False, True):
        sets = _sets_in_order(tmp, prepared, shuffle)
        ref = next(iter(sets.values()))
        ids = ref.group("eval").sample_ids
        pixels = prepared.images[ids].reshape(len(ids), -1).float().numpy() / 255
        layers = [name for name in ref.layers if name != "flatten"]
        settings = measure_settings(bins=16, cka_batch=24, fcp_draws=50, overlap_resamples=20)
        res = compute_measures(sets, pixels, layers, ref.feature_maps, prepared.classes, settings)
        out.append(res.tables)
    return out[0], out[1]


def _compare(a: pd.DataFrame, b: pd.DataFrame, keys: list[str], value: str) -> np.ndarray:
    joined = a.merge(b, on=keys, suffixes=("_sorted", "_shuffled"))
    assert len(joined) == len(a) == len(b) > 0
    return (joined[f"{value}_sorted"] - joined[f"{value}_shuffled"]).abs().to_numpy()


def test_cka_of_a_class_sorted_sample_equals_a_shuffled_one(sorted_and_shuffled) -> None:  # type: ignore[no-untyped-def]
    a, b = sorted_and_shuffled
    keys = ["layer", "variant_a", "seed_a", "variant_b", "seed_b"]
    assert _compare(a["cka"], b["cka"], keys, "cka").max() <= 1e-6


def test_probes_of_a_class_sorted_sample_equal_a_shuffled_one(sorted_and_shuffled) -> None:  # type: ignore[no-untyped-def]
    a, b = sorted_and_shuffled
    assert _compare(a["spatial_probe"], b["spatial_probe"], ["variant", "seed", "layer"], "accuracy").max() <= 1e-9
    keys = ["variant", "seed", "classifier"]
    assert _compare(a["pattern_classification"], b["pattern_classification"], keys, "accuracy").max() <= 1e-9


def test_matching_of_a_class_sorted_sample_equals_a_shuffled_one(sorted_and_shuffled) -> None:  # type: ignore[no-untyped-def]
    a, b = sorted_and_shuffled
    keys = ["layer", "variant_a", "seed_a", "variant_b", "seed_b", "map_a"]
    assert _compare(a["matching"], b["matching"], keys, "matched_corr").max() <= 1e-5


def test_class_patterns_of_a_class_sorted_sample_equal_a_shuffled_one(sorted_and_shuffled) -> None:  # type: ignore[no-untyped-def]
    a, b = sorted_and_shuffled
    for column in ("difference", "image_ci_low", "image_ci_high"):
        assert _compare(a["overlap"], b["overlap"], ["variant", "seed"], column).max() <= 1e-9, column
    keys = ["variant", "seed", "class"]
    for column in ("same_class_mean", "mixed_mean"):
        assert _compare(a["fcp_contrast"], b["fcp_contrast"], keys, column).max() <= 1e-9, column
