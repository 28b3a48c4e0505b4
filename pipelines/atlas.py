"""DVC stage `atlas`: the study's unit atlas, a static HTML site at ``atlas/<study>/index.html``.

Reads every network's ``exemplars/<variant>/seed<k>/`` and, for ``study.oip_seeds``,
``oip/<variant>/seed<k>/``, the first network's checkpoint (its layer order), and the
compare stage's ``compare/tables/matching.csv`` (which map of each network is matched to which map
of the first; a layer it does not cover is shown by the same index), and each network's
``trajectory/<variant>/seed<k>/`` (the followed maps' OIPs at every checkpoint); writes the
site (replaced as a whole, from a temporary folder) and ``metrics/atlas.json`` (its size), and
attaches the site to the study's MLflow run. MLflow's artefact view does not resolve relative
links, so the site also carries ``overview.html``, a self-contained page (the index table and the
OIP-beside-exemplars figure as ``data:`` images) that reads correctly inside MLflow.
"""

from __future__ import annotations

import json
from pathlib import Path

from cnnscope import tracking
from cnnscope.config import Params, to_container
from cnnscope.errors import run_stage
from cnnscope.io import read_table, write_json
from cnnscope.layout import AGAINST_DATA, EXEMPLARS, best_checkpoint, run_dir, stage_metrics
from cnnscope.stage_args import stage_args


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_args(__doc__, argv)
    # the store before any work, as every stage that logs to MLflow
    with tracking.stage_tracking(params.tracking.experiment, params.tracking.uri) as run:
        out = _atlas(params)
        # the atlas on disk is the product, tracking a view of it: a failure here only warns
        run.attach_to_study(params.study.name, to_container(params), "atlas", files=[out], artifact_path="atlas")


def _atlas(params: Params) -> Path:
    """Write the atlas site and ``metrics/atlas.json``; returns the site's folder."""
    # torch, pandas, matplotlib: after --help, and in the runner's warm server rather than the
    # process DVC started
    import pandas as pd

    from cnnscope.activations.exemplars import load_exemplars
    from cnnscope.atlas import folder_size, write_atlas
    from cnnscope.atlas.collect import (
        MATCHING_NOTE,
        MATCHING_TABLE,
        apply_matching,
        channel_sources,
        figure_rows,
        network_layers,
        with_trajectories,
    )
    from cnnscope.atlas.site import AtlasError
    from cnnscope.models import load_model
    from cnnscope.viz.atlas import oip_beside_exemplars

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
    records = with_trajectories(records, params.trajectory.out_dir)  # the followed maps' "OIP over training"
    out = Path(params.atlas.out_dir) / params.study.name
    oip_layer = next((r.layer for r in records if r.oips is not None), records[-1].layer)
    networks, rows, labels = figure_rows(
        [r for r in records if r.seed == params.study.oip_seeds[0]], oip_layer, params.atlas.figure_maps
    )
    figure = oip_beside_exemplars(networks, rows, labels, f"{oip_layer}: OIP beside its top exemplars")
    index = write_atlas(params.study.name, records, out, MATCHING_NOTE, figure)
    size, files = folder_size(out)
    write_json(stage_metrics("atlas"), {"bytes": size, "files": files, "networks": len(records)})
    print(f"atlas: {files} files, {size / 1e6:.1f} MB → {index}")
    return out


if __name__ == "__main__":
    run_stage(main)
