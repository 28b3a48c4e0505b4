"""The model zoo: layer names and shapes later stages rely on, knobs, frozen edge filters, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from cnnscope.models import build_model, load_model, save_checkpoint
from cnnscope.models.networks import EDGE_KERNELS, MaxPool2d
from conftest import knobs


def _build(name: str, channels: int = 1, size: int = 28, **kw: object) -> nn.Module:
    torch.manual_seed(0)
    return build_model(
        name,
        in_channels=channels,
        num_classes=10,
        image_size=size,
        mean=[0.5] * channels,
        std=[0.25] * channels,
        **knobs(name, **kw),
    )


def _shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for name, layer in model.named_children():
        x = layer(x)
        shapes[name] = tuple(x.shape[1:])
    return shapes


def test_mnist_cnn_has_the_seed_articles_maps_and_sizes() -> None:
    model = _build("mnist_cnn")
    shapes = _shapes(model, torch.zeros(2, 1, 28, 28))
    assert shapes["relu1"] == (32, 26, 26) and shapes["pool1"] == (32, 13, 13)
    assert shapes["relu2"] == (64, 11, 11) and shapes["pool2"] == (64, 5, 5)
    assert shapes["relu3"] == (128, 3, 3)
    assert shapes["fc1"] == (64,) and shapes["fc2"] == (10,)
    assert model.conv_layers == ["relu1", "relu2", "relu3"]


def test_cifar_cnn_has_six_same_convolutions_and_a_per_position_dense_layer() -> None:
    model = _build("cifar_cnn", channels=3, size=32, dropout=0.5)
    shapes = _shapes(model.eval(), torch.zeros(2, 3, 32, 32))
    assert [shapes[f"relu{i}"] for i in range(1, 7)] == [(16, 32, 32)] * 2 + [(16, 16, 16)] * 2 + [(16, 8, 8)] * 2
    assert shapes["relu_dense1"] == (64, 8, 8)  # Keras' Dense on a 4-D tensor: a 1×1 convolution
    assert isinstance(model.dropout, nn.Dropout) and model.dropout.p == 0.5
    assert shapes["fc2"] == (10,)
    assert model.conv_layers == [f"relu{i}" for i in range(1, 7)]


def test_width_batch_norm_and_dropout_knobs_change_the_network() -> None:
    model = _build("mnist_cnn", width=0.5, batch_norm=True, dropout=0.3, hidden=16)
    assert [model.conv1.out_channels, model.conv2.out_channels, model.conv3.out_channels] == [16, 32, 64]
    assert isinstance(model.bn1, nn.BatchNorm2d) and model.conv1.bias is None
    assert model.fc1.out_features == 16 and model.dropout.p == 0.3
    assert model.conv_layers == ["relu1", "relu2", "relu3"]  # names survive the knobs
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_edge_filters_are_the_hand_made_kernels_and_frozen() -> None:
    model = _build("edge_filters")
    expected = torch.tensor(list(EDGE_KERNELS.values())).unsqueeze(1)
    assert torch.equal(model.conv1.weight, expected)
    assert torch.equal(model.conv1.weight[0, 0], torch.tensor([[0.0, -1, 0], [-1, 4, -1], [0, -1, 0]]))
    assert not model.conv1.weight.requires_grad
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("conv1"))
    # a vertical edge excites the vertical-edge kernel and not the horizontal one
    image = torch.zeros(1, 1, 28, 28)
    image[..., 14:] = 1.0
    maps = model.truncated("relu1")(image)
    names = list(EDGE_KERNELS)
    assert maps[0, names.index("vertical_edge")].sum() > 0
    assert maps[0, names.index("horizontal_edge"), 1:-1].sum() == 0  # (rows 0/27 see the zero padding)


def test_truncated_stops_at_the_named_layer() -> None:
    model = _build("mnist_cnn")
    assert _shapes(model.truncated("pool2"), torch.zeros(1, 1, 28, 28))["pool2"] == (64, 5, 5)
    with pytest.raises(KeyError, match="conv1, relu1"):
        model.truncated("conv9")


def test_unknown_model_lists_the_valid_names() -> None:
    with pytest.raises(KeyError, match="cifar_cnn, edge_filters, mlp, mnist_cnn"):
        build_model("resnet")


@pytest.mark.parametrize("name", ["mnist_cnn", "cifar_cnn", "edge_filters", "mlp"])
def test_checkpoint_round_trip_gives_the_same_outputs(tmp_path: Path, name: str) -> None:
    channels, size = (3, 32) if name == "cifar_cnn" else (1, 28)
    model = _build(name, channels=channels, size=size).eval()
    loaded = load_model(save_checkpoint(model, tmp_path / "m.ckpt"))
    x = torch.randn(3, channels, size, size)
    assert torch.equal(model(x), loaded(x)) and loaded.arch == model.arch


def test_checkpoint_of_another_architecture_is_rejected(tmp_path: Path) -> None:
    path = save_checkpoint(_build("mnist_cnn"), tmp_path / "m.ckpt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"]["model"]["width"] = 2.0
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="does not match architecture"):
        load_model(path)


@pytest.mark.parametrize(
    ("name", "channels", "size", "depth", "feature_maps"),
    [
        ("mnist_cnn", 1, 28, 2, ["relu1", "relu2"]),
        ("cifar_cnn", 3, 32, 1, ["relu1", "relu2", "relu3"]),
        ("cifar_cnn", 3, 32, 3, [f"relu{i}" for i in range(1, 10)]),
        ("edge_filters", 1, 28, 2, ["relu1", "relu2", "relu3"]),
    ],
)
def test_depth_knob_sets_the_number_of_feature_maps(
    name: str, channels: int, size: int, depth: int, feature_maps: list[str]
) -> None:
    model = _build(name, channels, size, depth=depth)
    assert model.conv_layers == feature_maps
    assert model(torch.zeros(2, channels, size, size)).shape == (2, 10)


def test_impossible_depth_is_rejected() -> None:
    with pytest.raises(ValueError, match="depth 1 to 3"):
        _build("mnist_cnn", depth=4)


def test_mlp_is_a_plain_perceptron_on_the_pixels() -> None:
    model = _build("mlp", depth=2, hidden=16)
    assert model.layer_names == ["flatten", "fc1", "relu_fc1", "fc2", "relu_fc2", "fc_out"]
    assert model.conv_layers == [] and not any(isinstance(m, nn.Conv2d) for m in model.modules())
    assert _shapes(model, torch.zeros(2, 1, 28, 28))["fc1"] == (64,)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def _tied(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """ReLU'd values on a coarse grid: many windows hold their maximum twice (zeros and positives)."""
    torch.manual_seed(seed)
    return torch.relu(torch.randn(*shape)).mul(4).round().div(4)


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "unbatched"])
def test_max_pool_gives_torchs_values_indices_and_layout(layout: str) -> None:
    """The networks' pooling (channels-last inside, for speed) returns what ``nn.MaxPool2d`` returns,
    in the layout it was given, traced or not."""
    x = _tied((6, 8, 10, 12))
    x = {"nchw": x, "channels_last": x.contiguous(memory_format=torch.channels_last), "unbatched": x[0]}[layout]
    ours, theirs = MaxPool2d(2), nn.MaxPool2d(2)
    got, expected = ours(x), theirs(x)
    assert torch.equal(got, expected) and got.stride() == expected.stride()
    assert torch.equal(torch.fx.symbolic_trace(nn.Sequential(ours))(x), expected)


def test_max_pool_gradients_and_a_training_run_are_torchs_bit_for_bit() -> None:
    """Backward through the pooling routes each window's gradient to the same (first) maximum as
    ``nn.MaxPool2d``, so training with either gives the same weights, bit for bit."""
    x = _tied((6, 8, 10, 12))
    ours, theirs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    grad = torch.randn(6, 8, 5, 6)
    MaxPool2d(2)(ours).backward(grad)
    nn.MaxPool2d(2)(theirs).backward(grad)
    assert torch.equal(ours.grad, theirs.grad)

    def train(plain_pooling: bool) -> dict[str, torch.Tensor]:
        model = _build("mnist_cnn")
        if plain_pooling:
            for name, module in model.named_children():
                if isinstance(module, MaxPool2d):
                    setattr(model, name, nn.MaxPool2d(2))
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
        images, labels = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
        for _ in range(5):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(images), labels).backward()
            optimiser.step()
        return model.state_dict()

    ours_weights, plain_weights = train(False), train(True)
    assert all(torch.equal(ours_weights[k], plain_weights[k]) for k in plain_weights)
