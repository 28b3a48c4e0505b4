"""A small study's atlas built through the library, as the stages do: two networks of
``mnist_cnn`` on the synthetic data, exemplars of the default layers, a few OIP steps (the OIP
stage's file layout) and the OIP-vs-data table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cnnscope.activations.exemplars import default_layers, find_exemplars, split_images
from cnnscope.atlas import NetworkLayer, write_atlas
from cnnscope.atlas.collect import MATCHING_NOTE, apply_matching, figure_rows, network_layers
from cnnscope.data.prepared import PreparedData
from cnnscope.layout import OIP_TABLE, OIP_TENSORS
from cnnscope.oip import OIPSettings, generate_node_oips, generate_oips, map_table
from cnnscope.oip.against_data import against_data
from cnnscope.viz.atlas import oip_beside_exemplars
from conftest import conf_section, exemplar_knobs, random_model

ASCENT = dict(step_size=0.1, noise="grid", suppress="blur", blur_sigma=0.5, fourier_damping=0.1, jitter=0)
ASCENT |= dict(scale=0.0, rotate=0.0, parameterization="pixel", decay=1.0, anneal=False, init_scale=1.0)
SETTINGS = OIPSettings(restarts=(0, 1), wavelengths=(1, 4), steps=3, **ASCENT)  # type: ignore[arg-type]
NETWORKS = [("benchmark", 0), ("untrained", 0)]


def write_oip_outputs(model: torch.nn.Module, out: Path, maps: list[int]) -> None:
    """``oips.pt`` and ``maps.csv`` as the OIP stage writes them, for ``maps`` of ``relu3``."""
    result = generate_oips(model, "relu3", maps, SETTINGS, snapshots=(0, 3))  # type: ignore[arg-type]
    nodes = generate_node_oips(model, maps[0], "relu3", OIPSettings(restarts=(0,), wavelengths=(4,), steps=2, **ASCENT))  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    map_table(result).to_csv(out / OIP_TABLE, index=False)
    torch.save(result.tensors(nodes), out / OIP_TENSORS)


def build_study(prepared: PreparedData, root: Path, maps: list[int] | None = None) -> list[NetworkLayer]:
    """Exemplars, OIPs and OIP-vs-data for :data:`NETWORKS`; returns the atlas records."""
    images, ids = split_images(prepared, "test")
    position = {int(i): p for p, i in enumerate(ids)}
    records = []
    for i, (variant, seed) in enumerate(NETWORKS):
        model = random_model(prepared, seed=i).eval()
        exemplars = find_exemplars(model, images, ids, default_layers(model), **exemplar_knobs(k=4, n_median=2))
        oip_dir = root / "oip" / variant / f"seed{seed}"
        maps_done = maps if maps is not None else list(range(128))
        write_oip_outputs(model, oip_dir, maps_done)
        tensors = torch.load(oip_dir / OIP_TENSORS, weights_only=True)
        ex = exemplars["relu3"]
        best = tensors["images"][:, 0, 0]
        ex_images = torch.stack([images[[position[int(j)] for j in ex.image_ids[m]]] for m in maps_done])
        dead = ~tensors["grad_seen"].flatten(1).any(dim=1)
        table = against_data(
            model, "relu3", maps_done, best, ex, ex_images, dead, conf_section("exemplars")["far_above"]
        )
        records += network_layers(variant, seed, exemplars, oip_dir, table)
    return records


def relu3_matching(n_maps: int = 128) -> pd.DataFrame:
    """A matching table as the compare stage writes it, for ``relu3`` only: map ``i`` of the first
    network matched to map ``n - 1 - i`` of the second (the other layers fall back to the same index)."""
    maps = np.arange(n_maps)
    ids = {"layer": "relu3", "variant_a": NETWORKS[0][0], "seed_a": NETWORKS[0][1]}
    ids |= {"variant_b": NETWORKS[1][0], "seed_b": NETWORKS[1][1]}
    return pd.DataFrame({"map_a": maps, "map_b": maps[::-1], "matched_corr": np.linspace(0.9, 0.1, n_maps)}).assign(
        **ids
    )


def build_atlas(prepared: PreparedData, root: Path) -> Path:
    records = apply_matching(build_study(prepared, root), relu3_matching())
    networks, rows, labels = figure_rows(records, "relu3", n_maps=3)
    figure = oip_beside_exemplars(networks, rows, labels, "relu3: OIP beside exemplars")
    return write_atlas("tiny", records, root / "atlas" / "tiny", MATCHING_NOTE, figure)
