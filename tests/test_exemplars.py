"""Streaming top-k exemplars against a direct computation over all activations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnnscope.activations.capture import capture
from cnnscope.activations.exemplars import (
    ExemplarError,
    default_layers,
    find_exemplars,
    load_exemplars,
    save_exemplars,
    split_images,
)
from cnnscope.data.prepared import PreparedData
from cnnscope.models.receptive_field import model_receptive_fields
from conftest import exemplar_knobs, random_model

LAYERS = ["relu1", "pool2", "relu3"]


@pytest.fixture
def setup(prepared: PreparedData):  # type: ignore[no-untyped-def]
    model = random_model(prepared).eval()
    images, ids = split_images(prepared, "test")
    return model, images, ids


def _direct(model, images, layer):  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return capture(model, model.standardize(images.float() / 255), [layer])[layer]


def test_top_k_equals_a_full_sort(setup) -> None:  # type: ignore[no-untyped-def]
    model, images, ids = setup
    found = find_exemplars(model, images, ids, LAYERS, **exemplar_knobs(k=5, batch_size=7, n_median=2))
    position = {int(i): p for p, i in enumerate(ids)}
    for layer in LAYERS:
        acts = _direct(model, images, layer)  # (N, M, H, W)
        peak = acts.flatten(2).amax(dim=2)  # (N, M)
        ex = found[layer]
        expected = peak.sort(dim=0, descending=True).values[:5].T
        torch.testing.assert_close(ex.values, expected)
        for m in range(acts.shape[1]):
            for j in range(5):
                image = position[int(ex.image_ids[m, j])]
                y, x = ex.nodes[m, j].tolist()
                assert acts[image, m, y, x] == ex.values[m, j] == peak[image, m]
        torch.testing.assert_close(ex.mean_activation, acts.mean(dim=(0, 2, 3)))
        torch.testing.assert_close(ex.zero_fraction, (acts == 0).float().mean(dim=(0, 2, 3)))
        assert torch.equal(ex.silent, peak.amax(dim=0) <= 0)


def test_batch_size_does_not_change_the_result(setup) -> None:  # type: ignore[no-untyped-def]
    model, images, ids = setup
    a = find_exemplars(model, images, ids, ["relu3"], **exemplar_knobs(k=4, batch_size=5))["relu3"]
    b = find_exemplars(model, images, ids, ["relu3"], **exemplar_knobs(k=4, batch_size=1000))["relu3"]
    assert torch.equal(a.values, b.values) and torch.equal(a.crops, b.crops)
    assert torch.equal(a.median_ids, b.median_ids)


def test_median_images_are_closest_to_the_median(setup) -> None:  # type: ignore[no-untyped-def]
    model, images, ids = setup
    ex = find_exemplars(model, images, ids, ["relu3"], **exemplar_knobs(k=3, n_median=3, median_sample=10_000))["relu3"]
    peak = _direct(model, images, "relu3").flatten(2).amax(dim=2)
    median = peak.median(dim=0).values
    distance = (peak - median).abs().sort(dim=0).values[:3].T
    torch.testing.assert_close((ex.median_values - median[:, None]).abs(), distance)


def test_median_sample_is_a_subset_when_the_split_is_larger(setup) -> None:  # type: ignore[no-untyped-def]
    model, images, ids = setup
    ex = find_exemplars(model, images, ids, ["relu3"], **exemplar_knobs(k=2, n_median=2, median_sample=8))["relu3"]
    assert ex.median_values.shape == (128, 2)
    assert set(ex.median_ids.flatten().tolist()) <= set(ids.tolist())


def test_crops_are_the_receptive_field_windows(setup) -> None:  # type: ignore[no-untyped-def]
    model, images, ids = setup
    found = find_exemplars(model, images, ids, ["relu1", "relu3"], **exemplar_knobs(k=2))
    geometry = model_receptive_fields(model)
    position = {int(i): p for p, i in enumerate(ids)}
    for layer in ("relu1", "relu3"):
        ex = found[layer]
        assert ex.crops.shape == (ex.values.shape[0], 2, 1, geometry[layer].size, geometry[layer].size)
        for m in (0, 5):
            top, left, bottom, right = geometry[layer].window(*ex.nodes[m, 0].tolist())
            image = images[position[int(ex.image_ids[m, 0])]]
            assert torch.equal(ex.crops[m, 0], image[:, top:bottom, left:right])


def test_crops_are_zero_in_the_padding(prepared: PreparedData) -> None:
    model = random_model(prepared, "edge_filters").eval()
    images, ids = split_images(prepared, "test")
    ex = find_exemplars(model, images, ids, ["relu1"], **exemplar_knobs(k=1))["relu1"]
    from cnnscope.activations.exemplars import crop_windows

    crop = crop_windows(images, torch.tensor([[0]]), torch.tensor([[[0, 0]]]), model_receptive_fields(model)["relu1"])
    assert crop.shape == (1, 1, 1, 3, 3)
    assert (crop[0, 0, 0, 0] == 0).all() and (crop[0, 0, 0, :, 0] == 0).all()
    assert torch.equal(crop[0, 0, 0, 1:, 1:], images[0, 0, :2, :2])
    assert ex.crops.shape[-1] == 3


def test_save_and_load_round_trip(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, images, ids = setup
    found = find_exemplars(model, images, ids, ["pool1"], **exemplar_knobs(k=2))
    back = load_exemplars(save_exemplars(found, tmp_path / "ex.pt"))
    assert torch.equal(back["pool1"].crops, found["pool1"].crops)
    assert back["pool1"].table().shape[0] == 32


def test_default_layers_are_block_ends_and_the_deepest_map(prepared: PreparedData) -> None:
    assert default_layers(random_model(prepared)) == ["pool1", "pool2", "relu3"]
    cifar = PreparedData(**{**prepared.to_dict(), "images": prepared.images.expand(-1, 3, -1, -1)[..., :32, :32]})
    assert default_layers(random_model(cifar, "cifar_cnn")) == ["pool1", "pool2", "relu6"]
    assert default_layers(random_model(prepared, "edge_filters")) == ["pool1", "relu2", "pool2"]


def test_probes_are_excluded_and_an_unknown_split_is_named(prepared: PreparedData) -> None:
    _, ids = split_images(prepared, "test")
    assert not torch.isin(ids, prepared.splits["probe"]).any()
    with pytest.raises(ExemplarError, match=r"no split 'tset'; choose one of: 0.2, probe, test, train, val"):
        split_images(prepared, "tset")


@pytest.mark.parametrize(
    ("layers", "k", "message"),
    [
        (
            ["flatten"],
            3,
            r"layer\(s\) flatten \[1152\] have no feature maps .*choose layers such as: relu1, relu2, relu3",
        ),
        (["fc1"], 3, "have no feature maps"),
        (["relu9"], 3, r"unknown layer\(s\) \['relu9'\]"),
        (["relu3"], 10_000, r"k=10000 top exemplars requested, but the split has \d+ images"),
    ],
)
def test_bad_requests_fail_with_one_clear_message(setup, layers, k, message) -> None:  # type: ignore[no-untyped-def]
    model, images, ids = setup
    with pytest.raises(ExemplarError, match=message):
        find_exemplars(model, images, ids, layers, **exemplar_knobs(k=k))
