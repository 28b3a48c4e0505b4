"""Capture the outputs of named layers of a :class:`~cnnscope.models.LayeredCNN` in one pass.

A ``LayeredCNN`` is a flat ``nn.Sequential``, so iterating its children *is* its forward pass:
each named child's output is the tensor a forward hook (or torchvision's
``create_feature_extractor``) would return, without hook dispatch or graph tracing, and the loop
stops after the last requested layer. (It iterates the children rather than slicing with
:meth:`LayeredCNN.truncated`, which would build a new module per batch.) ``softmax`` is a
pseudo-layer: the class probabilities computed from the final logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

import torch
from torch import nn

from cnnscope.errors import CnnscopeError
from cnnscope.models import LayeredCNN

#: Name of the pseudo-layer holding ``softmax(logits)``.
SOFTMAX = "softmax"


class LayerError(CnnscopeError, KeyError):
    """A requested layer does not exist; the message lists the layers that do."""

    def __str__(self) -> str:
        return str(self.args[0])


def available_layers(model: LayeredCNN) -> list[str]:
    """Every capturable layer in forward order: the model's named layers, then ``softmax``."""
    return [*model.layer_names, SOFTMAX]


def resolve_layers(model: LayeredCNN, requested: Sequence[str]) -> list[str]:
    """The layers to capture, in forward order; an empty request means all of them.

    Raises :class:`LayerError` naming the unknown layers and listing the available ones.
    """
    available = available_layers(model)
    if not requested:
        return available
    unknown = [name for name in requested if name not in available]
    if unknown:
        raise LayerError(
            f"unknown layer(s) {unknown} for model {model.arch.get('name', type(model).__name__)!r}; "
            f"layers are: {', '.join(available)}"
        )
    wanted = set(requested)
    return [name for name in available if name in wanted]


def layer_kinds(model: LayeredCNN, layers: Sequence[str]) -> dict[str, str]:
    """The module class of each layer (``Conv2d``, ``ReLU``, …; ``Softmax`` for the pseudo-layer).

    Analyses use it to skip layers that only repeat their input (``Flatten``, eval-mode ``Dropout``).
    """
    modules = dict(model.named_children())
    return {name: "Softmax" if name == SOFTMAX else type(modules[name]).__name__ for name in layers}


@torch.no_grad()
def capture(
    model: LayeredCNN, inputs: torch.Tensor, layers: Sequence[str], dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """Outputs of ``layers`` for standardised ``inputs``; the forward pass stops at the last one.

    ``layers`` must come from :func:`resolve_layers`. A module with ``inplace=True`` gets a copy of
    its input when that input is a captured output, so no captured tensor is overwritten later.
    With ``dtype`` (e.g. float16 for storage) each output is converted as soon as it is computed:
    it is still in cache then, and its float32 original is freed for the next layer to reuse
    (converting on the writer thread after the pass was slower: benchmarks/README.md).
    """
    wanted = set(layers)
    if not wanted:
        return {}
    names = model.layer_names
    if not wanted <= set(names) | {SOFTMAX}:
        raise LayerError(f"unknown layer(s) {sorted(wanted - set(names))}; layers are: {', '.join(names)}")
    stop = len(names) if SOFTMAX in wanted else max(names.index(n) for n in wanted) + 1
    out: dict[str, torch.Tensor] = {}
    h = inputs
    previous_captured = False
    for name, module in islice(model.named_children(), stop):
        if previous_captured and getattr(module, "inplace", False):
            h = h.clone()
        h = module(h)
        previous_captured = name in wanted
        if previous_captured:
            out[name] = h if dtype is None else h.to(dtype)
    if SOFTMAX in wanted:
        out[SOFTMAX] = torch.softmax(h, dim=1) if dtype is None else torch.softmax(h, dim=1).to(dtype)
    return out


def output_shapes(model: LayeredCNN, layers: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of each layer, from one dummy forward pass."""
    was_training = model.training
    model.eval()
    dummy = torch.zeros(1, model.in_channels, model.image_size, model.image_size, device=model.mean.device)
    shapes = {name: tuple(t.shape[1:]) for name, t in capture(model, dummy, layers).items()}
    model.train(was_training)
    return shapes


def first_conv_weight(model: LayeredCNN) -> tuple[str, torch.Tensor] | None:
    """Name and weights ``(out, in, k, k)`` of the first convolution: the learned input kernels."""
    for name, module in model.named_children():
        if isinstance(module, nn.Conv2d):
            return name, module.weight.detach().cpu().clone()
    return None
