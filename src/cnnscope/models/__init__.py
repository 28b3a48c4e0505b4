"""Networks with stable layer names, a registry to build them by name, and checkpoint loading."""

from cnnscope.models.networks import LayeredCNN
from cnnscope.models.registry import MODELS, best_device, build_model, load_model, save_checkpoint

__all__ = ["MODELS", "LayeredCNN", "best_device", "build_model", "load_model", "save_checkpoint"]
