"""``oip`` stage: OIPs for one trained network (variant × seed).

Reads ``params.yaml`` (section ``oip``), loads ``models/<variant>/seed<k>/best.ckpt``, optimises
all maps of the target layer as one batch plus every node of one focus map, and writes
``oip/<variant>/seed<k>/`` (figures, ``maps.csv``, ``oips.pt``, ``index.json``) and
``metrics/oip/<variant>_seed<k>.json`` — both atomically. Figures and metrics are attached to the
variant's MLflow run when one is recorded next to the checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from cnnscope import tracking
from cnnscope.config import Params, check_variant, load_params, to_container, variant_model_config
from cnnscope.data.prepared import PreparedData
from cnnscope.errors import run_stage
from cnnscope.io import atomic_dir, atomic_write, file_sha256, provenance, run_dir, run_name, write_json
from cnnscope.models import best_device, load_for_config
from cnnscope.oip import OIPSettings, generate_node_oips, generate_oips, map_table, pick_maps, summary
from cnnscope.oip.color import colour_sqrt
from cnnscope.oip.generate import layer_shape
from cnnscope.viz.oip import render_oips

#: Maps followed step by step in ``evolution.png`` unless ``oip.evolution_maps`` names them.
EVOLUTION_MAPS = 4
TABLES = {"maps.csv": "per-map OIP numbers", "oips.pt": "OIP tensors, histories, snapshots"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument("--variant", required=True, help="study variant, e.g. benchmark")
    parser.add_argument("--seed", type=int, required=True, help="training seed of the variant")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    check_variant(params.study, args.variant)
    uri = tracking.preflight(params.tracking.uri)  # before any work: fail in seconds, not minutes
    cfg = params.oip
    model_dir = run_dir(params.trainer.models_dir, args.variant, args.seed)
    checkpoint = model_dir / "best.ckpt"
    expected = variant_model_config(params, args.variant).name.value
    rerun = f"dvc repro train@{args.variant}-{args.seed}"
    model = load_for_config(checkpoint, expected, rerun, map_location=best_device())

    # oip.decorrelate: the ascent works in the training split's decorrelated colour space
    colours = colour_sqrt(PreparedData.load(params.data.out_dir).split("train")[0]) if cfg.decorrelate else None
    settings = OIPSettings.from_config(cfg, colours)
    result = generate_oips(model, cfg.layer, cfg.maps or None, settings, cfg.snapshots)
    table = map_table(result, cfg.convergence_tol)
    focus = pick_maps(table, [] if cfg.focus_map is None else [cfg.focus_map], 1, "focus_map")[0]
    evolution_maps = pick_maps(table, cfg.evolution_maps, EVOLUTION_MAPS, "evolution_maps")
    spatial = len(layer_shape(model, result.layer)) >= 3  # a dense layer has no nodes to map
    nodes = generate_node_oips(model, focus, result.layer, settings) if spatial else None

    tag = f"{args.variant} seed{args.seed}"
    out_dir = run_dir(cfg.out_dir, args.variant, args.seed)
    record = provenance(to_container(params)["oip"], params.data.out_dir)
    record["checkpoint_sha256"] = file_sha256(checkpoint)
    with atomic_dir(out_dir) as tmp:
        figures = render_oips(tmp, result, table, nodes, focus, evolution_maps, tag)
        with atomic_write(tmp / "maps.csv") as fh:
            table.to_csv(fh, index=False, float_format="%.6g")
        with atomic_write(tmp / "oips.pt", binary=True) as fh:
            torch.save(result.tensors(nodes), fh)
        index = {"variant": args.variant, "seed": args.seed, "layer": result.layer, "figures": figures}
        write_json(tmp / "index.json", {**index, "tables": TABLES, "provenance": record})
    metrics = {**summary(table), "layer": result.layer, "focus_map": focus}
    metrics_path = Path("metrics/oip") / f"{run_name(args.variant, args.seed)}.json"
    write_json(metrics_path, metrics)
    _record_run(model_dir, out_dir, metrics_path, metrics, params, uri, args.seed)
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
            tracking.read_run_id(model_dir)
            or tracking.study_run_for(params.tracking.experiment, params.study.name, config, uri)
        ),
        {"oip": config["oip"], "variant": {"name": variant, "seed": seed}},
        {f"oip/{k}": float(v) for k, v in metrics.items() if isinstance(v, int | float)},
        [*sorted(out_dir.glob("*.png")), out_dir / "maps.csv", metrics_path],
        {"variant": variant, "seed": str(seed)},
        uri,
    )


if __name__ == "__main__":
    run_stage(main)
