"""Data: sources (IDX, CIFAR batches, ImageFolder, embedded) → prepared uint8 tensors and splits."""

from cnnscope.data.prepared import PreparedData, subset_key
from cnnscope.data.sources import DataError

__all__ = ["DataError", "PreparedData", "subset_key"]
