"""Benchmark: do OIPs converge, and at what cost, with the pixel recipe vs the spectral one?

Runs the oip stage's map OIPs (:func:`cnnscope.oip.generate_oips`, all maps × restarts ×
wavelengths in one batch, forward pass stopped at the target layer) on one trained checkpoint,
once per *recipe*, and reports per recipe what ``metrics/oip/*.json`` reports — median robustness
across restarts, fraction of maps converged, fraction dead — plus seconds per ascent step and the
ratio to the first recipe.

A recipe is a name and ``key=value`` overrides of the ``oip`` section of ``--params``. Always run:
``pixel`` (``conf/oip/default.yaml``: the seed article's recipe with the default study's settings) and
``preset`` (the ``oip`` section of ``--params`` as it is); each ``--recipe`` adds one:

    python -m cnnscope.compose experiment=cifar10_frog && cnnscope repro train@benchmark-0
    python benchmarks/oip_parameterization.py --variant benchmark --seed 0
    python benchmarks/oip_parameterization.py --recipe 'white=decorrelate=false'

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from cnnscope.config import load_params, to_container, validate
from cnnscope.data.prepared import PreparedData
from cnnscope.models import best_device, load_model
from cnnscope.oip import generate_oips, map_table, summary
from cnnscope.oip.color import colour_sqrt
from cnnscope.oip.generate import OIPSettings
from cnnscope.oip.metrics import cross_map_similarity, shared_start_similarity
from cnnscope.runtime import keep_freed_memory

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--variant", default="benchmark")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--device", help="default: the GPU when there is one, else the CPU")
    parser.add_argument(
        "--recipe", action="append", default=[], metavar="NAME=K=V ...", help="a named set of oip overrides"
    )
    return parser.parse_args()


def recipes(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Name → overrides of the ``oip`` section (values parsed as YAML): ``pixel``, ``preset``, then
    each ``--recipe``."""
    pixel = yaml.safe_load((REPO / "conf" / "oip" / "default.yaml").read_text())
    out: dict[str, dict[str, Any]] = {"pixel": pixel, "preset": {}}
    for spec in args.recipe:
        name, _, rest = spec.partition("=")
        pairs = (item.split("=", 1) for item in rest.split())
        out[name] = {key: yaml.safe_load(value) for key, value in pairs}
    return out


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()

    params = load_params(args.params)
    device = torch.device(args.device) if args.device else best_device()
    checkpoint = Path(params.trainer.models_dir) / args.variant / f"seed{args.seed}" / "best.ckpt"
    model = load_model(checkpoint, map_location=device)
    raw = to_container(params)
    results: dict[str, Any] = {}
    for name, overrides in recipes(args).items():
        candidate = validate({**raw, "oip": {**raw["oip"], **overrides}})
        cfg = candidate.oip
        # the settings exactly as the oip stage builds them (pipelines/oip.py, cnnscope.oip.run)
        colours = colour_sqrt(PreparedData.load(candidate.data.out_dir).split("train")[0]) if cfg.decorrelate else None
        settings = OIPSettings.from_config(cfg, colours)
        start = time.perf_counter()
        result = generate_oips(model, cfg.layer, cfg.maps or None, settings, cfg.snapshots)
        seconds = time.perf_counter() - start
        table = map_table(result, cfg.convergence_tol)
        stats = summary(table)
        live = ~torch.tensor(table["dead"].to_numpy(dtype=bool))
        results[name] = {
            "oip": {k: v for k, v in to_container(candidate)["oip"].items() if k not in ("out_dir",)},
            "candidates": len(result.maps) * settings.candidates,
            "median_robustness": stats["median_robustness"],
            # the null: two different maps' OIPs from different starts; and two different maps' OIPs
            # from the same start (the null of benchmarks/README.md's earlier rows: a faint start
            # makes all alike)
            "cross_map_similarity": cross_map_similarity(result.images, live),
            "shared_start_similarity": shared_start_similarity(result.images, live),
            "converged_fraction": stats["converged_fraction"],
            "dead_fraction": stats["dead_fraction"],
            "median_best_activation": stats["median_best_activation"],
            "seconds": seconds,
            "seconds_per_step": seconds / cfg.steps,
        }
    first = next(iter(results.values()))["seconds_per_step"]
    for entry in results.values():
        entry["step_cost_ratio"] = entry["seconds_per_step"] / first
    print(
        json.dumps(
            {
                "checkpoint": str(checkpoint),
                "layer": result.layer,
                "device": str(device),
                "threads": args.threads,
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "recipes": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
