"""The OIP transforms against the library they stand in for."""

from __future__ import annotations

import math

import pytest
import torch

from cnnscope.oip.transforms import gaussian_blur


@pytest.mark.parametrize(("sigma", "shape"), [(0.5, (3, 1, 28, 28)), (1.0, (2, 3, 32, 32)), (2.5, (4, 2, 3, 8, 8))])
def test_gaussian_blur_is_torchvisions(sigma: float, shape: tuple[int, ...]) -> None:
    """The stages blur without importing torchvision (its start-up cost); the result must stay its
    ``gaussian_blur`` — kernel size capped by small images, reflect borders, any leading dims."""
    from torchvision.transforms.v2 import functional as TF

    images = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    size = min(2 * math.ceil(3 * sigma) + 1, 2 * shape[-1] - 1)
    size -= 1 - size % 2
    expected = TF.gaussian_blur(images, kernel_size=[size, size], sigma=[sigma, sigma])
    torch.testing.assert_close(gaussian_blur(sigma)(images), expected, rtol=0, atol=1e-6)
