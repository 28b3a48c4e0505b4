"""The tutorial seeds' hand-made filters, applied step by step to one image.

For each kernel of :data:`cnnscope.models.networks.EDGE_KERNELS`: the 'same'-padded convolution of
the grey image (channel mean, in [0, 1]), its ReLU, and 2×2 max-pooling of that — the three stages
the ``edge_filters`` network's first block computes, shown per kernel.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cnnscope.models.networks import EDGE_KERNELS


def edge_filter_stages(image_uint8: torch.Tensor) -> dict[str, dict[str, np.ndarray]]:
    """``{kernel: {"kernel", "conv", "relu", "pool"}}`` for a ``(C, H, W)`` uint8 image."""
    grey = image_uint8.float().div(255).mean(dim=0, keepdim=True).unsqueeze(0)  # (1, 1, H, W)
    out = {}
    for name, kernel in EDGE_KERNELS.items():
        weight = torch.tensor(kernel, dtype=torch.float32).view(1, 1, 3, 3)
        conv = F.conv2d(grey, weight, padding=1)
        relu = F.relu(conv)
        pool = F.max_pool2d(relu, 2)
        out[name] = {
            "kernel": weight[0, 0].numpy(),
            "conv": conv[0, 0].numpy(),
            "relu": relu[0, 0].numpy(),
            "pool": pool[0, 0].numpy(),
        }
    return out


def first_probe_stages(probe_images: np.ndarray | None) -> dict[str, dict[str, np.ndarray]] | None:
    """:func:`edge_filter_stages` of the first probe image (``(P, C, H, W)`` uint8), None without probes."""
    if probe_images is None or not len(probe_images):
        return None
    return edge_filter_stages(torch.from_numpy(probe_images[0]))
