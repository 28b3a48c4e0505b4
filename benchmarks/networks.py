"""The network most benchmarks time: the default ``mnist_cnn`` (``conf/model/mnist_cnn.yaml``) for
MNIST-shaped input (1 × 28 × 28, 10 classes), its weights freshly drawn. Imported by the benchmark
scripts, which run with this folder first on ``sys.path``."""

from __future__ import annotations

import torch

from cnnscope.compose import model_knobs
from cnnscope.models import LayeredCNN, build_model


def mnist_cnn(seed: int = 0, mean: float = 0.1307, std: float = 0.3081) -> LayeredCNN:
    """The default ``mnist_cnn``, weights from ``torch.manual_seed(seed)``, inputs standardised
    with ``mean`` and ``std``."""
    torch.manual_seed(seed)
    return build_model(
        "mnist_cnn", in_channels=1, num_classes=10, image_size=28, mean=[mean], std=[std], **model_knobs("mnist_cnn")
    )
