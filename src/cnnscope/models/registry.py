"""Build a network by name, and load one back from a checkpoint without the training code.

A checkpoint written by the training stage holds ``hyper_parameters['model']`` (the architecture
arguments, plain types) and a ``state_dict`` whose keys start with ``model.``. That is all the
downstream stages (extract, compare, oip) need, so they never import :mod:`cnnscope.training`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cnnscope.io import atomic_write
from cnnscope.models.networks import LayeredCNN, cifar_cnn, edge_filters, mlp, mnist_cnn

MODELS: dict[str, Callable[..., LayeredCNN]] = {
    "mnist_cnn": mnist_cnn,
    "cifar_cnn": cifar_cnn,
    "edge_filters": edge_filters,
    "mlp": mlp,
}


def build_model(name: str, **kwargs: Any) -> LayeredCNN:
    """Build the network registered as ``name`` with architecture arguments ``kwargs``."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    model = MODELS[name](**kwargs)
    model.arch = {"name": name, **kwargs}
    return model


def save_checkpoint(model: LayeredCNN, path: str | Path) -> Path:
    """Write ``model`` in the checkpoint layout :func:`load_model` reads (and Lightning writes).

    Used for the untrained baseline, which never meets a Trainer, and by tests.
    """
    path = Path(path)
    payload = {
        "hyper_parameters": {"model": dict(model.arch)},
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
    }
    with atomic_write(path, binary=True) as fh:
        torch.save(payload, fh)
    return path


def best_device() -> torch.device:
    """The GPU when there is one, else the CPU: where extraction and OIP ascent should run."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(checkpoint: str | Path, map_location: str | torch.device = "cpu") -> LayeredCNN:
    """Rebuild the network stored in a training checkpoint, in eval mode.

    Loads with ``weights_only=True`` (no pickled code runs). Fails with a message naming the file
    when it is missing or was written for a different architecture.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: run the train stage first (dvc repro train)")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    try:
        arch = dict(ckpt["hyper_parameters"]["model"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a cnnscope training checkpoint (no hyper_parameters.model)") from err
    name = arch.pop("name")
    model = build_model(name, **arch)
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path} does not match architecture {name!r} {arch}: {err}") from None
    return model.eval()
