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
from cnnscope.activations.extract import ActivationRangeError
from cnnscope.activations.store import FORMAT, NpyStreamWriter
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


def test_capture_converts_each_output_to_the_storage_dtype(prepared: PreparedData) -> None:
    model = random_model(prepared).eval()
    x = _inputs(prepared, model)
    layers = resolve_layers(model, [])
    got, full = capture(model, x, layers, torch.float16), capture(model, x, layers)
    for layer in layers:
        if layer in ("fc2", SOFTMAX):  # logits and probabilities stay float32
            assert got[layer].dtype == torch.float32
            torch.testing.assert_close(got[layer], full[layer], rtol=0, atol=0)
        else:
            assert got[layer].dtype == torch.float16
            torch.testing.assert_close(got[layer], full[layer].to(torch.float16), rtol=0, atol=0)


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


def test_tiny_probabilities_survive_float16_extraction(tmp_path: Path, prepared: PreparedData) -> None:
    """A probability of 1e-6 (0 in float16) is stored as it is, whatever the storage dtype of the maps."""
    model = random_model(prepared).eval()
    with torch.no_grad():  # logits that put 1e-6 on class 1 and the rest on class 0 for every image
        model.fc2.weight.zero_()
        model.fc2.bias.copy_(torch.tensor([0.0, float(np.log(1e-6))] + [-1e4] * 8))
    ids = prepared.splits["test"][:9]
    group = ImageGroup(prepared.images[ids], ids, prepared.labels[ids])
    extract_activations(model, {"eval": group}, resolve_layers(model, []), tmp_path, batch_size=4, float16=True)
    probs = ActivationSet(tmp_path).array("eval", SOFTMAX)
    # float16 would hold it as a subnormal 1.013e-6 (and anything below 3e-8 as 0)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs[:, 1], 1e-6, rtol=1e-4)
    assert ActivationSet(tmp_path).array("eval", "relu1").dtype == np.float16


def test_activations_beyond_float16_are_refused_naming_the_layer_and_the_fix(
    tmp_path: Path, prepared: PreparedData
) -> None:
    """A diverged network's maps overflow float16 to inf; stored, they broke every measure downstream
    with a scikit-learn traceback. Extraction stops at the first such batch and says what to do."""
    model = random_model(prepared).eval()
    with torch.no_grad():
        model.conv1.weight.mul_(1e6)  # relu1 reaches ~1e6, past float16's 65504
    ids = prepared.splits["test"][:8]
    group = ImageGroup(prepared.images[ids], ids, prepared.labels[ids])
    layers = resolve_layers(model, [])
    with pytest.raises(ActivationRangeError, match=r"layer conv\d .*extract\.float16=false"):
        extract_activations(model, {"eval": group}, layers, tmp_path, batch_size=4, float16=True)
    # in float32 the same network is stored: nothing overflows there
    extract_activations(model, {"eval": group}, layers, tmp_path / "f32", batch_size=4, float16=False)
    assert np.isfinite(ActivationSet(tmp_path / "f32").array("eval", "relu1")).all()


@pytest.mark.parametrize("float16", [False, True])
def test_stored_activations_equal_plain_forward(tmp_path: Path, prepared: PreparedData, float16: bool) -> None:
    model = random_model(prepared).eval()
    ids = prepared.splits["test"]
    group = ImageGroup(prepared.images[ids], ids, prepared.labels[ids])
    layers = resolve_layers(model, [])
    # batch size 7 does not divide the group: the last partial batch must land in place too
    manifest = extract_activations(model, {"eval": group}, layers, tmp_path, batch_size=7, float16=float16)
    stored = ActivationSet(tmp_path)
    x = model.standardize(prepared.images[ids].float() / 255)
    with torch.no_grad():
        reference = create_feature_extractor(model, return_nodes=model.layer_names)(x)
    reference[SOFTMAX] = torch.softmax(reference["fc2"], 1)
    # float32: equal up to summation order (batches of 7 vs one batch); float16: up to its rounding
    tol = {"rtol": 1e-3, "atol": 2e-3} if float16 else {"rtol": 1e-5, "atol": 1e-6}
    assert stored.layers == layers
    assert manifest["float32_layers"] == ["fc2", SOFTMAX]
    for layer in layers:  # stored and derived layers alike
        array = stored.array("eval", layer)
        assert array.dtype == (np.float16 if float16 and layer not in ("fc2", SOFTMAX) else np.float32), layer
        # summation-order error grows with the layer's scale (the kaiming init keeps it ~1 through depth)
        scale = max(1.0, float(reference[layer].abs().max()))
        np.testing.assert_allclose(
            array, reference[layer].numpy(), rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=layer
        )
    derived = ["conv1", "relu1", "pool1", "relu2", "pool2", "relu3", "flatten", "relu_fc1"]
    assert list(manifest["derived"]) == derived
    written = {path.stem for path in (tmp_path / "eval").glob("*.npy")}
    assert written - {"input"} == set(layers) - set(derived) == {"conv2", "conv3", "fc1", "fc2", SOFTMAX}
    np.testing.assert_array_equal(np.load(tmp_path / "eval" / "input.npy"), prepared.images[ids].numpy())
    assert stored.group("eval").sample_ids == ids.tolist()
    assert stored.feature_maps == ["relu1", "relu2", "relu3"]
    assert stored.first_conv_weight().shape == (32, 1, 3, 3)


@pytest.mark.parametrize("float16", [False, True])
@pytest.mark.parametrize(
    ("name", "arch", "stored"),
    [
        (
            "mnist_cnn",
            {"batch_norm": True, "dropout": 0.5},
            ["bn1", "conv2", "bn2", "conv3", "bn3", "fc1", "fc2"],
        ),
        ("cifar_cnn", {}, ["conv2", "conv3", "conv4", "conv5", "conv6", "dense1", "fc2"]),
        ("edge_filters", {}, ["conv2", "fc1", "fc2"]),
    ],
)
def test_derived_layers_read_what_storing_them_gives(
    tmp_path: Path, prepared: PreparedData, float16: bool, name: str, arch: dict[str, object], stored: list[str]
) -> None:
    """Recipes are exact: a derived layer reads the same values as the same layer written to disk.

    Derived are the layers without arithmetic (ReLU, max-pool, flatten, eval-mode dropout) and the
    convolution on the input, recomputed in float32 in batches of the extraction's size; batch
    norm, not exact in float16, is stored, and the ReLU after it is derived from the stored output.
    """
    model = random_model(prepared, name, **arch).eval()
    ids = prepared.splits["test"]
    groups = {"eval": ImageGroup(prepared.images[ids], ids, prepared.labels[ids])}
    layers = resolve_layers(model, [])
    manifest = extract_activations(model, groups, layers, tmp_path / "derived", batch_size=16, float16=float16)
    extract_activations(model, groups, layers, tmp_path / "all", batch_size=16, float16=float16, derive=False)
    assert [layer for layer in layers if layer not in manifest["derived"]] == [*stored, SOFTMAX]
    with_recipes, everything = ActivationSet(tmp_path / "derived"), ActivationSet(tmp_path / "all")
    for layer in layers:
        a, b = with_recipes.array("eval", layer), everything.array("eval", layer)
        assert a.dtype == b.dtype and a.shape == b.shape, layer
        np.testing.assert_array_equal(a, b, err_msg=layer)  # equal values; a zero may differ in sign


def test_derived_layer_needs_its_source_captured(tmp_path: Path, prepared: PreparedData) -> None:
    """Without conv1, relu1 cannot be derived: it is stored; pool1 is derived from it, and the
    forward pass stops after relu1, the last stored layer."""
    model = random_model(prepared).eval()
    ids = prepared.splits["test"][:9]
    group = ImageGroup(prepared.images[ids], ids, prepared.labels[ids])
    manifest = extract_activations(model, {"eval": group}, ["relu1", "pool1"], tmp_path, batch_size=4, float16=True)
    assert manifest["derived"] == {
        "pool1": {"source": "relu1", "op": "max_pool2d", "kernel_size": 2, "stride": 2, "padding": 0}
        | {"dilation": 1, "ceil_mode": False}
    }
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["input.npy", "relu1.npy"]
    x = model.standardize(prepared.images[ids].float() / 255)
    with torch.no_grad():
        pool1 = model.truncated("pool1")(x)
    np.testing.assert_allclose(ActivationSet(tmp_path).array("eval", "pool1"), pool1.numpy(), rtol=1e-3, atol=2e-3)
    with pytest.raises(KeyError, match="layer 'conv1' not captured; captured: relu1, pool1"):
        ActivationSet(tmp_path).array("eval", "conv1")


def test_activations_of_an_older_format_are_refused(tmp_path: Path, prepared: PreparedData) -> None:
    model = random_model(prepared).eval()
    ids = prepared.splits["test"][:3]
    extract_activations(
        model, {"eval": ImageGroup(prepared.images[ids], ids, prepared.labels[ids])}, ["conv1"], tmp_path, 4, True
    )
    manifest = tmp_path / "manifest.json"
    manifest.write_text(manifest.read_text().replace(FORMAT, "cnnscope-activations/1"))
    with pytest.raises(ValueError, match=f"format 'cnnscope-activations/1', expected '{FORMAT}'"):
        ActivationSet(tmp_path)


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
