"""The OIPs of a fixed set of deep maps at every checkpoint: how a map's input pattern forms.

The maps are the final network's most active ones (:func:`.measures.most_active_maps`), so the
strip shows maps that end up doing something. Every checkpoint starts its ascent from the same
noise (the same restart seeds), with the study's OIP recipe (``oip`` section) cut to few steps,
two restarts and its longest wavelength (deep maps answer long wavelengths, claim (c)): the strip
changes only because the network does. Per map the better restart's image is kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import torch

from cnnscope.config import OIPConfig
from cnnscope.models import LayeredCNN
from cnnscope.oip import OIPSettings, generate_oips


def trajectory_settings(
    cfg: OIPConfig, steps: int, colour_sqrt: tuple[tuple[float, ...], ...] | None = None
) -> OIPSettings:
    """The study's OIP recipe with ``steps`` ascent steps, two restarts, one wavelength."""
    settings = OIPSettings.from_config(cfg, colour_sqrt)
    restarts = [cfg.noise_seed, cfg.noise_seed + 1]
    return replace(settings, steps=steps, restarts=restarts, wavelengths=[max(cfg.wavelengths)])


def oips_over_training(
    models: Mapping[int, LayeredCNN], layer: str, maps: Sequence[int], settings: OIPSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(steps, maps, C, H, W)`` standardised OIP images (float16) and ``(steps, maps)`` their
    objective, one row per checkpoint in ``models``' order."""
    images, values = [], []
    for model in models.values():
        result = generate_oips(model, layer, list(maps), settings, ())  # final images only: no snapshots
        restart, wavelength = result.best_candidates()
        index = torch.arange(len(maps))
        images.append(result.images[index, restart, wavelength].detach().cpu().half())
        values.append(result.final[index, restart, wavelength].detach().cpu().float())
    return torch.stack(images), torch.stack(values)
