"""Capture named layers of a trained network and store them streamingly (the ``extract`` stage)."""

from cnnscope.activations.capture import (
    SOFTMAX,
    LayerError,
    available_layers,
    capture,
    layer_kinds,
    output_shapes,
    resolve_layers,
)
from cnnscope.activations.extract import ImageGroup, extract_activations
from cnnscope.activations.sampling import EmptySampleError, stratified_sample
from cnnscope.activations.store import ActivationSet, GroupInfo

__all__ = [
    "SOFTMAX",
    "ActivationSet",
    "EmptySampleError",
    "GroupInfo",
    "ImageGroup",
    "LayerError",
    "available_layers",
    "capture",
    "extract_activations",
    "layer_kinds",
    "output_shapes",
    "resolve_layers",
    "stratified_sample",
]
