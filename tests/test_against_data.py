"""OIP-vs-data metrics against direct formulas on a small random network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cnnscope.activations.capture import capture
from cnnscope.activations.exemplars import find_exemplars, split_images
from cnnscope.data.prepared import PreparedData
from cnnscope.oip.against_data import against_data, path_layers, pearson
from cnnscope.oip.errors import OIPError
from conftest import conf_section, exemplar_knobs, random_model

MAPS = list(range(0, 128, 16))
#: ``exemplars.far_above`` as conf/ sets it.
FAR_ABOVE = conf_section("exemplars")["far_above"]


@pytest.fixture
def case(prepared: PreparedData):  # type: ignore[no-untyped-def]
    model = random_model(prepared).eval()
    images, ids = split_images(prepared, "test")
    ex = find_exemplars(model, images, ids, ["relu3"], **exemplar_knobs(k=4))["relu3"]
    position = {int(i): p for p, i in enumerate(ids)}
    ex_images = torch.stack([images[[position[int(i)] for i in ex.image_ids[m]]] for m in MAPS])
    return model, ex, ex_images


def test_path_layers_are_the_earlier_block_ends(prepared: PreparedData) -> None:
    model = random_model(prepared)
    assert path_layers(model, "relu3") == ["pool1", "pool2"]
    assert path_layers(model, "relu2") == ["pool1"]
    assert path_layers(model, "relu1") == []


def test_columns_equal_a_direct_computation(case) -> None:  # type: ignore[no-untyped-def]
    model, ex, ex_images = case
    torch.manual_seed(3)
    oips = torch.randn(len(MAPS), 1, 28, 28)
    dead = torch.tensor([i % 3 == 0 for i in range(len(MAPS))])
    table = against_data(model, "relu3", MAPS, oips, ex, ex_images, dead, FAR_ABOVE)
    with torch.no_grad():
        oip_acts = capture(model, oips, ["relu3", "pool1", "pool2"])
    for i, m in enumerate(MAPS):
        row = table.iloc[i]
        peak = oip_acts["relu3"][i, m].max().item()
        assert row["oip_activation"] == pytest.approx(peak)
        top = ex.values[m, 0].item()
        assert row["silent_on_data"] == (top <= 0)
        assert row["silent_to_noise"] == bool(dead[i])
        if top > 0:
            assert row["normalised_activation"] == pytest.approx(peak / top)
        else:
            assert math.isnan(row["normalised_activation"])
        y, x = divmod(int(oip_acts["relu3"][i, m].flatten().argmax()), 3)
        # relu3 node (y, x) sees pool2 rows y..y+2 (3×3 conv, no padding) and pool1 rows 2y..2y+7.
        windows = {"pool2": (y, x, 3), "pool1": (2 * y, 2 * x, 8)}
        for layer, (top_y, left_x, side) in windows.items():
            with torch.no_grad():
                ex_acts = capture(model, model.standardize(ex_images[i].float() / 255), [layer])[layer]
            oip_vec = oip_acts[layer][i, :, top_y : top_y + side, left_x : left_x + side].flatten().numpy()
            ex_vecs = []
            for j in range(ex_images.shape[1]):
                ey, exx = ex.nodes[m, j].tolist()
                scale = 1 if layer == "pool2" else 2
                win = ex_acts[j, :, scale * ey : scale * ey + side, scale * exx : scale * exx + side]
                ex_vecs.append(win.flatten().numpy())
            corr = np.corrcoef(np.stack([oip_vec, *ex_vecs]))
            corr = np.nan_to_num(corr)
            k = len(ex_vecs)
            oip_corr = corr[0, 1:].mean()
            among = corr[1:, 1:]
            per_exemplar = (among.sum(axis=1) - np.diag(among)) / (k - 1)
            assert row[f"path_oip_{layer}"] == pytest.approx(oip_corr, abs=1e-5)
            assert row[f"path_natural_{layer}"] == pytest.approx(per_exemplar.mean(), abs=1e-5)
            assert row[f"path_unnatural_{layer}"] == (oip_corr < per_exemplar.min())
    expected_flag = (table["normalised_activation"] >= 2.0) & table["path_unnatural"]
    assert table["flagged"].tolist() == expected_flag.tolist()


def test_the_top_exemplar_as_oip_scores_one_and_a_natural_path(case) -> None:  # type: ignore[no-untyped-def]
    model, ex, ex_images = case
    live = [i for i, m in enumerate(MAPS) if ex.values[m, 0] > 0]
    assert live
    maps = [MAPS[i] for i in live]
    oips = model.standardize(ex_images[live, 0].float() / 255)
    table = against_data(
        model, "relu3", maps, oips, ex, ex_images[live], torch.zeros(len(live), dtype=torch.bool), FAR_ABOVE
    )
    np.testing.assert_allclose(table["normalised_activation"], 1.0, rtol=1e-5)
    assert not table["path_unnatural"].any() and not table["flagged"].any()


def test_pearson_is_the_correlation_and_zero_for_constant_rows() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(3, 50), torch.randn(4, 50)
    expected = np.corrcoef(np.concatenate([a.numpy(), b.numpy()]))[:3, 3:]
    np.testing.assert_allclose(pearson(a, b).numpy(), expected, atol=1e-6)
    assert pearson(torch.zeros(1, 5), b[:, :5]).abs().max() == 0


def test_mismatched_inputs_are_refused(case) -> None:  # type: ignore[no-untyped-def]
    model, ex, ex_images = case
    with pytest.raises(OIPError, match="8 maps but 2 OIPs"):
        against_data(model, "relu3", MAPS, torch.zeros(2, 1, 28, 28), ex, ex_images, torch.zeros(8), FAR_ABOVE)
