"""Networks with stable layer names, a registry to build them by name, and checkpoint loading."""

from cnnscope.models.networks import Arch, LayeredCNN
from cnnscope.models.registry import (
    MODELS,
    CheckpointError,
    best_device,
    build_model,
    load_for_config,
    load_model,
    read_checkpoint,
    save_checkpoint,
)

__all__ = [
    "MODELS",
    "Arch",
    "CheckpointError",
    "LayeredCNN",
    "best_device",
    "build_model",
    "load_for_config",
    "load_model",
    "read_checkpoint",
    "save_checkpoint",
]
