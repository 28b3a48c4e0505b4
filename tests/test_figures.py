"""The paper figures' decisions: one colour scale where panels compare, empty bins left out, crops,
clipped intervals, layer kinds apart, integer epochs; and the report's compact tables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from cnnscope.analysis import StudyResults
from cnnscope.report.collect import confusion_rates
from cnnscope.report.probes import compact_certainty
from cnnscope.viz import activations as panels
from cnnscope.viz.curves import training_curves
from cnnscope.viz.oip import node_grid, oip_grid
from cnnscope.viz.study import _histogram_layers
from cnnscope.viz.style import (
    INPUT_COLOUR,
    clipped_errors,
    empty_as_nan,
    foreground_box,
    kind_columns,
    symmetric_limit,
)


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def test_symmetric_limit_is_the_largest_magnitude_of_all_arrays() -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(4, 3, 3)) * s for s in (0.1, 2.0, 0.5)]
    assert symmetric_limit(arrays) == pytest.approx(max(np.abs(a).max() for a in arrays))
    assert symmetric_limit([np.zeros((2, 2))]) == 1.0  # an all-zero change still draws


def test_kernel_changes_share_one_colour_scale_across_variants() -> None:
    rng = np.random.default_rng(1)
    deltas = {"small": 0.01 * rng.normal(size=(8, 1, 5, 5)), "big": rng.normal(size=(8, 1, 5, 5))}
    fig = panels.kernel_change_figure(deltas, "t")
    images = [im for ax in fig.axes for im in ax.images]
    assert len(images) == 1  # every variant in one image: one scale, one colour bar
    bound = np.abs(deltas["big"].mean(axis=1)).max()
    assert images[0].get_clim() == pytest.approx((-bound, bound))
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["small", "big"]


def test_empty_bins_are_nan_not_a_floor() -> None:
    p = np.array([0.5, 0.0, 0.25, 0.0, 0.25])
    heights = empty_as_nan(p)
    assert np.isnan(heights[[1, 3]]).all() and heights[[0, 2, 4]].tolist() == [0.5, 0.25, 0.25]
    edges = np.linspace(0, 1, 6)
    fig = panels.histogram_overlay({"relu1": (edges, {"input": p, "benchmark": p[::-1]})}, "t")
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    drawn = np.asarray(lines["benchmark"].get_ydata(), dtype=float)
    assert np.isnan(drawn).sum() >= 2 and np.nanmin(drawn) == 0.25  # nothing drawn below the data
    assert lines["input"].get_color() == INPUT_COLOUR != lines["benchmark"].get_color()
    assert fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel()


def test_layers_of_ten_values_get_no_histogram() -> None:
    res = StudyResults(
        variants=["a"], seeds=[0], classes=[], layers=["relu1", "fc2", "softmax"], feature_maps=["relu1"],
        probe_names=[], probe_labels=[], layer_sizes={"relu1": 784, "fc2": 10, "softmax": 10},
    )  # fmt: skip
    res.edges = {"relu1": np.linspace(0, 1, 3), "fc2": np.linspace(0, 1, 3)}
    assert _histogram_layers(res) == ["relu1"]


def test_foreground_box_crops_to_the_digit_with_a_margin() -> None:
    image = np.zeros((28, 28), dtype=np.uint8)
    image[5:9, 10:20] = 200
    image[12, 11] = 3
    assert foreground_box(image) == (slice(4, 14), slice(9, 21))
    assert foreground_box(image, margin=0) == (slice(5, 13), slice(10, 20))
    image[0, 0] = 255  # a foreground pixel in the corner: the box is clipped to the image
    assert foreground_box(image)[0].start == 0
    flat = np.full((6, 6), 9, dtype=np.uint8)
    assert foreground_box(flat) == (slice(0, 6), slice(0, 6))
    fig = panels.pixel_values_figure(np.pad(np.full((3, 4), 90, np.uint8), 10), "t")
    assert len(fig.axes[0].texts) == 5 * 6  # 3 × 4 digit plus the 1-pixel margin, every value printed


def test_intervals_are_clipped_to_probabilities() -> None:
    err = clipped_errors(np.array([0.95, 0.02, 0.5]), np.array([0.1, 0.1, 0.1]))
    np.testing.assert_allclose(err, [[0.1, 0.02, 0.1], [0.05, 0.1, 0.1]])
    fig = panels.softmax_bars({"a": (np.array([0.98, 0.02]), np.array([0.2, 0.2]))}, ["x", "y"], 0, "t")
    (bars,) = fig.axes[0].collections
    for segment in bars.get_segments():
        assert segment[:, 1].min() >= 0 and segment[:, 1].max() <= 1


def test_layer_profile_keeps_layer_kinds_apart() -> None:
    layers = ["conv1", "relu1", "pool1", "conv2", "relu2", "fc1"]
    kinds = dict(zip(layers, ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "Linear"], strict=True))
    assert kind_columns(layers, kinds) == {
        "Conv2d": ["conv1", "conv2"], "ReLU": ["relu1", "relu2"], "MaxPool2d": ["pool1"], "Linear": ["fc1"]
    }  # fmt: skip
    values = np.arange(6.0)
    fig = panels.layer_profile({"q": {"a": (values, 0 * values)}}, layers, kinds, "t")
    assert [ax.get_title() for ax in fig.axes] == ["Conv2d", "ReLU", "MaxPool2d", "Linear"]
    (line,) = fig.axes[1].get_lines()[:1]
    assert line.get_ydata().tolist() == [1.0, 4.0]  # relu1, relu2 and nothing else on the ReLU line


def test_feature_maps_of_every_probe_in_one_figure_without_margins() -> None:
    rng = np.random.default_rng(2)
    maps = {p: {v: rng.random((6, 7, 7)) for v in ("a", "b")} for p in ("one", "two", "three")}
    fig = panels.feature_map_figure(maps, "relu1", max_maps=4)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{p} · {v}" for p in maps for v in ("a", "b")]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "3"]
    assert len(fig.axes) == 2  # the image and its one colour bar
    (image,) = ax.images
    h, w = image.get_array().shape
    box = ax.get_position()
    width_in, height_in = box.width * fig.get_figwidth(), box.height * fig.get_figheight()
    assert width_in / height_in == pytest.approx(w / h)  # the axes is exactly the image: square pixels


def test_oip_grid_has_a_colour_bar_and_legible_labels() -> None:
    images = np.random.default_rng(3).normal(size=(5, 1, 8, 8))
    labels = [f"{m}: {a:.2g}" for m, a in enumerate(np.linspace(0, 3, 5))]
    fig = oip_grid(images, labels, [False, False, True, False, False], "conv1")
    assert any(ax.get_ylabel() == "input (standardised)" for ax in fig.axes)
    texts = [t for t in fig.axes[0].texts if t.get_text() in labels]
    assert len(texts) == 5 and min(t.get_fontsize() for t in texts) >= 7


def test_training_curves_tick_whole_epochs() -> None:
    history = pd.DataFrame({"variant": "a", "seed": 0, "epoch": [0.0, 1.0, 2.0], "val_acc": [0.5, 0.7, 0.8]})
    fig = training_curves(history, ["a"], ("val_acc",))
    fig.canvas.draw()
    ticks = fig.axes[0].get_xticks()
    assert len(ticks) and np.all(ticks == np.round(ticks))


def test_confusion_rates_are_row_normalised_means_over_seeds(tmp_path: Path) -> None:
    classes = ["x", "y"]
    for seed, counts in enumerate([[[8, 2], [0, 5]], [[6, 4], [5, 5]]]):
        folder = tmp_path / "a" / f"seed{seed}"
        folder.mkdir(parents=True)
        pd.DataFrame(counts, index=classes, columns=classes).to_csv(folder / "confusion.csv")
    names, rates = confusion_rates(tmp_path, ["a"], [0, 1])
    assert names == classes
    np.testing.assert_allclose(rates["a"], [[0.7, 0.3], [0.25, 0.75]])


def test_compact_certainty_summarises_probes_per_variant() -> None:
    probes = pd.DataFrame(
        {
            "variant": ["a"] * 4 + ["b"] * 2,
            "seed": [0, 0, 1, 1, 0, 0],
            "sample": ["p", "q", "p", "q", "p", "q"],
            "label": [1, 2, 1, 2, 1, 2],
            "predicted": [1, 2, 1, 0, 0, 0],
            "max_prob": [0.9, 0.6, 0.7, 0.4, 0.3, 0.2],
        }
    )
    table = compact_certainty(probes, ["a", "b"]).set_index("variant")
    assert table.loc["a", "mean top-1 probability"] == pytest.approx((0.8 + 0.5) / 2)
    assert table.loc["a", "share correct"] == pytest.approx(0.75)
    assert table.loc["a", "least certain probe"] == "q (0.500)"
    assert table.loc["b", "share correct"] == 0.0


@pytest.mark.parametrize(("side", "shown", "note"), [(8, 8, False), (16, 8, True), (14, 7, True)])
def test_node_grid_draws_at_most_eight_nodes_a_side(side: int, shown: int, note: bool) -> None:
    """A large map's per-node figure shows every step-th node (and says so), so the RGB figure
    stays small enough for a report in git; an 8 × 8 map is drawn whole."""
    rng = np.random.default_rng(0)
    images = rng.normal(size=(side, side, 3, 8, 8)).astype(np.float32)
    activations = rng.random((side, side))
    fig = node_grid(images, activations, np.zeros((side, side), dtype=bool), "map 5")
    mosaic = fig.axes[0].get_images()[0].get_array()
    assert mosaic.shape[0] == 1 + shown * (8 + 1)  # tiles of 8 px and their 1-px borders
    assert ("one node in 2 along each axis" in fig._suptitle.get_text()) is note
