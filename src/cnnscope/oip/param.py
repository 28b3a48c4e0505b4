"""Starting images for OIPs: Gaussian noise at a chosen spatial wavelength.

Deep maps pool over large regions, so independent pixel noise averages out before it reaches them
and their gradient can be exactly zero; noise that varies on longer length scales gives them
something to respond to. Two ways to draw such noise:

* ``grid``: Gaussian values on a coarse grid whose spacing is the wavelength, upsampled
  bilinearly to the image size (wavelength 1 is plain pixel noise);
* ``fourier``: a random spectrum band-limited to frequencies ≤ 1/wavelength cycles per pixel.

Every image is standardised per channel (mean 0, std 1) because the network's input space is the
standardised one it was trained in.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from cnnscope.oip.errors import OIPError


def standardize(images: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per image and channel: subtract the mean, divide by the std (a flat image becomes 0, not NaN)."""
    mean = images.mean(dim=(-2, -1), keepdim=True)
    std = images.std(dim=(-2, -1), keepdim=True)
    return (images - mean) / std.clamp_min(eps)


def wavelength_noise(
    count: int,
    channels: int,
    size: int,
    wavelength: int,
    generator: torch.Generator,
    kind: str = "grid",
) -> torch.Tensor:
    """``count`` standardised noise images ``(count, channels, size, size)`` at ``wavelength`` pixels."""
    if not 1 <= wavelength <= size:
        raise OIPError(f"wavelength {wavelength} is outside the image; valid wavelengths are 1..{size} pixels")
    if kind not in NOISE_KINDS:
        raise OIPError(f"unknown noise kind {kind!r}; choose one of: {', '.join(NOISE_KINDS)}")
    return standardize(NOISE_KINDS[kind](count, channels, size, wavelength, generator))


def _grid_noise(count: int, channels: int, size: int, wavelength: int, gen: torch.Generator) -> torch.Tensor:
    if wavelength == 1:
        return torch.randn(count, channels, size, size, generator=gen)
    # n grid points spanning the image with align_corners: spacing (size-1)/(n-1) ≈ wavelength,
    # and at least two points so the longest wavelength is a ramp, not a constant.
    points = max(2, math.ceil((size - 1) / wavelength) + 1)
    coarse = torch.randn(count, channels, points, points, generator=gen)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=True)


def _fourier_noise(count: int, channels: int, size: int, wavelength: int, gen: torch.Generator) -> torch.Tensor:
    fy = torch.fft.fftfreq(size).view(-1, 1)
    fx = torch.fft.rfftfreq(size).view(1, -1)
    freq = torch.sqrt(fy**2 + fx**2)
    keep = (freq <= 1.0 / wavelength) & (freq > 0)  # no DC: the mean is removed anyway
    shape = (count, channels, size, size // 2 + 1)
    spectrum = torch.complex(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen))
    return torch.fft.irfft2(spectrum * keep, s=(size, size))


#: ``oip.noise`` → its generator ``(count, channels, size, wavelength, generator) → noise``.
NOISE_KINDS: dict[str, Callable[[int, int, int, int, torch.Generator], torch.Tensor]] = {
    "grid": _grid_noise,
    "fourier": _fourier_noise,
}


def initial_noise(
    restarts: list[int],
    wavelengths: list[int],
    channels: int,
    size: int,
    kind: str = "grid",
) -> torch.Tensor:
    """Starting images ``(len(restarts), len(wavelengths), C, H, W)``; a restart is named by its noise seed.

    Each (restart, wavelength) pair has its own generator, so an image depends only on that pair —
    not on which maps, how many restarts or which other wavelengths are in the batch. That makes the
    batched run and a one-map-at-a-time loop start from identical images.
    """
    rows = []
    for restart in restarts:
        row = []
        for wavelength in wavelengths:
            gen = torch.Generator().manual_seed(_pair_seed(restart, wavelength))
            row.append(wavelength_noise(1, channels, size, wavelength, gen, kind)[0])
        rows.append(torch.stack(row))
    return torch.stack(rows)


def _pair_seed(seed: int, wavelength: int) -> int:
    return (seed * 1_000_003 + wavelength) % (2**63 - 1)
