"""Keeping OIPs free of high-frequency artefacts, and transformation robustness.

Plain gradient ascent on the input amplifies pixel-scale patterns that excite a map without being
a structure a human would recognise (and that lead the ascent into side maxima). After each step
the image is therefore smoothed — by a Gaussian blur, or by damping its Fourier spectrum towards
the Nyquist frequency. Jitter (a random shift per step) further discourages patterns tied to exact
pixel positions; a small random zoom and rotation per step (:class:`RandomAffine`) completes
Lucid's *transformation robustness*: a pattern that still drives the map after being moved,
scaled and turned a little is a structure, not an adversarial pixel arrangement (Olah et al.,
Distill 2017, "Feature Visualization").
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from cnnscope.oip.errors import OIPError

Transform = Callable[[torch.Tensor], torch.Tensor]


def gaussian_blur(sigma: float) -> Transform:
    """Blur with a Gaussian of ``sigma`` pixels (reflecting borders); ``sigma == 0`` is the identity.

    The same kernel, padding and convolution as torchvision's ``gaussian_blur`` (a test holds them
    equal), written with torch alone: importing torchvision pulls in ``torch._dynamo``, which cost
    the ``oip@`` and ``trajectory@`` stages 1.5 s and 170 MB each just to start."""
    if sigma < 0:
        raise OIPError(f"blur sigma must be ≥ 0, got {sigma}")
    if sigma == 0:
        return _identity
    kernel = 2 * math.ceil(3 * sigma) + 1

    def blur(images: torch.Tensor) -> torch.Tensor:
        size = min(kernel, 2 * min(images.shape[-2:]) - 1)  # reflect padding needs size // 2 < the side
        size -= 1 - size % 2  # an odd kernel, centred on its pixel
        lim = (size - 1) / (2.0 * math.sqrt(2.0))  # offsets / √2, so that softmax(-(x/σ)²) ∝ exp(-i²/2σ²)
        x = torch.linspace(-lim, lim, steps=size, dtype=images.dtype, device=images.device)
        k1 = torch.softmax(x.div(sigma).pow(2).neg(), dim=0)
        channels = images.shape[-3]
        k2 = (k1.unsqueeze(-1) * k1).expand(channels, 1, size, size)
        flat = images.reshape(-1, *images.shape[-3:])
        padded = F.pad(flat, [size // 2] * 4, mode="reflect")
        return F.conv2d(padded, k2, groups=channels).reshape(images.shape)

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


def suppression(kind: str, blur_sigma: float, damping: float) -> Transform:
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


class RandomAffine:
    """A random zoom by up to ``±scale`` (relative) and rotation by up to ``±rotate`` degrees per
    call, one draw for the whole batch from its own generator (like :class:`Jitter`); borders are
    reflected, so no constant frame appears for the ascent to exploit."""

    def __init__(self, scale: float, rotate: float, seed: int = 0) -> None:
        if not 0 <= scale < 1:
            raise OIPError(f"random scale must be in [0, 1) (a relative zoom), got {scale}")
        if not 0 <= rotate <= 180:
            raise OIPError(f"random rotation must be 0..180 degrees, got {rotate}")
        self.scale, self.rotate = scale, rotate
        self._gen = torch.Generator().manual_seed(seed)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.scale == 0 and self.rotate == 0:
            return images
        u_scale, u_angle = (2 * torch.rand(2, generator=self._gen, dtype=torch.float64) - 1).tolist()
        zoom = 1.0 + self.scale * u_scale
        angle = math.radians(self.rotate * u_angle)
        cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=images.dtype, device=images.device)
        grid = F.affine_grid(theta.expand(images.shape[0], 2, 3), list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def compose(*transforms: Transform | None) -> Transform | None:
    """The transforms applied in order (``None`` entries skipped); ``None`` when there are none."""
    chain = [t for t in transforms if t is not None]
    if not chain:
        return None

    def apply(images: torch.Tensor) -> torch.Tensor:
        for transform in chain:
            images = transform(images)
        return images

    return apply


def _identity(images: torch.Tensor) -> torch.Tensor:
    return images
