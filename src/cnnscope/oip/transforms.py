"""Keeping OIPs free of high-frequency artefacts, and optional jitter.

Plain gradient ascent on the input amplifies pixel-scale patterns that excite a map without being
a structure a human would recognise (and that lead the ascent into side maxima). After each step
the image is therefore smoothed — by a Gaussian blur, or by damping its Fourier spectrum towards
the Nyquist frequency. Jitter (a random shift per step) further discourages patterns tied to exact
pixel positions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torchvision.transforms.v2 import functional as TF

from cnnscope.oip.errors import OIPError

Transform = Callable[[torch.Tensor], torch.Tensor]


def gaussian_blur(sigma: float) -> Transform:
    """Blur with a Gaussian of ``sigma`` pixels (reflecting borders); ``sigma == 0`` is the identity."""
    if sigma < 0:
        raise OIPError(f"blur sigma must be ≥ 0, got {sigma}")
    if sigma == 0:
        return _identity
    kernel = 2 * math.ceil(3 * sigma) + 1

    def blur(images: torch.Tensor) -> torch.Tensor:
        size = min(kernel, 2 * min(images.shape[-2:]) - 1)
        size -= 1 - size % 2  # torchvision wants an odd kernel
        return TF.gaussian_blur(images, kernel_size=[size, size], sigma=[sigma, sigma])

    return blur


def fourier_damping(damping: float) -> Transform:
    """Multiply the spectrum by ``(1 - damping) ** ((f / f_nyquist) ** 2)``: DC untouched, the
    Nyquist frequency damped by ``damping`` per application, smoothly in between."""
    if not 0 <= damping < 1:
        raise OIPError(f"fourier damping must be in [0, 1), got {damping}")
    if damping == 0:
        return _identity
    log_keep = math.log1p(-damping)

    def damp(images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        fy = torch.fft.fftfreq(h, device=images.device).view(-1, 1)
        fx = torch.fft.rfftfreq(w, device=images.device).view(1, -1)
        factor = torch.exp(log_keep * (fy**2 + fx**2) / 0.25)
        return torch.fft.irfft2(torch.fft.rfft2(images) * factor, s=(h, w))

    return damp


#: ``oip.suppression`` → its transform, built from ``(blur_sigma, fourier_damping)``.
SUPPRESSIONS: dict[str, Callable[[float, float], Transform]] = {
    "blur": lambda sigma, damping: gaussian_blur(sigma),
    "fourier": lambda sigma, damping: fourier_damping(damping),
    "none": lambda sigma, damping: _identity,
}


def suppression(kind: str, blur_sigma: float = 0.5, damping: float = 0.1) -> Transform:
    """The high-frequency suppression named ``kind`` (a key of :data:`SUPPRESSIONS`)."""
    if kind not in SUPPRESSIONS:
        raise OIPError(f"unknown suppression {kind!r}; choose one of: {', '.join(SUPPRESSIONS)}")
    return SUPPRESSIONS[kind](blur_sigma, damping)


class Jitter:
    """Random integer shifts of up to ``pixels`` in each direction, from its own generator (so a run
    is reproducible and a one-map loop sees the same shifts as the batch)."""

    def __init__(self, pixels: int, seed: int = 0) -> None:
        if pixels < 0:
            raise OIPError(f"jitter must be ≥ 0 pixels, got {pixels}")
        self.pixels = pixels
        self._gen = torch.Generator().manual_seed(seed)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.pixels == 0:
            return images
        dy, dx = torch.randint(-self.pixels, self.pixels + 1, (2,), generator=self._gen).tolist()
        return torch.roll(images, shifts=(dy, dx), dims=(-2, -1))


def _identity(images: torch.Tensor) -> torch.Tensor:
    return images
