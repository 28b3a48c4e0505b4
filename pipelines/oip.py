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
from typing import Any

from cnnscope import tracking
from cnnscope.config import Params, snapshot_steps, to_container
from cnnscope.errors import run_stage
from cnnscope.io import atomic_dir, file_sha256, provenance, write_json
from cnnscope.layout import OIP_TABLE, metrics_path, run_dir
from cnnscope.network_stage import load_network, network_args, write_no_maps


def main(argv: list[str] | None = None) -> None:
    params, variant, seed = network_args(__doc__.splitlines()[0] if __doc__ else None, argv)
    cfg = params.oip
    model, checkpoint = load_network(params, variant, seed)
    out_dir, metrics_file = run_dir(cfg.out_dir, variant, seed), metrics_path("oip", variant, seed)
    if cfg.layer is None and not model.conv_layers:  # decided before MLflow, the OIP code and matplotlib are imported
        return write_no_maps(out_dir, metrics_file, {"variant": variant, "seed": seed, "layer": None, "figures": []})
    uri = tracking.preflight(params.tracking.uri)  # before any work: fail in seconds, not minutes
    from cnnscope.data.prepared import PreparedData
    from cnnscope.oip.color import colour_sqrt
    from cnnscope.oip.run import TABLES, run_oips
    from cnnscope.viz.oip import render_oips

    # oip.decorrelate: the ascent works in the training split's decorrelated colour space
    colours = colour_sqrt(PreparedData.load(params.data.out_dir).split("train")[0]) if cfg.decorrelate else None
    # snapshots past oip.steps are taken at the last step, so a sweep over oip.steps just works
    run = run_oips(model, replace(cfg, snapshots=snapshot_steps(cfg)), colours)

    tag, result = f"{variant} seed{seed}", run.result
    record = provenance(to_container(params)["oip"], params.data.out_dir)
    record["checkpoint_sha256"] = file_sha256(checkpoint)
    with atomic_dir(out_dir) as tmp:
        figures = render_oips(tmp, result, run.table, run.nodes, run.focus, run.evolution_maps, tag)
        run.save(tmp)
        index = {"variant": variant, "seed": seed, "layer": result.layer, "figures": figures}
        write_json(tmp / "index.json", {**index, "tables": TABLES, "provenance": record})
    metrics = run.metrics()
    write_json(metrics_file, metrics)
    _record_run(checkpoint.parent, out_dir, metrics_file, metrics, params, uri, seed)
    print(
        f"oip {tag}: {len(result.maps)} maps of {result.layer}, {metrics['dead_maps']} dead, "
        f"median robustness {metrics['median_robustness']:.3f} → {out_dir}"
    )


def _record_run(
    model_dir: Path, out_dir: Path, metrics_path: Path, metrics: dict[str, Any], params: Params, uri: str, seed: int
) -> None:
    """This execution as its own MLflow run (under the variant's training run, else the study
    run), with its settings, so every point of a sweep over ``oip.*`` stays reviewable."""
    variant, config = model_dir.parent.name, to_container(params)
    tracking.record_stage(
        params.tracking.experiment,
        "oip",
        f"oip-{variant}-seed{seed}",
        lambda: (
            tracking.model_run_id(model_dir)
            or tracking.study_run_for(params.tracking.experiment, params.study.name, config, uri)
        ),
        {"oip": config["oip"], "variant": {"name": variant, "seed": seed}},
        {f"oip/{k}": float(v) for k, v in metrics.items() if isinstance(v, int | float)},
        [*sorted(out_dir.glob("*.png")), out_dir / OIP_TABLE, metrics_path],
        {"variant": variant, "seed": str(seed)},
        uri,
    )


if __name__ == "__main__":
    run_stage(main)
