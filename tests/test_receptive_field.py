"""Receptive fields from layer geometry, checked against the gradient support of single nodes."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

from cnnscope.models import build_model
from cnnscope.models.receptive_field import GeometryError, model_receptive_fields, receptive_fields
from conftest import knobs

ARCHS = {
    "mnist_cnn": dict(in_channels=1, image_size=28),
    "cifar_cnn": dict(in_channels=3, image_size=32, dropout=0.0),
    "edge_filters": dict(in_channels=1, image_size=28),
}


def _model(name: str) -> nn.Sequential:
    torch.manual_seed(0)
    arch = knobs(name, **ARCHS[name])
    channels = int(arch["in_channels"])
    return build_model(name, num_classes=10, mean=[0.5] * channels, std=[0.25] * channels, **arch).eval()


def _linearised(model: nn.Sequential) -> nn.Sequential:
    """Same geometry, but every input pixel of a window reaches the node: positive weights, no
    ReLU cut-offs, average- instead of max-pooling (whose gradient reaches one arg-max only)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for name, module in model.named_children():
        if isinstance(module, nn.MaxPool2d):
            module = nn.AvgPool2d(module.kernel_size, module.stride, module.padding)
        elif isinstance(module, nn.ReLU):
            module = nn.Identity()
        else:
            module = copy.deepcopy(module)
            if isinstance(module, nn.Conv2d):
                with torch.no_grad():
                    module.weight.copy_(module.weight.abs() + 0.01)
        layers[name] = module
    return nn.Sequential(layers)


def _support(net: nn.Sequential, layer: str, channels: int, size: int, y: int, x: int) -> torch.Tensor:
    """Pixels (H, W) with a non-zero gradient of node (map 0, y, x) of ``layer``."""
    names = [n for n, _ in net.named_children()]
    trunk = nn.Sequential(OrderedDict(list(net.named_children())[: names.index(layer) + 1]))
    image = torch.rand(1, channels, size, size, requires_grad=True)
    trunk(image)[0, 0, y, x].backward()
    assert image.grad is not None
    return image.grad[0].abs().sum(dim=0) > 0


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_window_equals_gradient_support_of_every_spatial_layer(name: str) -> None:
    model = _model(name)
    geometry = model_receptive_fields(model)
    linear = _linearised(model)
    channels, size = ARCHS[name]["in_channels"], ARCHS[name]["image_size"]
    with torch.no_grad():
        shapes = {n: t.shape for n, t in _outputs(linear, channels, size).items()}
    spatial = [n for n, g in geometry.items() if g.spatial]
    assert spatial and all(len(shapes[n]) == 4 for n in spatial)
    for layer in spatial:
        height, width = shapes[layer][-2:]
        for y, x in {(0, 0), (height // 2, width // 3), (height - 1, width - 1)}:
            top, left, bottom, right = geometry[layer].clipped_window(y, x)
            expected = torch.zeros(size, size, dtype=torch.bool)
            expected[top:bottom, left:right] = True
            support = _support(linear, layer, channels, size, y, x)
            assert torch.equal(support, expected), (name, layer, y, x, geometry[layer])


def _outputs(net: nn.Sequential, channels: int, size: int) -> dict[str, torch.Tensor]:
    out, h = {}, torch.zeros(1, channels, size, size)
    for n, module in net.named_children():
        h = module(h)
        out[n] = h
    return out


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_gradient_of_the_real_network_stays_inside_the_window(name: str) -> None:
    """Through ReLUs and max-pools the support shrinks, but never leaves the window."""
    model = _model(name)
    geometry = model_receptive_fields(model)
    channels, size = ARCHS[name]["in_channels"], ARCHS[name]["image_size"]
    layer = [n for n, g in geometry.items() if g.spatial][-1]
    torch.manual_seed(1)
    for y, x in [(0, 0), (1, 2)]:
        top, left, bottom, right = geometry[layer].clipped_window(y, x)
        support = _support(model, layer, channels, size, y, x)
        outside = support.clone()
        outside[top:bottom, left:right] = False
        assert not outside.any()


def test_known_sizes_of_mnist_cnn() -> None:
    """3×3 valid convolutions and 2×2 pools: 3, 4, 8, 10, 18 pixels; strides 1, 2, 2, 4, 4."""
    g = model_receptive_fields(_model("mnist_cnn"))
    assert [(g[n].size, g[n].jump) for n in ("conv1", "pool1", "conv2", "pool2", "relu3")] == [
        (3, 1),
        (4, 2),
        (8, 2),
        (10, 4),
        (18, 4),
    ]
    assert g["relu3"].window(0, 0) == (0, 0, 18, 18)
    assert g["relu3"].window(2, 1) == (8, 4, 26, 22)
    assert not g["fc1"].spatial and g["fc1"].window(3, 3) == (0, 0, 28, 28)


def test_padding_moves_the_window_outside_and_clipping_cuts_it() -> None:
    g = model_receptive_fields(_model("edge_filters"))
    assert g["conv1"].window(0, 0) == (-1, -1, 2, 2)
    assert g["conv1"].clipped_window(0, 0) == (0, 0, 2, 2)


def test_geometry_relative_to_an_earlier_layer() -> None:
    model = _model("mnist_cnn")
    g = receptive_fields(model.named_children(), 13, after="pool1")
    assert "pool1" not in g and g["conv2"].size == 3 and g["pool2"].size == 4 and g["relu3"].size == 8
    with pytest.raises(GeometryError, match="'nope'"):
        receptive_fields(model.named_children(), 13, after="nope")


def test_unknown_layer_type_is_refused() -> None:
    with pytest.raises(GeometryError, match="Upsample"):
        receptive_fields([("up", nn.Upsample(scale_factor=2))], 8)
