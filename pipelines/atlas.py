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

from pathlib import Path

from cnnscope import tracking
from cnnscope.config import Params, to_container
from cnnscope.errors import run_stage
from cnnscope.io import write_json
from cnnscope.layout import stage_metrics
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
    from cnnscope.atlas import folder_size, write_atlas
    from cnnscope.atlas.collect import MATCHING_NOTE
    from cnnscope.atlas.study import overview_figure, study_records

    records = study_records(params)
    out = Path(params.atlas.out_dir) / params.study.name
    index = write_atlas(params.study.name, records, out, MATCHING_NOTE, overview_figure(params, records))
    size, files = folder_size(out)
    write_json(stage_metrics("atlas"), {"bytes": size, "files": files, "networks": len(records)})
    print(f"atlas: {files} files, {size / 1e6:.1f} MB → {index}")
    return out


if __name__ == "__main__":
    run_stage(main)
