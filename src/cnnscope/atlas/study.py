"""A study as the atlas shows it: every network's layers, matched to the study's first network
and with the followed maps' OIPs over training, and the overview figure (each variant's OIP
beside its top exemplars).

Both the ``atlas`` stage and the ``report`` stage read it: the report draws the overview figure
itself rather than copying it out of the atlas site, so it need not wait for the site to be
written (the two are the last stages of a study and run side by side; benchmarks/README.md,
"Per-stage fixed costs").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from cnnscope.activations.exemplars import load_exemplars
from cnnscope.atlas.collect import (
    MATCHING_TABLE,
    apply_matching,
    channel_sources,
    figure_rows,
    network_layers,
    with_trajectories,
)
from cnnscope.atlas.site import AtlasError, NetworkLayer
from cnnscope.io import read_table
from cnnscope.layout import AGAINST_DATA, EXEMPLARS, best_checkpoint, run_dir
from cnnscope.models import load_model
from cnnscope.viz.atlas import oip_beside_exemplars

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from cnnscope.config import Params


def study_records(params: Params, trajectories: bool = True) -> list[NetworkLayer]:
    """Every layer of every network with feature maps: its exemplars, OIPs (``study.oip_seeds``),
    matching to the first network (the compare stage's ``matching.csv``) and, with
    ``trajectories``, the followed maps' OIPs over training. Raises :class:`AtlasError` when no
    network of the study has feature maps."""
    records = []
    for variant in params.study.variants:
        for seed in params.study.seeds:
            folder = run_dir(params.exemplars.out_dir, variant, seed)
            if not json.loads((folder / "index.json").read_text())["layers"]:  # a network without feature maps (mlp)
                continue
            exemplars = load_exemplars(folder / EXEMPLARS)
            if seed not in params.study.oip_seeds:  # exemplars only: no OIPs were made for this seed
                records += network_layers(variant, seed, exemplars)
                continue
            against = pd.read_csv(folder / AGAINST_DATA)
            records += network_layers(variant, seed, exemplars, run_dir(params.oip.out_dir, variant, seed), against)
    if not records:
        raise AtlasError(
            f"no network of study '{params.study.name}' has feature maps (study.variants: "
            f"{', '.join(params.study.variants)}): the atlas shows maps, so there is nothing to draw; add a "
            "convolutional variant to study.variants"
        )
    first = records[0]  # the layer order of the study's architecture, from its first network with maps
    model = load_model(best_checkpoint(params.trainer.models_dir, first.variant, first.seed))
    sources = channel_sources(model, list(dict.fromkeys(r.layer for r in records)))
    records = apply_matching(records, read_table(Path(params.compare.out_dir) / MATCHING_TABLE), sources)
    if trajectories:
        records = with_trajectories(records, params.trajectory.out_dir)  # the map pages' "OIP over training"
    return records


def overview_figure(params: Params, records: list[NetworkLayer]) -> Figure:
    """The top ``atlas.figure_maps`` maps of the OIP layer, each variant's OIP (first OIP seed)
    beside the receptive-field crops of its top exemplars."""
    oip_layer = next((r.layer for r in records if r.oips is not None), records[-1].layer)
    networks, rows, labels = figure_rows(
        [r for r in records if r.seed == params.study.oip_seeds[0]], oip_layer, params.atlas.figure_maps
    )
    return oip_beside_exemplars(networks, rows, labels, f"{oip_layer}: OIP beside its top exemplars")
