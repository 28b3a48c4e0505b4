"""Colour spaces for OIPs: the data's decorrelated colours, and the map to valid images.

Neighbouring colour channels of natural images are strongly correlated (on CIFAR-10 nearly as
much as neighbouring pixels), so a gradient step on raw RGB mostly changes brightness and
saturation in directions the data never takes. Feature visualisation therefore optimises in a
*decorrelated* colour space: a vector ``u`` with identity covariance is mapped to colours by the
square root ``Σ^{1/2}`` of the pixel colour covariance (Olah et al., Distill 2017, "Feature
Visualization"; Lucid/Lucent's ``to_valid_rgb``). Lucid uses ImageNet's matrix; here ``Σ`` is
computed from the training split of the prepared data, which is what the network saw.

A sigmoid then keeps every pixel inside the valid range [0, 1] — which bounds the objective, so an
ascent can converge instead of growing the image's contrast without end — before the network's own
input standardisation.
"""

from __future__ import annotations

import torch

from cnnscope.oip.errors import OIPError


def colour_covariance(images: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(C,)`` and covariance ``(C, C)`` of the pixel colours of uint8 ``images`` ``(N, C, H, W)``,
    on the [0, 1] scale, every pixel of every image one sample.

    Accumulates sums and outer products chunk by chunk in float64, so memory stays flat in ``N``.
    """
    if images.dim() != 4 or images.shape[0] == 0:
        raise OIPError(f"colour statistics need a non-empty (N, C, H, W) image batch, got shape {tuple(images.shape)}")
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    outer = torch.zeros(channels, channels, dtype=torch.float64)
    count = 0
    for start in range(0, images.shape[0], chunk):
        pixels = images[start : start + chunk].to(torch.float64).div_(255.0).transpose(0, 1).reshape(channels, -1)
        total += pixels.sum(dim=1)
        outer += pixels @ pixels.T
        count += pixels.shape[1]
    mean = total / count
    cov = outer / count - torch.outer(mean, mean)
    return mean.float(), (cov * count / max(count - 1, 1)).float()


def sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root ``S`` (``S @ S == matrix``) of a covariance matrix.

    Symmetric rather than Cholesky: it mixes channels the least, so each decorrelated channel
    stays closest to one colour channel (ZCA, as in Lucid's matrix).
    """
    values, vectors = torch.linalg.eigh(matrix.double())
    root = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    return root.to(matrix.dtype)


def colour_sqrt(images: torch.Tensor) -> tuple[tuple[float, ...], ...]:
    """The decorrelated colour space of ``images`` (uint8, N×C×H×W): the square root of their pixel
    colour covariance, as the plain rows :class:`~cnnscope.oip.OIPSettings` stores."""
    return tuple(tuple(row) for row in sqrt_psd(colour_covariance(images)[1]).tolist())


class ValidImage:
    """``u`` (decorrelated colours, ``(B, C, H, W)``) → a valid image in the network's input space.

    ``pixels = sigmoid(logit(mean) + D · S · u)`` with ``S`` the colour square root and ``D`` =
    ``1 / (mean · (1 - mean))`` per channel, the inverse sigmoid slope at the mean: to first order
    ``pixels ≈ mean + S · u``, so ``u`` with identity covariance gives pixels with the data's mean
    and colour covariance, while every pixel stays in (0, 1). The result is standardised with the
    network's ``mean``/``std`` (what it was trained on).
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, colour_sqrt: torch.Tensor | None = None) -> None:
        mean, std = mean.flatten().float(), std.flatten().float()
        channels = mean.numel()
        root = torch.diag(std) if colour_sqrt is None else colour_sqrt.float().to(mean.device)
        if root.shape != (channels, channels):
            raise OIPError(
                f"colour matrix of shape {tuple(root.shape)} does not fit {channels}-channel images; "
                f"it must be {channels}×{channels} (compute it from the same prepared data as the model)"
            )
        if not (mean.min() > 0 and mean.max() < 1):
            raise OIPError(f"channel means {mean.tolist()} must lie strictly inside (0, 1) for a sigmoid image")
        slope = mean * (1 - mean)
        self.mix = root / slope.view(-1, 1)  # (C, C): rows are output channels
        self.offset = torch.logit(mean).view(1, -1, 1, 1)
        self.mean = mean.view(1, -1, 1, 1)
        self.std = std.view(1, -1, 1, 1)

    def to(self, device: torch.device) -> ValidImage:
        """Move the colour tensors to ``device`` (in place); returns ``self``."""
        for name in ("mix", "offset", "mean", "std"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        mixed = torch.einsum("oc,bchw->bohw", self.mix, u)
        return (torch.sigmoid(self.offset + mixed) - self.mean) / self.std
