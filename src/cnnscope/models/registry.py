"""Build a network by name, and load one back from a checkpoint without the training code.

A checkpoint written by the training stage holds ``hyper_parameters['model']`` (the architecture
arguments, plain types) and a ``state_dict`` whose keys start with ``model.``. That is all the
downstream stages (extract, compare, oip) need, so they never import :mod:`cnnscope.training`.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cnnscope.errors import CnnscopeError
from cnnscope.io import atomic_write
from cnnscope.models.networks import Arch, LayeredCNN, cifar_cnn, edge_filters, mlp, mnist_cnn

#: Every builder takes one :class:`~cnnscope.models.networks.Arch`.
MODELS: dict[str, Callable[[Arch], LayeredCNN]] = {
    "mnist_cnn": mnist_cnn,
    "cifar_cnn": cifar_cnn,
    "edge_filters": edge_filters,
    "mlp": mlp,
}


def build_model(name: str, **kwargs: Any) -> LayeredCNN:
    """Build the network registered as ``name`` with architecture arguments ``kwargs``: every field
    of :class:`~cnnscope.models.networks.Arch` (``depth`` may be left out: the architecture's own)."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    model = MODELS[name](Arch(**{"depth": None, **kwargs}))
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


class CheckpointError(CnnscopeError, ValueError):
    """A checkpoint cannot be read, or holds a network other than the configured one."""


def load_model(checkpoint: str | Path, map_location: str | torch.device = "cpu") -> LayeredCNN:
    """Rebuild the network stored in a training checkpoint, in eval mode.

    Loads with ``weights_only=True`` explicitly, whatever torch's default: a checkpoint that
    carries pickled code (a callable, an arbitrary class) is refused, not run. Fails with a message
    naming the file when it is missing, unreadable (truncated, corrupt) or was written for a
    different architecture.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: run the train stage first (cnnscope repro train)")
    ckpt = read_checkpoint(path, map_location)
    try:
        arch = dict(ckpt["hyper_parameters"]["model"])
        name = arch.pop("name")
        # written before ``model.init`` existed, when every network started from torch's own draw (the
        # stored weights replace the draw anyway; this keeps the record true)
        arch.setdefault("init", "torch_default")
        model = build_model(name, **arch)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} is not a cnnscope training checkpoint ({err!r})") from None
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not match architecture {name!r} {arch}: {err}") from None
    return model.eval()


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``, with one message for every way it can fail."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
        if isinstance(err, pickle.UnpicklingError):  # torch's own text goes on to suggest weights_only=False
            reason = "it holds objects other than tensors and plain data"
        else:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path} cannot be read as a weights-only checkpoint ({reason}): it is truncated, corrupt or "
            "carries pickled code, which is refused"
        ) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not a checkpoint dictionary")
    return ckpt


def load_for_config(
    checkpoint: str | Path,
    expected: str,
    rerun: str,
    data_shape: tuple[int, int, int] | None = None,
    map_location: str | torch.device = "cpu",
) -> LayeredCNN:
    """Load a checkpoint and check it against the configuration; every stage that loads one uses this.

    ``expected``: the model name the configuration trains for this variant. ``data_shape``:
    ``(channels, image size, classes)`` of the prepared data, when the stage has it. ``rerun``:
    the command that rebuilds the checkpoint (named in every message). A network of another
    architecture would otherwise give OIPs or activations of the wrong network without a word.
    """
    try:
        model = load_model(checkpoint, map_location)
    except CheckpointError as err:
        raise CheckpointError(f"{err}. Re-run: {rerun}") from None
    arch = dict(model.arch)
    problems = []
    if arch.get("name") != expected:
        problems.append(f"model {arch.get('name')!r}, but the configuration trains {expected!r}")
    if data_shape is not None:
        channels, size, classes = data_shape
        if model.in_channels != channels:
            problems.append(f"{model.in_channels} input channels, data has {channels}")
        if model.image_size != size:
            problems.append(f"image size {model.image_size}, data has {size}")
        if arch.get("num_classes") is not None and arch["num_classes"] != classes:
            problems.append(f"{arch['num_classes']} classes, data has {classes}")
    if problems:
        raise CheckpointError(
            f"checkpoint {checkpoint} does not match this configuration: {'; '.join(problems)} "
            f"(checkpoint architecture: {arch}). Re-run: {rerun}"
        )
    return model
