"""Issue 25, item 8: figures a reviewer accepts — one colour per variant in every figure, the layer
profile without empty panels, per-row colour scales where a shared one hides a variant, OIP grids
that mark non-converged maps, a silent map without arbitrary exemplars."""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.patches import Rectangle

from cnnscope.viz import activations as panels
from cnnscope.viz.atlas import FigureCell, oip_beside_exemplars
from cnnscope.viz.curves import training_curves
from cnnscope.viz.oip import UNCONVERGED, oip_grid
from cnnscope.viz.style import OTHER_COLOURS, VARIANT_COLOURS, per_row_scale, variant_colour


@pytest.fixture(autouse=True)
def _close() -> Iterator[None]:
    yield
    plt.close("all")


def _texts(fig: plt.Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_a_variant_has_its_colour_whatever_the_other_variants_and_their_order() -> None:
    history = pd.DataFrame(
        [{"variant": v, "seed": 0, "epoch": e, "val_acc": 0.5} for v in ("dummy", "benchmark", "wide") for e in (0, 1)]
    )
    for order in (["dummy", "benchmark", "wide"], ["wide", "benchmark"]):
        fig = training_curves(history, order, ("val_acc",))
        colours = {line.get_label(): to_hex(line.get_color()) for line in fig.axes[0].get_lines()}
        assert colours["benchmark"] == to_hex(VARIANT_COLOURS["benchmark"])
        assert colours["wide"] == to_hex(variant_colour("wide")) and variant_colour("wide") in OTHER_COLOURS
    assert len(set(VARIANT_COLOURS.values())) == len(VARIANT_COLOURS)


def test_the_layer_profile_says_where_a_measure_does_not_apply_instead_of_an_empty_panel() -> None:
    layers, kinds = ["conv1", "relu1", "softmax"], {"conv1": "Conv2d", "relu1": "ReLU", "softmax": "Softmax"}
    hoyer = {"benchmark": (np.array([0.3, 0.5, np.nan]), np.zeros(3))}
    probe = {"benchmark": (np.array([0.2, 0.4, 0.9]), np.zeros(3))}
    fig = panels.layer_profile({"Hoyer sparsity": hoyer, "probe accuracy": probe}, layers, kinds, "t")
    axes = np.array(fig.axes[: 2 * 3]).reshape(2, 3)
    assert not axes[0, 2].axison and "not measured\non Softmax" in [t.get_text() for t in axes[0, 2].texts]
    assert all(ax.axison for ax in [*axes[0, :2], *axes[1]])
    assert axes[0, 0].get_ylabel() == "Hoyer sparsity"


def test_feature_maps_get_a_scale_per_row_only_where_a_shared_one_hides_a_row() -> None:
    loud, quiet = np.full((4, 3, 3), 10.0), np.full((4, 3, 3), 0.5)
    assert per_row_scale([loud, quiet]) and not per_row_scale([loud, loud * 0.5, np.zeros((4, 3, 3))])
    fig = panels.feature_map_figure({"probe": {"benchmark": loud, "untrained": quiet}}, "t", 4)
    image = fig.axes[0].images[0]
    assert image.get_clim()[1] == 1.0 and fig.axes[1].get_ylabel() == "activation ÷ row maximum"
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [
        "probe · benchmark (max 10)",
        "probe · untrained (max 0.5)",
    ]
    shared = panels.feature_map_figure({"probe": {"benchmark": loud, "dummy": loud * 0.5}}, "t", 4)
    assert shared.axes[1].get_ylabel() == "activation"


def test_the_oip_grid_frames_live_maps_that_did_not_converge() -> None:
    images = np.random.default_rng(0).normal(size=(4, 1, 6, 6))
    fig = oip_grid(images, ["0", "1", "2", "3"], [True, False, False, False], "t", converged=[False, False, True, True])
    frames = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert [to_hex(p.get_edgecolor()) for p in frames] == [to_hex("red"), to_hex(UNCONVERGED)]  # dead map: red only
    labels = {t.get_text(): to_hex(t.get_color()) for t in fig.axes[0].texts if t.get_text() in "0123"}
    assert labels == {"0": to_hex("red"), "1": to_hex(UNCONVERGED), "2": to_hex("black"), "3": to_hex("black")}


def test_a_silent_map_shows_no_exemplars_instead_of_arbitrary_images() -> None:
    crops = np.zeros((2, 1, 4, 4), dtype=np.uint8)
    oip = np.zeros((1, 6, 6), dtype=np.float32)
    rows = [
        [FigureCell(0, oip, crops, 0.8)],
        [FigureCell(1, oip, crops, float("nan"))],
        [FigureCell(2, None, crops, float("nan"))],
    ]
    fig = oip_beside_exemplars(["benchmark"], rows, ["map 0", "map 1", "map 2"], "t")
    axes = np.array(fig.axes).reshape(3, 3)
    assert all(ax.images for ax in axes[0, 1:]) and not any(ax.images for ax in axes[1, 1:])
    assert all(ax.images for ax in axes[2, 1:])  # no OIP computed: its exemplars still show
    assert "no exemplars (silent on data)" in _texts(fig) and axes[1, 0].get_title() == "silent"
