"""Gather what the stages wrote for one network into the :class:`~cnnscope.atlas.site.NetworkLayer`
records the atlas draws: exemplars (``exemplars.pt``), the OIP stage's tensors and per-map table
(``oips.pt``, ``maps.csv``), the OIP-vs-data table (``against_data.csv``) and the trajectory stage's
OIPs of the followed maps at every checkpoint (the same two file names in ``trajectory/``); and,
across networks, the compare stage's map matching (``tables/matching.csv``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from cnnscope.activations.exemplars import LayerExemplars
from cnnscope.atlas.site import AtlasError, NetworkLayer
from cnnscope.layout import has_oips, load_oips, read_oip_table, run_dir
from cnnscope.models import LayeredCNN
from cnnscope.viz.atlas import FigureCell

#: The compare stage's per-map matching, under its output folder.
MATCHING_TABLE = "tables/matching.csv"
#: How the atlas lines maps up across networks, shown on its index and map pages.
MATCHING_NOTE = (
    "Across networks, each map of the first network is shown beside its <b>matched</b> map in every other network: "
    "the one-to-one Hungarian matching of the compare stage (<code>compare/tables/matching.csv</code>; r is the "
    "correlation of the two maps over the evaluation images × positions; Li et al., ICLR 2016). Where that table "
    "does not cover a layer, a pooling layer takes the matching of the ReLU it pools (labelled <i>via</i> it); "
    "otherwise map <i>i</i> is shown beside map <i>i</i>, labelled <i>same index</i>: the variants "
    "share their initialisation per seed, so the same index starts as the same filter."
)


def _merge(base: pd.DataFrame, extra: pd.DataFrame | None) -> pd.DataFrame:
    """``base`` with the columns of ``extra`` it lacks, joined on ``map``."""
    if extra is None:
        return base
    new = ["map", *[c for c in extra.columns if c not in base.columns]]
    return base.merge(extra[new], on="map", how="left")


def _best(stack: torch.Tensor, restarts: list[int], wavelengths: list[int], table: pd.DataFrame) -> torch.Tensor:
    """``stack[m, best restart, best wavelength]`` per map: ``(M, …)``."""
    k = [restarts.index(int(r)) for r in table["best_restart"]]
    w = [wavelengths.index(int(v)) for v in table["best_wavelength"]]
    rows = torch.arange(len(table))
    return stack[rows, torch.tensor(k), torch.tensor(w)]


def oip_fields(oip_dir: str | Path, n_maps: int) -> tuple[str, dict[str, Any], pd.DataFrame]:
    """The OIP stage's layer, the :class:`NetworkLayer` fields it fills, and its per-map table.

    Maps the OIP stage did not optimise (``oip.maps`` a subset) get no OIP: their tiles are blank.
    """
    tensors, table = load_oips(oip_dir), read_oip_table(oip_dir)
    restarts, wavelengths, maps = list(tensors["restarts"]), list(tensors["wavelengths"]), list(tensors["maps"])
    images = tensors["images"]  # (M, K, W, C, H, W)
    steps = sorted(int(s) for s in tensors["snapshots"])
    shape = (n_maps, *images.shape[3:])

    def full(per_map: torch.Tensor) -> np.ndarray:
        out = torch.zeros(shape[0], *per_map.shape[1:])
        out[maps] = per_map.float()
        return out.numpy()

    fields: dict[str, Any] = {
        "oips": full(_best(images, restarts, wavelengths, table)),
        "oip_maps": [int(m) for m in maps],
        "evolution": full(
            torch.stack([_best(tensors["snapshots"][s], restarts, wavelengths, table) for s in steps], 1)
        ),
        "evolution_steps": steps,
        "starts": full(images.flatten(1, 2)),
        "start_labels": [f"restart {r}, wavelength {w}" for r in restarts for w in wavelengths],
    }
    if "node_images" in tensors:
        fields["nodes"] = (int(tensors["node_map"]), tensors["node_images"].float().numpy())
    table = table.rename(columns={"dead": "silent_to_noise"})
    return str(tensors["layer"]), fields, table


def trajectory_fields(folder: str | Path) -> tuple[str, dict[str, Any]] | None:
    """The trajectory stage's layer of one network and the :class:`NetworkLayer` fields of its
    followed maps (their OIP at every checkpoint, the steps, each checkpoint's top-image class);
    None when it wrote no OIPs there (a network without feature maps, or no trajectory)."""
    if not has_oips(folder):
        return None
    tensors = load_oips(folder)
    if tensors.get("layer") is None or "images" not in tensors or not len(tensors["maps"]):
        return None
    steps, maps = [int(s) for s in tensors["steps"]], [int(m) for m in tensors["maps"]]
    table = read_oip_table(folder)
    top = {(int(r.step), int(r.map)): str(r.top_class) for r in table.itertuples()} if len(table) else {}
    fields: dict[str, Any] = {
        "training_maps": maps,
        "training_steps": steps,
        "training": tensors["images"].float().numpy().swapaxes(0, 1),  # (steps, maps, …) → (maps, steps, …)
        "training_classes": [[top.get((s, m), "–") for s in steps] for m in maps],
    }
    return str(tensors["layer"]), fields


def with_trajectories(records: Sequence[NetworkLayer], folder: str | Path) -> list[NetworkLayer]:
    """``records`` with the trajectory stage's followed maps (:func:`trajectory_fields`) set on the
    layer it followed, from ``<folder>/<variant>/seed<k>/``; networks without a trajectory unchanged."""
    found: dict[tuple[str, int], tuple[str, dict[str, Any]] | None] = {}
    out = []
    for net in records:
        key = (net.variant, net.seed)
        if key not in found:
            found[key] = trajectory_fields(run_dir(folder, net.variant, net.seed))
        entry = found[key]
        out.append(dataclasses.replace(net, **entry[1]) if entry is not None and entry[0] == net.layer else net)
    return out


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
    if oip_dir is not None and has_oips(oip_dir):
        n_maps = {name: len(ex.values) for name, ex in exemplars.items()}
        layer = str(load_oips(oip_dir)["layer"])
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
    other network shows its matched map (:attr:`NetworkLayer.matches`, labelled with the map and
    the correlation), else the same index.
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
            oip = net.oips[j] if net.oips is not None and net.has_oip(j) else None
            label = f"map {j}, r {net.match_corr[m]:.2f}" if net.match_corr is not None else ""
            row.append(FigureCell(j, oip, crops, float(ratio), label))
        rows.append(row)
    return [n.name for n in nets], rows, [f"map {m}" for m in chosen]


def matched_maps(
    matching: pd.DataFrame, layer: str, reference: tuple[str, int], other: tuple[str, int], n_maps: int
) -> tuple[list[int], list[float]] | None:
    """For each map ``i`` of ``reference``: the map of ``other`` matched to it and their correlation,
    from the matching table (either orientation of the pair); None when the table does not match
    every map of ``layer`` one to one for this pair."""
    a = (matching["variant_a"].astype(str) == reference[0]) & (matching["seed_a"] == reference[1])
    b = (matching["variant_b"].astype(str) == other[0]) & (matching["seed_b"] == other[1])
    rows = matching[(matching["layer"] == layer) & a & b]
    ours, theirs = "map_a", "map_b"
    if rows.empty:  # stored as (other, reference)
        a = (matching["variant_a"].astype(str) == other[0]) & (matching["seed_a"] == other[1])
        b = (matching["variant_b"].astype(str) == reference[0]) & (matching["seed_b"] == reference[1])
        rows, ours, theirs = matching[(matching["layer"] == layer) & a & b], "map_b", "map_a"
    if sorted(rows[ours].astype(int)) != list(range(n_maps)) or rows[theirs].nunique() != n_maps:
        return None
    rows = rows.sort_values(ours)
    return [int(m) for m in rows[theirs]], [float(r) for r in rows["matched_corr"]]


#: Layers whose output channel ``c`` is a function of channel ``c`` of their input alone.
CHANNELWISE = (nn.MaxPool2d, nn.AvgPool2d, nn.ReLU, nn.BatchNorm2d, nn.Dropout, nn.Dropout2d)


def channel_sources(model: LayeredCNN, layers: Sequence[str]) -> dict[str, str]:
    """For each of ``layers`` that is not a feature map itself: the feature map (``conv_layers``)
    whose channels it keeps one for one — ``pool1`` → ``relu1`` — when only channel-wise layers
    (pooling, ReLU, batch norm, dropout) lie between them. Map ``i`` of ``pool1`` *is* map ``i`` of
    ``relu1``, pooled, so it takes ``relu1``'s matching across networks."""
    names, modules = model.layer_names, dict(model.named_children())
    out = {}
    for layer in layers:
        if layer in model.conv_layers or layer not in names:
            continue
        for earlier in reversed(names[: names.index(layer) + 1]):
            if earlier != layer and earlier in model.conv_layers:
                out[layer] = earlier
                break
            if not isinstance(modules[earlier], CHANNELWISE):
                break
    return out


def apply_matching(
    records: Sequence[NetworkLayer], matching: pd.DataFrame | None, sources: dict[str, str] | None = None
) -> list[NetworkLayer]:
    """``records`` with :attr:`NetworkLayer.matches` and :attr:`NetworkLayer.match_corr` set for
    every network that the matching table pairs with the layer's first (reference) network — for a
    layer the table lacks, through its entry in ``sources`` (:func:`channel_sources`); the others
    keep the same index (``matches`` None)."""
    out = list(records)
    if matching is None:
        return out
    matched_layers = set(matching["layer"])
    reference: dict[str, NetworkLayer] = {}
    for i, net in enumerate(out):
        ref = reference.setdefault(net.layer, net)
        if ref is net or net.n_maps != ref.n_maps:
            continue
        layer = net.layer if net.layer in matched_layers else (sources or {}).get(net.layer)
        if layer is None:
            continue
        found = matched_maps(matching, layer, (ref.variant, ref.seed), (net.variant, net.seed), ref.n_maps)
        if found is not None:
            via = None if layer == net.layer else layer
            out[i] = dataclasses.replace(net, matches=found[0], match_corr=found[1], match_via=via)
    return out
