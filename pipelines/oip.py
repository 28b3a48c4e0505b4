"""``oip`` stage: OIPs for one trained network (variant × seed).

Reads ``params.yaml`` (section ``oip``), loads ``models/<variant>/seed<k>/best.ckpt``, optimises
all maps of the target layer as one batch plus every node of one focus map, and writes
``oip/<variant>/seed<k>/`` (figures, ``maps.csv``, ``oips.pt``, ``index.json``) and
``metrics/oip/<variant>_seed<k>.json`` — both atomically. Figures and metrics are attached to the
variant's MLflow run when one is recorded next to the checkpoint.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnscope import tracking
from cnnscope.config import Params, snapshot_steps, to_container
from cnnscope.errors import run_stage
from cnnscope.io import atomic_dir, file_sha256, provenance, write_json
from cnnscope.layout import OIP_TABLE, metrics_path, run_dir
from cnnscope.network_stage import load_network, write_no_maps
from cnnscope.stage_args import network_args

if TYPE_CHECKING:  # torch: imported by load_network, after --help
    from cnnscope.models import LayeredCNN


def main(argv: list[str] | None = None) -> None:
    params, variant, seed = network_args(__doc__, argv)
    cfg = params.oip
    model, checkpoint = load_network(params, variant, seed)
    out_dir, metrics_file = run_dir(cfg.out_dir, variant, seed), metrics_path("oip", variant, seed)
    if cfg.layer is None and not model.conv_layers:  # decided before MLflow, the OIP code and matplotlib are imported
        return write_no_maps(out_dir, metrics_file, {"variant": variant, "seed": seed, "layer": None, "figures": []})
    # the store before any work (fail in seconds, not minutes); the run is FINISHED only with the stage
    with tracking.stage_tracking(params.tracking.experiment, params.tracking.uri) as run:
        _oips(params, variant, seed, model, checkpoint, run)


def _oips(
    params: Params, variant: str, seed: int, model: LayeredCNN, checkpoint: Path, run: tracking.StageTracking
) -> None:
    cfg = params.oip
    out_dir, metrics_file = run_dir(cfg.out_dir, variant, seed), metrics_path("oip", variant, seed)
    from cnnscope.data.prepared import PreparedData
    from cnnscope.oip.color import colour_sqrt
    from cnnscope.oip.run import TABLES, run_oips
    from cnnscope.viz.oip import render_oips

    # oip.decorrelate: the ascent works in the training split's decorrelated colour space
    colours = colour_sqrt(PreparedData.load(params.data.out_dir).split("train")[0]) if cfg.decorrelate else None
    # snapshots past oip.steps are taken at the last step, so a sweep over oip.steps just works
    oips = run_oips(model, replace(cfg, snapshots=snapshot_steps(cfg)), colours)

    tag, result = f"{variant} seed{seed}", oips.result
    record = provenance(to_container(params)["oip"], params.data.out_dir)
    record["checkpoint_sha256"] = file_sha256(checkpoint)
    with atomic_dir(out_dir) as tmp:
        figures = render_oips(tmp, result, oips.table, oips.nodes, oips.focus, oips.evolution_maps, tag)
        oips.save(tmp)
        index = {"variant": variant, "seed": seed, "layer": result.layer, "figures": figures}
        write_json(tmp / "index.json", {**index, "tables": TABLES, "provenance": record})
    metrics = oips.metrics()
    write_json(metrics_file, metrics)
    _record_run(run, checkpoint.parent, out_dir, metrics_file, metrics, params, seed)
    print(
        f"oip {tag}: {len(result.maps)} maps of {result.layer}, {metrics['dead_maps']} dead, "
        f"median robustness {metrics['median_robustness']:.3f} → {out_dir}"
    )


def _record_run(
    run: tracking.StageTracking,
    model_dir: Path,
    out_dir: Path,
    metrics_path: Path,
    metrics: dict[str, Any],
    params: Params,
    seed: int,
) -> None:
    """This execution as its own MLflow run (under the variant's training run, else the study
    run), with its settings, so every point of a sweep over ``oip.*`` stays reviewable."""
    variant, config = model_dir.parent.name, to_container(params)
    run.record(
        "oip",
        f"oip-{variant}-seed{seed}",
        lambda: tracking.model_run_id(model_dir) or run.study_run(params.study.name, config),
        {"oip": config["oip"], "variant": {"name": variant, "seed": seed}},
        {f"oip/{k}": float(v) for k, v in metrics.items() if isinstance(v, int | float)},
        [*sorted(out_dir.glob("*.png")), out_dir / OIP_TABLE, metrics_path],
        {"variant": variant, "seed": str(seed)},
    )


if __name__ == "__main__":
    run_stage(main)
