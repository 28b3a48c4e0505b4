"""The spectral (Fourier) parameterisation of an OIP, as in Lucid/Lucent's ``fft_image``.

The ascent's variables are the image's 2-D Fourier coefficients, and the image is the inverse
transform of those coefficients times ``1 / max(f, 1/size) ** decay`` (``f`` in cycles per pixel).
With ``decay = 1`` a spectrum of white noise becomes an image with the ``1/f`` amplitude spectrum
of natural images; more to the point, a unit step on every coefficient moves low frequencies
``size``× more than the Nyquist frequency, so the ascent finds large, smooth structures first
instead of the pixel-scale patterns that plain pixel gradients favour (Olah et al., Distill 2017,
"Feature Visualization", §"Preconditioning and parameterization"). No blur is needed afterwards.

The coefficients are kept as a real tensor ``(B, C, H, W // 2 + 1, 2)`` (real and imaginary
parts), so the ascent's per-element gradient normalisation and step are the same as for pixels.
"""

from __future__ import annotations

import torch

from cnnscope.oip.color import ValidImage
from cnnscope.oip.errors import OIPError


def spectrum_scale(height: int, width: int, decay: float) -> torch.Tensor:
    """Amplitude of each ``rfft2`` bin ``(height, width // 2 + 1)``: ``1 / max(f, 1/max(h, w)) ** decay``,
    divided by its root mean square over the bins.

    The clamp keeps the DC bin finite (at the value of the lowest non-zero frequency); the RMS
    normalisation makes a step of a given size change the image by about as much as the same step
    on pixels would (``irfft2`` is orthonormal), whatever ``decay`` is.
    """
    if decay < 0:
        raise OIPError(f"spectrum decay must be ≥ 0 (1 = natural images' 1/f), got {decay}")
    fy = torch.fft.fftfreq(height).view(-1, 1)
    fx = torch.fft.rfftfreq(width).view(1, -1)
    freq = torch.sqrt(fy**2 + fx**2)
    scale = 1.0 / freq.clamp_min(1.0 / max(height, width)) ** decay
    return scale / scale.pow(2).mean().sqrt()


class FourierImage:
    """OIP variables ↔ images: ``image(params) = valid(irfft2(scale · coefficients))``.

    ``valid`` maps decorrelated colours to a bounded image in the network's input space
    (:class:`~cnnscope.oip.color.ValidImage`).
    """

    def __init__(self, size: int, valid: ValidImage, decay: float, device: torch.device | None = None) -> None:
        self.size = size
        self.valid = valid.to(device) if device is not None else valid
        self.scale = spectrum_scale(size, size, decay).to(device)

    def init(self, u: torch.Tensor) -> torch.Tensor:
        """The variables whose ``irfft2`` is exactly the decorrelated-colour image ``u`` ``(B, C, H, W)``."""
        coefficients = torch.fft.rfft2(u, norm="ortho") / self.scale
        return torch.view_as_real(coefficients).contiguous()

    def colours(self, params: torch.Tensor) -> torch.Tensor:
        """The decorrelated-colour image ``u`` of ``params`` (before the colour map and sigmoid)."""
        coefficients = torch.view_as_complex(params) * self.scale
        return torch.fft.irfft2(coefficients, s=(self.size, self.size), norm="ortho")

    def image(self, params: torch.Tensor) -> torch.Tensor:
        """The image ``(B, C, H, W)`` in the network's standardised input space."""
        return self.valid(self.colours(params))
