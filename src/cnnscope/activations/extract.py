"""Run a network over image groups and stream every requested layer's output to disk."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnscope.activations.capture import capture, first_conv_weight, float32_layers, layer_kinds, output_shapes
from cnnscope.activations.recipes import INPUT, derivable, weights
from cnnscope.activations.store import FIRST_CONV_FILE, FORMAT, MANIFEST, RECIPE_WEIGHTS, GroupWriter
from cnnscope.errors import CnnscopeError
from cnnscope.io import write_json
from cnnscope.layout import metrics_dir
from cnnscope.models import LayeredCNN
from cnnscope.progress import track


@dataclass
class ImageGroup:
    """Images to run (uint8 ``(N, C, H, W)``) with their ids in the prepared data, labels, names."""

    images: torch.Tensor
    sample_ids: torch.Tensor
    labels: torch.Tensor
    names: list[str] = field(default_factory=list)


class ActivationRangeError(CnnscopeError, ValueError):
    """A stored layer holds values that are not finite: every measure read from it would be wrong."""


def _check_finite(outputs: dict[str, torch.Tensor], float16: bool) -> None:
    """Refuse a batch with a non-finite stored value, naming the layer: float16 overflows to ±inf
    beyond 65504 (a diverged network's activations do), and a NaN means the network itself is broken."""
    for name, t in outputs.items():
        if not bool(torch.isfinite(t).all()):
            peak = float(t.float().abs().nan_to_num(nan=0.0, posinf=0.0).max())
            fix = (
                " — beyond float16's range (65504): store float32 with extract.float16=false"
                if float16 and t.dtype == torch.float16
                else ""
            )
            raise ActivationRangeError(
                f"layer {name} has non-finite activations (largest finite |value| {peak:.3g}){fix}; a network "
                f"whose training diverged (see its test accuracy in {metrics_dir('train')}/) gives this: lower "
                "its learning rate"
            )


def extract_activations(
    model: LayeredCNN,
    groups: dict[str, ImageGroup],
    layers: Sequence[str],
    out_dir: str | Path,
    batch_size: int,
    float16: bool,
    classes: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
    derive: bool = True,
) -> dict[str, Any]:
    """Capture ``layers`` for every image of every group and write them under ``out_dir``.

    Inputs are ``model.standardize(images / 255)``, exactly as in training. Batches are processed in
    order and appended to one ``.npy`` per group and stored layer, so memory does not grow with the
    number of images. The uint8 images are kept too (``<group>/input.npy``). Layers that cost more
    to write than to recompute are not written but recorded as recipes
    (:mod:`~cnnscope.activations.recipes`; ``derive=False`` stores them too, to check that both read
    the same), and the forward pass stops after the last stored layer.
    Returns the manifest it wrote (``extra`` is merged into it, e.g. provenance).
    """
    out = Path(out_dir)
    model.eval()
    dtype = torch.float16 if float16 else torch.float32
    shapes = output_shapes(model, layers)
    recipes = derivable(model, layers) if derive else {}
    stored = [name for name in layers if name not in recipes]
    exact = float32_layers(model)
    dtypes = {name: torch.float32 if name in exact else dtype for name in layers}
    device = model.mean.device
    manifest_groups: dict[str, Any] = {}
    for group_name, group in groups.items():
        n = len(group.images)
        writer = GroupWriter(out / group_name, n, {name: shapes[name] for name in stored}, dtypes)
        np.save(out / group_name / f"{INPUT}.npy", group.images.cpu().numpy())
        try:
            with track(f"extract {group_name}", n) as advance:
                for start in range(0, n, batch_size):
                    batch = group.images[start : start + batch_size].to(device)
                    outputs = capture(model, model.standardize(batch.float() / 255), stored, dtype)
                    _check_finite(outputs, float16)
                    writer.append(outputs)
                    advance(len(batch))
        except BaseException:
            with contextlib.suppress(ValueError):  # its files are short: the error in flight says why
                writer.close()
            raise
        writer.close()
        manifest_groups[group_name] = {
            "n": n,
            "sample_ids": [int(i) for i in group.sample_ids],
            "labels": [int(y) for y in group.labels],
            "names": list(group.names),
        }
    first = first_conv_weight(model)
    if first is not None:
        np.save(out / FIRST_CONV_FILE, first[1].float().numpy())
    arrays: dict[str, Any] = weights(model, recipes)  # (typed Any: numpy's stub reads a key as allow_pickle)
    np.savez(out / RECIPE_WEIGHTS, **arrays)
    manifest = {
        "format": FORMAT,
        "model": dict(model.arch),
        "layers": list(layers),
        "shapes": {name: list(shape) for name, shape in shapes.items()},
        "kinds": layer_kinds(model, layers),
        "derived": recipes,
        "input": {"mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist()},
        "batch_size": batch_size,
        "feature_maps": [name for name in model.conv_layers if name in set(layers)],
        "first_conv": first[0] if first is not None else None,
        "dtype": str(dtype).removeprefix("torch."),
        "float32_layers": [name for name in layers if name in exact],
        "classes": list(classes),
        "groups": manifest_groups,
        **(extra or {}),
    }
    write_json(out / MANIFEST, manifest)
    return manifest
