"""Networks with stable layer names, a registry to build them by name, and checkpoint loading."""

from cnnscope.models.networks import LayeredCNN
from cnnscope.models.registry import MODELS, build_model, load_model, save_checkpoint

__all__ = ["MODELS", "LayeredCNN", "build_model", "load_model", "save_checkpoint"]
