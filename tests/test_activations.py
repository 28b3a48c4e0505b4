"""Activation capture and storage: equal to a plain forward pass, streamed, and loud on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models.feature_extraction import create_feature_extractor

from cnnscope.activations import (
    SOFTMAX,
    ActivationSet,
    EmptySampleError,
    ImageGroup,
    LayerError,
    capture,
    extract_activations,
    resolve_layers,
    stratified_sample,
)
from cnnscope.activations.store import NpyStreamWriter
from cnnscope.data.prepared import PreparedData
from conftest import random_model


def _inputs(prepared: PreparedData, model: torch.nn.Module, n: int = 12) -> torch.Tensor:
    return model.standardize(prepared.images[:n].float() / 255)  # type: ignore[operator]


@pytest.mark.parametrize("name", ["mnist_cnn", "edge_filters"])
def test_capture_equals_torchvision_feature_extractor(prepared: PreparedData, name: str) -> None:
    model = random_model(prepared, name).eval()
    x = _inputs(prepared, model)
    layers = resolve_layers(model, [])
    got = capture(model, x, layers)
    reference = create_feature_extractor(model, return_nodes=model.layer_names)(x)
    for layer in model.layer_names:
        torch.testing.assert_close(got[layer], reference[layer], rtol=0, atol=0)
    torch.testing.assert_close(got[SOFTMAX], torch.softmax(model(x), dim=1))


def test_capture_stops_after_last_requested_layer(prepared: PreparedData) -> None:
    model = random_model(prepared).eval()
    called: list[str] = []
    for layer_name, module in model.named_children():
        module.register_forward_hook(lambda *_, n=layer_name: called.append(n))
    out = capture(model, _inputs(prepared, model), ["relu1", "pool1"])
    assert set(out) == {"relu1", "pool1"}
    assert called == ["conv1", "relu1", "pool1"]


def test_inplace_relu_does_not_overwrite_captured_input(prepared: PreparedData) -> None:
    model = random_model(prepared).eval()
    model.relu1.inplace = True
    out = capture(model, _inputs(prepared, model), ["conv1", "relu1"])
    assert (out["conv1"] < 0).any()
    torch.testing.assert_close(out["relu1"], out["conv1"].clamp(min=0))


def test_unknown_layer_lists_what_exists(prepared: PreparedData) -> None:
    model = random_model(prepared)
    with pytest.raises(LayerError) as err:
        resolve_layers(model, ["relu1", "conv9"])
    message = str(err.value)
    assert "conv9" in message and "relu_fc1" in message and SOFTMAX in message


@pytest.mark.parametrize("float16", [False, True])
def test_stored_activations_equal_plain_forward(tmp_path: Path, prepared: PreparedData, float16: bool) -> None:
    model = random_model(prepared).eval()
    ids = prepared.splits["test"]
    group = ImageGroup(prepared.images[ids], ids, prepared.labels[ids])
    layers = resolve_layers(model, [])
    # batch size 7 does not divide the group: the last partial batch must land in place too
    extract_activations(model, {"eval": group}, layers, tmp_path, batch_size=7, float16=float16)
    stored = ActivationSet(tmp_path)
    x = model.standardize(prepared.images[ids].float() / 255)
    with torch.no_grad():
        logits = model(x)
        relu2 = torch.nn.Sequential(*list(model.children())[: model.layer_names.index("relu2") + 1])(x)
    # float32: equal up to summation order (batches of 7 vs one batch); float16: up to its rounding
    tol = {"rtol": 1e-3, "atol": 2e-3} if float16 else {"rtol": 1e-5, "atol": 1e-6}
    np.testing.assert_allclose(stored.array("eval", "fc2"), logits.numpy(), **tol)
    np.testing.assert_allclose(stored.array("eval", "relu2"), relu2.numpy(), **tol)
    np.testing.assert_allclose(stored.array("eval", SOFTMAX), torch.softmax(logits, 1).numpy(), **tol)
    assert stored.array("eval", "conv1").dtype == (np.float16 if float16 else np.float32)
    assert stored.group("eval").sample_ids == ids.tolist()
    assert stored.feature_maps == ["relu1", "relu2", "relu3"]
    assert stored.first_conv_weight().shape == (32, 1, 3, 3)


def test_stream_writer_refuses_wrong_row_count(tmp_path: Path) -> None:
    writer = NpyStreamWriter(tmp_path / "x.npy", (5, 2), np.dtype(np.float32))
    writer.append(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="more than 5 rows"):
        writer.append(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="3 rows written"):
        writer.close()


def test_stratified_sample_keeps_class_proportions_and_is_deterministic() -> None:
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    indices = torch.arange(100, 200)
    sample = stratified_sample(indices, labels, 20)
    assert len(sample) == 20 and len(set(sample.tolist())) == 20
    picked = labels[sample - 100]
    assert torch.bincount(picked).tolist() == [12, 6, 2]
    assert torch.equal(sample, stratified_sample(indices, labels, 20))
    assert torch.equal(stratified_sample(indices, labels, 500), indices)


def test_empty_sample_is_refused() -> None:
    with pytest.raises(EmptySampleError, match="eval_samples=0"):
        stratified_sample(torch.arange(10), torch.zeros(10, dtype=torch.long), 0)
