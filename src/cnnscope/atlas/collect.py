"""Gather what the stages wrote for one network into the :class:`~cnnscope.atlas.site.NetworkLayer`
records the atlas draws: exemplars (``exemplars.pt``), the OIP stage's tensors and per-map table
(``oips.pt``, ``maps.csv``) and the OIP-vs-data table (``against_data.csv``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cnnscope.activations.exemplars import LayerExemplars
from cnnscope.atlas.site import AtlasError, NetworkLayer
from cnnscope.viz.atlas import FigureCell

OIP_TENSORS = "oips.pt"
OIP_TABLE = "maps.csv"


def _merge(base: pd.DataFrame, extra: pd.DataFrame | None) -> pd.DataFrame:
    """``base`` with the columns of ``extra`` it lacks, joined on ``map``."""
    if extra is None:
        return base
    new = ["map", *[c for c in extra.columns if c not in base.columns]]
    return base.merge(extra[new], on="map", how="left")


def _best(stack: torch.Tensor, seeds: list[int], wavelengths: list[int], table: pd.DataFrame) -> torch.Tensor:
    """``stack[m, best seed, best wavelength]`` per map: ``(M, …)``."""
    k = [seeds.index(int(s)) for s in table["best_seed"]]
    w = [wavelengths.index(int(v)) for v in table["best_wavelength"]]
    rows = torch.arange(len(table))
    return stack[rows, torch.tensor(k), torch.tensor(w)]


def oip_fields(oip_dir: str | Path, n_maps: int) -> tuple[str, dict[str, Any], pd.DataFrame]:
    """The OIP stage's layer, the :class:`NetworkLayer` fields it fills, and its per-map table.

    Maps the OIP stage did not optimise (``oip.maps`` a subset) get no OIP: their tiles are blank.
    """
    folder = Path(oip_dir)
    tensors = torch.load(folder / OIP_TENSORS, map_location="cpu", weights_only=True)
    table = pd.read_csv(folder / OIP_TABLE)
    seeds, wavelengths, maps = list(tensors["seeds"]), list(tensors["wavelengths"]), list(tensors["maps"])
    images = tensors["images"]  # (M, K, W, C, H, W)
    steps = sorted(int(s) for s in tensors["snapshots"])
    shape = (n_maps, *images.shape[3:])

    def full(per_map: torch.Tensor) -> np.ndarray:
        out = torch.zeros(shape[0], *per_map.shape[1:])
        out[maps] = per_map.float()
        return out.numpy()

    fields: dict[str, Any] = {
        "oips": full(_best(images, seeds, wavelengths, table)),
        "oip_maps": [int(m) for m in maps],
        "evolution": full(torch.stack([_best(tensors["snapshots"][s], seeds, wavelengths, table) for s in steps], 1)),
        "evolution_steps": steps,
        "starts": full(images.flatten(1, 2)),
        "start_labels": [f"seed {s}, wavelength {w}" for s in seeds for w in wavelengths],
    }
    if "node_images" in tensors:
        fields["nodes"] = (int(tensors["node_map"]), tensors["node_images"].float().numpy())
    table = table.rename(columns={"dead": "silent_to_noise"})
    return str(tensors["layer"]), fields, table


def network_layers(
    variant: str,
    seed: int,
    exemplars: dict[str, LayerExemplars],
    oip_dir: str | Path | None = None,
    against: pd.DataFrame | None = None,
    matches: dict[str, list[int]] | None = None,
) -> list[NetworkLayer]:
    """One :class:`NetworkLayer` per exemplar layer of one network; the OIP stage's layer also gets
    its OIPs, strips, node OIPs and the OIP-vs-data columns."""
    oip = None
    if oip_dir is not None and (Path(oip_dir) / OIP_TENSORS).is_file():
        n_maps = {name: len(ex.values) for name, ex in exemplars.items()}
        layer = str(torch.load(Path(oip_dir) / OIP_TENSORS, map_location="cpu", weights_only=True)["layer"])
        if layer in n_maps:
            oip = oip_fields(oip_dir, n_maps[layer])
    out = []
    for name, ex in exemplars.items():
        table = ex.table()
        fields: dict[str, Any] = {}
        if oip is not None and oip[0] == name:
            fields = oip[1]
            table = _merge(_merge(table, against), oip[2][["map", "robustness", "silent_to_noise"]])
        out.append(
            NetworkLayer(
                variant=variant,
                seed=seed,
                layer=name,
                table=table,
                crops=ex.crops.numpy(),
                median_crops=ex.median_crops.numpy(),
                matches=(matches or {}).get(name),
                **fields,
            )
        )
    return out


def figure_rows(
    records: list[NetworkLayer], layer: str, n_maps: int = 4, n_exemplars: int = 4
) -> tuple[list[str], list[list[FigureCell]], list[str]]:
    """Networks, cells and row labels of :func:`cnnscope.viz.atlas.oip_beside_exemplars` for ``layer``.

    The rows are the ``n_maps`` maps of the first network that its top exemplars drive most; each
    other network shows its matched map (:attr:`NetworkLayer.matches`, else the same index).
    """
    nets = [r for r in records if r.layer == layer]
    if not nets:
        raise AtlasError(f"no network has layer {layer!r}; layers: {sorted({r.layer for r in records})}")
    reference = nets[0]
    table = reference.table
    if reference.oip_maps is not None:  # rank the maps that have an OIP
        table = table[table["map"].isin(reference.oip_maps)]
    ranked = table.sort_values(["top_activation", "map"], ascending=[False, True])
    chosen = [int(m) for m in ranked["map"].iloc[:n_maps]]
    rows = []
    for m in chosen:
        row = []
        for net in nets:
            j = m if net.matches is None else int(net.matches[m])
            ratio = net.table["normalised_activation"].iloc[j] if "normalised_activation" in net.table else math.nan
            crops = net.crops[j, :n_exemplars] if net.crops is not None else np.zeros((0, 1, 1, 1), np.uint8)
            row.append(
                FigureCell(j, net.oips[j] if net.oips is not None and net.has_oip(j) else None, crops, float(ratio))
            )
        rows.append(row)
    return [n.name for n in nets], rows, [f"map {m}" for m in chosen]
