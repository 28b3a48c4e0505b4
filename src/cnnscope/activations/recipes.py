"""Layers stored as recipes: outputs that are an exact function of the layer before them.

A ReLU, a max-pooling, a flatten and an eval-mode dropout or identity only select, compare or move
values of their input; they do no arithmetic. So when their input is captured too, they need not be
written at all: readers recompute them from it, and get what storing them would have given:

* float32: the same operation on the same values;
* float16: rounding to float16 is monotone (``a ≤ b ⇒ fp16(a) ≤ fp16(b)``) and keeps the sign, so
  ``relu(fp16(x)) == fp16(relu(x))`` and the maximum of rounded values is the rounded maximum. The
  one difference is the sign of a zero: an input that rounds to ``-0.0`` gives ``-0.0`` where the
  float32 ReLU gave ``+0.0`` — equal as numbers, and every analysis compares values.

For ``mnist_cnn`` that leaves 6 of 13 outputs (conv1–3, fc1, fc2, softmax) and 44 % of the bytes
to write. Anything with arithmetic (convolutions, dense layers, batch norm — not exact in float16 —
and the softmax) is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnscope.models import LayeredCNN

#: A recipe: ``{"source": <layer>, "op": <name>, **arguments}`` — JSON, kept in the manifest.
Recipe = dict[str, Any]


def _op(module: nn.Module) -> Recipe | None:
    """The recipe operation that reproduces ``module`` exactly, or None when it must be stored."""
    if isinstance(module, nn.ReLU):
        return {"op": "relu"}
    if isinstance(module, nn.MaxPool2d) and not module.return_indices:
        return {
            "op": "max_pool2d",
            **{k: getattr(module, k) for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")},
        }
    if isinstance(module, nn.Flatten):
        return {"op": "flatten", "start_dim": module.start_dim, "end_dim": module.end_dim}
    if isinstance(module, nn.Identity) or (isinstance(module, nn.Dropout) and not module.training):
        return {"op": "identity"}
    return None


def derivable(model: LayeredCNN, layers: Sequence[str]) -> dict[str, Recipe]:
    """Recipes for the layers of ``layers`` whose output is an exact function of the previous layer's.

    A layer qualifies only when the layer right before it is captured too (stored or itself
    derived), so every chain of recipes starts at a stored layer. The model must be in eval mode
    (dropout is then the identity).
    """
    wanted = set(layers)
    recipes: dict[str, Recipe] = {}
    previous: str | None = None
    for name, module in model.named_children():
        op = _op(module)
        if name in wanted and previous in wanted and op is not None:
            recipes[name] = {"source": previous, **op}
        previous = name
    return recipes


def apply(recipe: Recipe, x: torch.Tensor) -> torch.Tensor:
    """Run ``recipe`` on a batch ``x`` (rows are samples) of its source layer."""
    op = recipe["op"]
    if op == "relu":
        return torch.relu(x)
    if op == "max_pool2d":
        args = {k: recipe[k] for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")}
        # channels-last: PyTorch's CPU max-pool vectorises float16 over channels only in that layout
        # (2.5× faster here); the values, and the logical layout readers see, are the same
        return F.max_pool2d(x.contiguous(memory_format=torch.channels_last), **args)
    if op == "flatten":
        return x.flatten(recipe["start_dim"], recipe["end_dim"])
    if op == "identity":
        return x
    raise ValueError(f"unknown recipe operation {op!r} (written by a newer cnnscope?)")
