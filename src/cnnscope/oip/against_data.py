"""OIPs held against the data: is a map's OIP what the map responds to in real images?

Three checks per map, all against the map's dataset exemplars (:mod:`cnnscope.activations.exemplars`):

* **Normalised activation**: the OIP's activation ÷ the top exemplar's, both as the map's maximum
  over positions (the statistic the exemplars are ranked by; the ascent itself maximises the map's
  mean, so a ratio near 1 means the OIP drives its best node about as hard as the best real image).
  Raw OIP activations depend on each network's scale; this ratio can be compared across variants.
  It is undefined (NaN) for a map that is silent on data.
* **Silent on data** (never positive over the split) is kept apart from **silent to noise** (no
  gradient from any noise start — the OIP stage's ``dead``): an untrained map can be silent to
  noise yet fire on digits, and the reverse.
* **Path similarity**, after Geirhos et al., "Don't trust your eyes: on the (un)reliability of
  feature visualizations", ICML 2024: an OIP can reach a high activation by a different mechanism
  than any image. For each earlier layer, the activations inside the window of the map's arg-max
  node (its receptive field in that layer's coordinates) are correlated (Pearson) between the OIP
  and each of the top exemplars; the baseline is the exemplars among themselves. The path is
  *unnatural* in a layer when the OIP's mean correlation with the exemplars is below that of every
  exemplar with the others (the OIP is less typical than the least typical exemplar). A map is
  *flagged* when the OIP drives it ``far_above`` (``exemplars.far_above``) times above the top exemplar while its
  path is unnatural in some earlier layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from cnnscope.activations.capture import capture
from cnnscope.activations.exemplars import LayerExemplars, default_layers
from cnnscope.layout import has_oips, load_oips, read_oip_table
from cnnscope.models import LayeredCNN
from cnnscope.models.receptive_field import receptive_fields
from cnnscope.oip.errors import OIPError


def path_layers(model: LayeredCNN, layer: str) -> list[str]:
    """Earlier layers the path check looks at: the block ends before ``layer`` (else its earlier maps)."""
    names = model.layer_names
    if layer not in names:
        raise OIPError(f"unknown layer {layer!r}; valid layers are: {', '.join(names)}")
    before = set(names[: names.index(layer)])
    blocks = [name for name in default_layers(model) if name in before]
    return blocks or [name for name in model.conv_layers if name in before]


def _windows(acts: torch.Tensor, nodes: torch.Tensor, model: LayeredCNN, earlier: str, layer: str) -> torch.Tensor:
    """``(B, C·r·r)``: activations of ``earlier`` inside the window of each image's node of ``layer``."""
    side = int(acts.shape[-1])
    geometry = receptive_fields(model.named_children(), side, after=earlier)[layer]
    pad = geometry.size
    padded = F.pad(acts, (pad, pad, pad, pad))
    out = []
    for image, (y, x) in zip(padded, nodes.tolist(), strict=True):
        top, left, _, _ = geometry.window(y, x)
        out.append(image[:, top + pad : top + pad + geometry.size, left + pad : left + pad + geometry.size].flatten())
    return torch.stack(out)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of the rows of ``a`` ``(..., n, d)`` with those of ``b`` ``(..., m, d)``: ``(..., n, m)``.

    A constant row (e.g. all zero after a ReLU) correlates 0 with everything.
    """
    a = a - a.mean(dim=-1, keepdim=True)
    b = b - b.mean(dim=-1, keepdim=True)
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return a @ b.transpose(-1, -2)


@torch.no_grad()
def against_data(
    model: LayeredCNN,
    layer: str,
    maps: Sequence[int],
    oip_images: torch.Tensor,
    exemplars: LayerExemplars,
    exemplar_images: torch.Tensor,
    silent_to_noise: torch.Tensor,
    far_above: float,
    earlier: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per map of ``maps``: normalised OIP activation, silent flags, path check per earlier layer.

    ``oip_images`` ``(M, C, H, W)`` are the maps' OIPs in the standardised input space (as the OIP
    stage stores them); ``exemplar_images`` ``(M, k, C, H, W)`` uint8 are the maps' top exemplars
    (``exemplars.image_ids``); ``silent_to_noise`` ``(M,)`` is the OIP stage's dead flag.
    """
    maps = [int(m) for m in maps]
    n_maps, k = len(maps), exemplar_images.shape[1]
    if len(oip_images) != n_maps or len(exemplar_images) != n_maps or len(silent_to_noise) != n_maps:
        raise OIPError(f"{n_maps} maps but {len(oip_images)} OIPs and {len(exemplar_images)} exemplar sets")
    earlier = path_layers(model, layer) if earlier is None else list(earlier)
    device = model.mean.device
    wanted = [layer, *earlier]
    oip_acts = capture(model, oip_images.to(device), wanted)
    rows = torch.arange(n_maps)
    index = torch.tensor(maps)
    oip_map = oip_acts[layer][rows, index].flatten(1)  # (M, P)
    oip_peak, oip_node = oip_map.max(dim=1)
    width = int(oip_acts[layer].shape[-1])
    oip_nodes = torch.stack([oip_node // width, oip_node % width], dim=1).cpu()
    top = exemplars.values[index, 0]
    silent_on_data = top <= 0
    ratio = torch.where(silent_on_data, torch.tensor(math.nan), oip_peak.cpu() / top.clamp_min(1e-12))
    table = pd.DataFrame(
        {
            "map": maps,
            "oip_activation": oip_peak.cpu().tolist(),
            "top_exemplar_activation": top.tolist(),
            "normalised_activation": ratio.tolist(),
            "silent_on_data": silent_on_data.tolist(),
            "silent_to_noise": silent_to_noise.bool().tolist(),
        }
    )
    flat = exemplar_images.flatten(0, 1).to(device)
    ex_acts = capture(model, model.standardize(flat.float() / 255), earlier)
    ex_nodes = exemplars.nodes[index].flatten(0, 1)
    unnatural = torch.zeros(n_maps, dtype=torch.bool)
    for name in earlier:
        oip_vec = _windows(oip_acts[name].cpu(), oip_nodes, model, name, layer).unsqueeze(1)  # (M, 1, d)
        ex_vec = _windows(ex_acts[name].cpu(), ex_nodes, model, name, layer).view(n_maps, k, -1)  # (M, k, d)
        oip_corr = pearson(oip_vec, ex_vec)[:, 0].mean(dim=1)  # (M,)
        among = pearson(ex_vec, ex_vec)  # (M, k, k)
        per_exemplar = (among.sum(dim=2) - among.diagonal(dim1=1, dim2=2)) / max(k - 1, 1)  # (M, k)
        natural = per_exemplar.mean(dim=1)
        low = oip_corr < per_exemplar.min(dim=1).values if k > 1 else torch.zeros(n_maps, dtype=torch.bool)
        table[f"path_oip_{name}"] = oip_corr.tolist()
        table[f"path_natural_{name}"] = natural.tolist()
        table[f"path_unnatural_{name}"] = low.tolist()
        unnatural |= low
    table["path_unnatural"] = unnatural.tolist()
    table["flagged"] = ((ratio >= far_above) & unnatural).tolist()
    return table


def against_oip_outputs(
    model: LayeredCNN,
    oip_dir: str | Path,
    exemplars: dict[str, LayerExemplars],
    images: torch.Tensor,
    image_ids: torch.Tensor,
    far_above: float,
) -> pd.DataFrame:
    """:func:`against_data` for what the OIP stage wrote in ``oip_dir`` (``oips.pt``, ``maps.csv``):
    each map's best OIP (best restart and wavelength) against its exemplars among ``images``."""
    folder = Path(oip_dir)
    if not has_oips(folder):
        raise OIPError(f"no OIP outputs in {folder}: run the oip stage first (cnnscope repro oip)")
    tensors, table = load_oips(folder), read_oip_table(folder)
    layer = str(tensors["layer"])
    if layer not in exemplars:
        raise OIPError(f"the OIPs are of layer {layer!r} but exemplars were found for {sorted(exemplars)}")
    restarts, wavelengths = list(tensors["restarts"]), list(tensors["wavelengths"])
    rows = torch.arange(len(table))
    best_restart = torch.tensor([restarts.index(int(r)) for r in table["best_restart"]])
    best_wl = torch.tensor([wavelengths.index(int(w)) for w in table["best_wavelength"]])
    oips = tensors["images"][rows, best_restart, best_wl]
    maps = [int(m) for m in tensors["maps"]]
    ex = exemplars[layer]
    position = {int(i): p for p, i in enumerate(image_ids.tolist())}
    picks = torch.tensor([[position[int(i)] for i in ex.image_ids[m]] for m in maps])
    dead = torch.tensor(table["dead"].astype(bool).to_numpy())
    return against_data(model, layer, maps, oips, ex, images[picks], dead, far_above)


def data_summary(exemplars: LayerExemplars) -> dict[str, float | int]:
    """The part of :func:`summary` that needs no OIP, for a network whose OIPs were not made
    (``study.oip_seeds``): how many maps the layer has and how many never fire on the split."""
    return {"maps": len(exemplars.values), "silent_on_data": int(exemplars.silent.sum())}


def summary(table: pd.DataFrame) -> dict[str, float | int]:
    """Per-network numbers the report compares variants on (normalised, so scale-free)."""
    live = table[~table["silent_on_data"].astype(bool)]
    ratio = live["normalised_activation"]
    return {
        "maps": len(table),
        "silent_on_data": int(table["silent_on_data"].sum()),
        "silent_to_noise": int(table["silent_to_noise"].sum()),
        "silent_to_noise_not_on_data": int((table["silent_to_noise"] & ~table["silent_on_data"]).sum()),
        "median_normalised_activation": float(ratio.median()) if len(ratio) else float("nan"),
        "above_top_exemplar_fraction": float((ratio > 1).mean()) if len(ratio) else float("nan"),
        "path_unnatural_fraction": float(table["path_unnatural"].mean()),
        "flagged": int(table["flagged"].sum()),
    }
