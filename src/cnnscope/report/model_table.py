"""The model table of a report: every named layer with its output shape, parameters and receptive field.

A reader needs the geometry before any per-layer number means something: how much of the image a
node of ``relu3`` sees, and how far apart two of its nodes are, decide what its maps *can* detect.
Shapes come from one forward pass of a zero image through the trained network (the checkpoint, not
the config, so the table is the network the numbers came from); receptive fields from
:mod:`cnnscope.models.receptive_field`.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from cnnscope.models import LayeredCNN
from cnnscope.models.receptive_field import model_receptive_fields


def layer_kind(module: nn.Module) -> str:
    """A short name for what a layer does (``conv 3×3``, ``relu``, ``max-pool 2``, ``dense``…)."""
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size
        return f"conv {k[0]}×{k[1]}" + (" (frozen)" if not module.weight.requires_grad else "")
    if isinstance(module, nn.MaxPool2d):
        return f"max-pool {module.kernel_size}"
    if isinstance(module, nn.Linear):
        return "dense"
    return type(module).__name__.lower()


def model_table(model: LayeredCNN) -> pd.DataFrame:
    """One row per named layer: kind, output shape (C×H×W or units), parameters, receptive field
    side and stride in input pixels (``whole image`` once a layer sees all of it)."""
    fields = model_receptive_fields(model) if model.conv_layers else {}
    x = torch.zeros(1, model.in_channels, model.image_size, model.image_size)
    rows = []
    with torch.no_grad():
        for name, module in model.named_children():
            x = module(x)
            geometry = fields.get(name)
            if geometry is None or not geometry.spatial:
                field, stride = "whole image", "—"
            else:
                field, stride = f"{geometry.size}×{geometry.size}", str(geometry.jump)
            rows.append(
                {
                    "layer": name,
                    "kind": layer_kind(module),
                    "output": "×".join(str(d) for d in x.shape[1:]),
                    "parameters": sum(p.numel() for p in module.parameters()),
                    "receptive field": field,
                    "stride": stride,
                }
            )
    return pd.DataFrame(rows)
