"""The networks of the seed studies, as flat sequences of named layers.

Every network is a :class:`LayeredCNN`: an ``nn.Sequential`` whose children carry the names that
later stages address (``conv1``, ``relu1``, ``pool1``, …, ``fc2``). A flat sequence keeps those
names identical in ``named_children()``, in torchvision's ``create_feature_extractor`` and in
checkpoints, and lets a consumer stop the forward pass after any layer by slicing.

Convolutions and their ReLUs are separate layers (``conv3`` is pre-activation, ``relu3`` the map a
Keras ``Conv2D(activation='relu')`` would output), and no ReLU is in-place, so hooked outputs are
never overwritten.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

#: The fixed kernels of the tutorial seeds: a Laplacian-like high-pass, vertical and horizontal
#: edge detectors, and the two Sobel operators.
EDGE_KERNELS: dict[str, list[list[float]]] = {
    "high_pass": [[0, -1, 0], [-1, 4, -1], [0, -1, 0]],
    "vertical_edge": [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]],
    "horizontal_edge": [[-1, -1, -1], [0, 0, 0], [1, 1, 1]],
    "sobel_x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "sobel_y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
}


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` whose forward pass pools a standard-layout (NCHW) batch in channels-last layout
    (same name: manifests and model summaries, which name each layer's type, read as before).

    Why: PyTorch's CPU max-pool forward over NCHW is an order of magnitude slower than over
    channels-last, while its backward is faster over NCHW (a training step of the default network
    spent more time in its two poolings than in its three convolutions; benchmarks/README.md,
    "Max-pool layout and OIP passes"). So the forward pass pools in channels-last and hands back
    NCHW, and the backward pass is the NCHW kernel ``nn.MaxPool2d`` itself uses, given the same argmax
    indices. Values, indices (ties included) and gradients are the same either way: a maximum is
    exact and each window keeps its first maximum in both forward kernels (tested, and a whole
    training run gives the same weights bit for bit). Every other layer sees
    the layout it saw before. A batch already in channels-last (the OIP ascent's), or on a GPU, is
    pooled as it is.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.return_indices:
            return super().forward(x)
        return max_pool(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)


def max_pool(x: torch.Tensor, *args: Any) -> torch.Tensor:
    """:class:`MaxPool2d`'s pooling of ``x`` with ``args`` (kernel, stride, padding, dilation, ceil
    mode). One call for ``torch.fx`` (wrapped below), so that graph tracing, torchvision's
    ``create_feature_extractor`` among it, records it as one operation and does not try to trace
    its branches on the batch's layout."""
    if x.device.type != "cpu" or x.dim() != 4 or x.is_contiguous(memory_format=torch.channels_last):
        return torch.ops.aten.max_pool2d(x, *args)  # a GPU's own kernels need no detour
    if torch.is_grad_enabled() and x.requires_grad:
        return _PoolInChannelsLast.apply(x, args)
    return torch.ops.aten.max_pool2d(x.contiguous(memory_format=torch.channels_last), *args).contiguous()


torch.fx.wrap("max_pool")


class _PoolInChannelsLast(torch.autograd.Function):
    """Max-pool forward in channels-last, backward in NCHW (:class:`MaxPool2d` says why)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, args: tuple[Any, ...]) -> torch.Tensor:
        out, indices = torch.ops.aten.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last), *args)
        ctx.save_for_backward(x, indices.contiguous())
        ctx.args = args
        return out.contiguous()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, indices = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad.contiguous(), x, *ctx.args, indices), None


@dataclass(frozen=True)
class Arch:
    """What every builder takes: the data's shape and standardisation (from the prepared data) and
    the architecture keys of the ``model`` section (``conf/base/model.yaml``, the one home of their
    defaults). A checkpoint stores these as ``hyper_parameters['model']``."""

    in_channels: int
    num_classes: int
    image_size: int
    mean: Sequence[float]
    std: Sequence[float]
    #: Multiplies every layer's number of maps (units for the MLP).
    width: float
    #: Units of the dense head (the MLP: ``hidden · 4`` per hidden layer).
    hidden: int
    batch_norm: bool
    dropout: float
    #: ``None`` (``model.depth: null``): the architecture's own depth, :data:`OWN_DEPTH`.
    depth: int | None
    #: How the weights start, one of :data:`INITS` (``model.init``; :func:`initialise`).
    init: str

    def depth_of(self, name: str) -> int:
        return OWN_DEPTH[name] if self.depth is None else self.depth


#: ``model.init``: the initialisations :func:`initialise` knows (``conf/base/model.yaml`` says why).
INITS = ("kaiming", "torch_default")

#: Each architecture's depth as published (not a setting: ``model.depth: null`` means this).
OWN_DEPTH = {"mnist_cnn": 3, "cifar_cnn": 2, "edge_filters": 1, "mlp": 2}


class LayeredCNN(nn.Sequential):
    """A CNN whose layers are named children, carrying the input statistics it was trained on.

    ``mean``/``std`` are buffers (saved in the checkpoint) because every consumer of a trained
    network — extraction, OIPs — must feed inputs standardised exactly as in training.
    ``forward`` takes *standardised* images; :meth:`standardize` maps [0, 1] images there.
    """

    def __init__(
        self,
        layers: OrderedDict[str, nn.Module],
        in_channels: int,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__(layers)
        #: Architecture arguments (set by :func:`cnnscope.models.build_model`), saved in checkpoints.
        self.arch: dict[str, Any] = {}
        self.in_channels = in_channels
        self.image_size = image_size
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def layer_names(self) -> list[str]:
        """Names of all layers in forward order."""
        return [name for name, _ in self.named_children()]

    @property
    def conv_layers(self) -> list[str]:
        """Post-activation outputs of every spatial (k > 1) convolution: the 'feature maps'.

        The activation is the first ReLU after the convolution (a batch norm may sit between).
        1×1 convolutions (``cifar_cnn``'s per-position dense layer) are not feature maps.
        """
        names, layers = self.layer_names, list(self.children())
        maps = []
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.Conv2d) and layer.kernel_size != (1, 1):
                j = next(k for k in range(i + 1, len(layers)) if isinstance(layers[k], nn.ReLU))
                maps.append(names[j])
        return maps

    def standardize(self, images01: torch.Tensor) -> torch.Tensor:
        """Map images in [0, 1] to the standardised space the network was trained in."""
        return (images01 - self.mean) / self.std

    def truncated(self, last_layer: str) -> nn.Sequential:
        """The network up to and including ``last_layer``: the forward pass stops there."""
        names = self.layer_names
        if last_layer not in names:
            raise KeyError(f"layer {last_layer!r} not in model; layers are: {', '.join(names)}")
        # Not ``self[:i]``: Sequential slicing calls ``self.__class__(...)``, which LayeredCNN's
        # constructor (input statistics) does not accept.
        return nn.Sequential(OrderedDict(list(self.named_children())[: names.index(last_layer) + 1]))


def _conv_block(
    layers: OrderedDict[str, nn.Module],
    index: int,
    in_ch: int,
    out_ch: int,
    padding: int,
    batch_norm: bool,
) -> None:
    layers[f"conv{index}"] = nn.Conv2d(in_ch, out_ch, 3, padding=padding, bias=not batch_norm)
    if batch_norm:
        layers[f"bn{index}"] = nn.BatchNorm2d(out_ch)
    layers[f"relu{index}"] = nn.ReLU(inplace=False)


def _dense_head(
    layers: OrderedDict[str, nn.Module], features: int, hidden: int, dropout: float, num_classes: int
) -> None:
    """flatten → fc1 → ReLU → (dropout) → fc2: the classifier on top of the feature maps."""
    layers["flatten"] = nn.Flatten()
    layers["fc1"] = nn.Linear(features, hidden)
    layers["relu_fc1"] = nn.ReLU(inplace=False)
    if dropout > 0:
        layers["dropout"] = nn.Dropout(dropout)
    layers["fc2"] = nn.Linear(hidden, num_classes)


def _spatial_after(size: int, layers: OrderedDict[str, nn.Module]) -> int:
    """Spatial size after the convolutions and poolings built so far."""
    for layer in layers.values():
        if isinstance(layer, nn.Conv2d):
            size = size + 2 * int(layer.padding[0]) - 2
        elif isinstance(layer, nn.MaxPool2d):
            size //= 2
    return size


def _feeds_relu(layers: list[nn.Module], index: int) -> bool:
    """Whether layer ``index``'s output reaches a ReLU with only batch norms in between."""
    for layer in layers[index + 1 :]:
        if not isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d):
            return isinstance(layer, nn.ReLU)
    return False


def initialise(model: LayeredCNN, init: str) -> LayeredCNN:
    """Draw ``model``'s trainable conv and linear weights as ``init`` says, in place (every builder
    ends here, so every variant of a study starts alike; the draw follows torch's global seed).

    ``kaiming``: normal with variance ``gain² / fan_in`` (He et al., ICCV 2015), gain √2 for a layer
    whose output goes into a ReLU and 1 for one that does not (the logits), biases zero: a ReLU layer
    then keeps its input's second moment, so an untrained network's deep maps still vary with the
    image. ``torch_default``: the weights as PyTorch's constructors drew them (variance
    ``1/(3·fan_in)``: each ReLU layer keeps about a sixth of its input's second moment). Frozen weights
    (``edge_filters``' fixed kernels) are kept either way.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of: {', '.join(INITS)}")
    if init == "torch_default":
        return model
    layers = list(model.children())
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d | nn.Linear) and layer.weight.requires_grad:
            if _feeds_relu(layers, i):
                nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            else:
                nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="linear")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return model


def _network(layers: OrderedDict[str, nn.Module], arch: Arch) -> LayeredCNN:
    """The built ``layers`` as a :class:`LayeredCNN`, initialised as ``arch.init`` says."""
    return initialise(LayeredCNN(layers, arch.in_channels, arch.image_size, arch.mean, arch.std), arch.init)


def mnist_cnn(arch: Arch) -> LayeredCNN:
    """The MNIST network of the seed articles: 3×3 valid convolutions (32, 64, 128 maps), 2×2
    max-pooling after all but the last (28→26→13→11→5→3), a dense head. ``depth`` < 3 keeps the
    first convolutions only."""
    depth = arch.depth_of("mnist_cnn")
    if not 1 <= depth <= 3:
        raise ValueError(f"mnist_cnn has depth 1 to 3 (convolutions), got {depth}")
    channels = [max(1, round(c * arch.width)) for c in (32, 64, 128)][:depth]
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    in_ch = arch.in_channels
    for i, out_ch in enumerate(channels, start=1):
        _conv_block(layers, i, in_ch, out_ch, padding=0, batch_norm=arch.batch_norm)
        if i < depth:
            layers[f"pool{i}"] = MaxPool2d(2)
        in_ch = out_ch
    side = _spatial_after(arch.image_size, layers)
    if side < 1:
        raise ValueError(f"mnist_cnn of depth {depth} needs larger images than {arch.image_size} pixels")
    _dense_head(layers, in_ch * side * side, arch.hidden, arch.dropout, arch.num_classes)
    return _network(layers, arch)


def cifar_cnn(arch: Arch) -> LayeredCNN:
    """The CIFAR-10 network of the frog article: six 3×3 'same' convolutions of 16 maps, 2×2
    pooling after the 2nd and 4th, a 64-unit ReLU layer applied at every position of the last map
    (a 1×1 convolution, which is what Keras' ``Dense`` does on a 4-D tensor), dropout, flatten.
    ``depth`` is the number of convolutions in each of the three stages (2 in the article)."""
    depth = arch.depth_of("cifar_cnn")
    if depth < 1:
        raise ValueError(f"cifar_cnn needs depth >= 1 (convolutions per stage), got {depth}")
    maps = max(1, round(16 * arch.width))
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    in_ch = arch.in_channels
    for i in range(1, 3 * depth + 1):
        _conv_block(layers, i, in_ch, maps, padding=1, batch_norm=arch.batch_norm)
        if i in (depth, 2 * depth):
            layers[f"pool{i // depth}"] = MaxPool2d(2)
        in_ch = maps
    side = _spatial_after(arch.image_size, layers)
    if side < 1:
        raise ValueError(f"cifar_cnn needs images of at least 4 pixels, got {arch.image_size}")
    layers["dense1"] = nn.Conv2d(maps, arch.hidden, kernel_size=1)
    layers["relu_dense1"] = nn.ReLU(inplace=False)
    if arch.dropout > 0:
        layers["dropout"] = nn.Dropout(arch.dropout)
    layers["flatten"] = nn.Flatten()
    layers["fc2"] = nn.Linear(arch.hidden * side * side, arch.num_classes)
    return _network(layers, arch)


def edge_filters(arch: Arch) -> LayeredCNN:
    """Fixed hand-made kernels (:data:`EDGE_KERNELS`) → ReLU → max-pool, then a trainable head.

    The first convolution is frozen (``requires_grad=False``, and it stays a plain buffer-like
    parameter so checkpoints still hold it): the tutorial seeds' filters, made measurable. A colour
    input is filtered on its channel mean, as the tutorials convert to grey first. ``depth`` is
    the number of trainable convolutions after the fixed ones.
    """
    depth = arch.depth_of("edge_filters")
    if depth < 1:
        raise ValueError(f"edge_filters needs depth >= 1 (trainable convolutions), got {depth}")
    kernels = torch.tensor(list(EDGE_KERNELS.values()), dtype=torch.float32)  # (K, 3, 3)
    conv = nn.Conv2d(arch.in_channels, len(kernels), 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(kernels.unsqueeze(1).expand(-1, arch.in_channels, -1, -1) / arch.in_channels)
    conv.weight.requires_grad_(False)
    maps = max(1, round(32 * arch.width))
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["conv1"] = conv
    layers["relu1"] = nn.ReLU(inplace=False)
    layers["pool1"] = MaxPool2d(2)
    in_ch = len(kernels)
    for i in range(2, depth + 2):
        _conv_block(layers, i, in_ch, maps, padding=1, batch_norm=arch.batch_norm)
        in_ch = maps
    layers["pool2"] = MaxPool2d(2)
    side = _spatial_after(arch.image_size, layers)
    _dense_head(layers, maps * side * side, arch.hidden, arch.dropout, arch.num_classes)
    return _network(layers, arch)


def mlp(arch: Arch) -> LayeredCNN:
    """A plain multilayer perceptron on the pixels, no convolution: the reference the MNIST
    article's part VI sets the CNN against (does the convolutional part separate 4s from 9s?).

    ``depth`` hidden layers (``fc1``, ``relu_fc1``, ``fc2``, …) of ``round(hidden · 4 · width)``
    units — wider than the CNN's head, since here they see raw pixels — then the output layer
    ``fc_out``. ``batch_norm`` adds a ``BatchNorm1d`` before each ReLU. It has no feature maps
    (``conv_layers`` is empty), so it is trained and evaluated but not compared map by map.
    """
    depth = arch.depth_of("mlp")
    if depth < 1:
        raise ValueError(f"mlp needs depth >= 1 (arch.hidden layers), got {depth}")
    units = max(1, round(arch.hidden * 4 * arch.width))
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["flatten"] = nn.Flatten()
    features = arch.in_channels * arch.image_size * arch.image_size
    for i in range(1, depth + 1):
        layers[f"fc{i}"] = nn.Linear(features, units, bias=not arch.batch_norm)
        if arch.batch_norm:
            layers[f"bn_fc{i}"] = nn.BatchNorm1d(units)
        layers[f"relu_fc{i}"] = nn.ReLU(inplace=False)
        if arch.dropout > 0:
            layers[f"dropout{i}"] = nn.Dropout(arch.dropout)
        features = units
    layers["fc_out"] = nn.Linear(features, arch.num_classes)
    return _network(layers, arch)
