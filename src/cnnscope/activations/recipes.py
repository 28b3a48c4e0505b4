"""Layers stored as recipes: outputs recomputed on read from a captured layer or the input.

Two kinds of layer cost more to write than to recompute:

* Layers that only select, compare or move values of the layer before them — a ReLU, a
  max-pooling, a flatten, an eval-mode dropout or identity — when that layer is captured too.
  They are exact in float16 as well: rounding is monotone (``a ≤ b ⇒ fp16(a) ≤ fp16(b)``) and keeps
  the sign, so ``relu(fp16(x)) == fp16(relu(x))`` and the maximum of rounded values is the rounded
  maximum. The one difference is the sign of a zero (``-0.0`` where float32's ReLU gave ``+0.0``):
  equal as numbers, and every analysis compares values.
* A convolution applied to the network's input. It expands a few uint8 channels into many float
  maps (``mnist_cnn``'s ``conv1``: 784 bytes of image → 43 kB of float16 per image), with only
  ``in_channels × k²`` multiply-adds per output value. The input images are kept
  (``<group>/input.npy``, uint8) with the convolution's weights, and the reader runs the same
  standardisation and convolution, in float32, in batches of the size the extraction used, so on
  the machine that extracted it reads the very values the forward pass computed (elsewhere, e.g.
  after a GPU extraction, they agree to float32 rounding — far inside float16's).

For ``mnist_cnn`` that leaves 5 of 13 outputs to write (conv2, conv3, fc1, fc2, softmax); the bytes
saved are measured in benchmarks/README.md. Everything else with arithmetic (deeper convolutions,
dense layers, batch norm — not exact in float16 — and the softmax) is stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnscope.models import LayeredCNN

#: A recipe: ``{"source": <layer or INPUT>, "op": <name>, **arguments}`` — JSON, kept in the manifest.
Recipe = dict[str, Any]
#: The source name of the network's standardised input (stored as the uint8 images).
INPUT = "input"
_POOL_ARGS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
_CONV_ARGS = ("stride", "padding", "dilation", "groups")


def _op(module: nn.Module, source: str) -> Recipe | None:
    """The recipe operation that reproduces ``module`` from ``source``, or None when it must be stored."""
    if isinstance(module, nn.ReLU):
        return {"op": "relu"}
    if isinstance(module, nn.MaxPool2d) and not module.return_indices:
        return {"op": "max_pool2d", **{k: getattr(module, k) for k in _POOL_ARGS}}
    if isinstance(module, nn.Flatten):
        return {"op": "flatten", "start_dim": module.start_dim, "end_dim": module.end_dim}
    if isinstance(module, nn.Identity) or (isinstance(module, nn.Dropout) and not module.training):
        return {"op": "identity"}
    if source == INPUT and type(module) is nn.Conv2d and module.padding_mode == "zeros":
        return {"op": "conv2d", **{k: getattr(module, k) for k in _CONV_ARGS}}
    return None


def derivable(model: LayeredCNN, layers: Sequence[str]) -> dict[str, Recipe]:
    """Recipes for the layers of ``layers`` that are recomputed on read instead of stored.

    A layer qualifies when its recipe's source — the layer right before it, or the input for the
    first layer — is captured (stored or itself derived) or is the input, so every chain of recipes
    starts at a stored layer or at the input images. The model must be in eval mode (dropout is
    then the identity).
    """
    wanted = set(layers)
    recipes: dict[str, Recipe] = {}
    previous = INPUT
    for name, module in model.named_children():
        op = _op(module, previous)
        if name in wanted and (previous in wanted or previous == INPUT) and op is not None:
            recipes[name] = {"source": previous, **op}
        previous = name
    return recipes


def weights(model: LayeredCNN, recipes: Mapping[str, Recipe]) -> dict[str, np.ndarray]:
    """The float32 parameters the recipes need, keyed ``<layer>.weight`` / ``<layer>.bias`` (for ``np.savez``)."""
    modules = dict(model.named_children())
    out = {}
    for name, recipe in recipes.items():
        conv = modules[name]
        if recipe["op"] == "conv2d" and isinstance(conv, nn.Conv2d):
            for kind, param in (("weight", conv.weight), ("bias", conv.bias)):
                if param is not None:
                    out[f"{name}.{kind}"] = param.detach().to("cpu", torch.float32).numpy()
    return out


def apply(layer: str, recipe: Recipe, x: torch.Tensor, params: Mapping[str, np.ndarray]) -> torch.Tensor:
    """Run the recipe of ``layer`` on a batch ``x`` (rows are samples) of its source."""
    op = recipe["op"]
    if op == "relu":
        return torch.relu(x)
    if op == "max_pool2d":
        # channels-last: PyTorch's CPU max-pool vectorises float16 over channels only in that layout
        # (faster: benchmarks/README.md); the values, and the logical layout readers see, are the same
        return F.max_pool2d(x.contiguous(memory_format=torch.channels_last), **{k: recipe[k] for k in _POOL_ARGS})
    if op == "flatten":
        return x.flatten(recipe["start_dim"], recipe["end_dim"])
    if op == "identity":
        return x
    if op == "conv2d":
        bias = params.get(f"{layer}.bias")
        return F.conv2d(
            x,
            torch.from_numpy(params[f"{layer}.weight"]),
            None if bias is None else torch.from_numpy(bias),
            **{k: recipe[k] for k in _CONV_ARGS},
        )
    raise ValueError(f"unknown recipe operation {op!r} (written by a newer cnnscope?)")
