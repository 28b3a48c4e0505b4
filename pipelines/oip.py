"""``oip`` stage: OIPs for one trained network (variant × seed).

Reads ``params.yaml`` (section ``oip``), loads ``models/<variant>/seed<k>/best.ckpt``, optimises
all maps of the target layer as one batch plus every node of one focus map, and writes
``oip/<variant>/seed<k>/`` (figures, ``maps.csv``, ``oips.pt``, ``index.json``) and
``metrics/oip/<variant>_seed<k>.json`` — both atomically. Figures and metrics are attached to the
variant's MLflow run when one is recorded next to the checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from cnnscope import tracking
from cnnscope.config import ConfigError, OIPConfig, Params, load_params, to_container
from cnnscope.data.prepared import MANIFEST_FILE
from cnnscope.errors import run_stage
from cnnscope.io import atomic_dir, atomic_write, provenance, write_json
from cnnscope.models import LayeredCNN, best_device, load_model
from cnnscope.oip import (
    NodeOIPResult,
    OIPError,
    OIPResult,
    OIPSettings,
    cross_map_similarity,
    generate_node_oips,
    generate_oips,
    map_table,
    summary,
)
from cnnscope.oip.generate import layer_shape
from cnnscope.viz import oip as viz
from cnnscope.viz import save_figure

EVOLUTION_MAPS = 4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument("--variant", required=True, help="study variant, e.g. benchmark")
    parser.add_argument("--seed", type=int, required=True, help="training seed of the variant")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_params(args.params)
    if args.variant not in params.study.variants:
        raise ConfigError(f"unknown variant {args.variant!r}; study.variants are: {', '.join(params.study.variants)}")
    cfg = params.oip
    model_dir = Path(params.trainer.models_dir) / args.variant / f"seed{args.seed}"
    checkpoint = model_dir / "best.ckpt"
    model = load_model(checkpoint, map_location=best_device())

    result = _run_maps(model, cfg)
    table = map_table(result, cfg.convergence_tol)
    focus = _focus_map(cfg, table)
    evolution_maps = _evolution_maps(cfg, table)
    nodes = _run_nodes(model, cfg, result, focus)

    tag = f"{args.variant} seed{args.seed}"
    out_dir = Path(cfg.out_dir) / args.variant / f"seed{args.seed}"
    manifest = Path(params.data.out_dir) / MANIFEST_FILE
    record = provenance(to_container(params)["oip"], manifest if manifest.is_file() else None)
    record["checkpoint_sha256"] = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    with atomic_dir(out_dir) as tmp:
        figures = _figures(tmp, result, table, nodes, focus, evolution_maps, tag)
        with atomic_write(tmp / "maps.csv") as fh:
            table.to_csv(fh, index=False, float_format="%.6g")
        with atomic_write(tmp / "oips.pt", binary=True) as fh:
            torch.save(_tensors(result, nodes), fh)
        write_json(
            tmp / "index.json",
            {
                "variant": args.variant,
                "seed": args.seed,
                "layer": result.layer,
                "figures": figures,
                "tables": {"maps.csv": "per-map OIP numbers", "oips.pt": "OIP tensors, histories, snapshots"},
                "provenance": record,
            },
        )
    metrics = _metrics(table, result, focus)
    metrics_path = Path("metrics/oip") / f"{args.variant}_seed{args.seed}.json"
    write_json(metrics_path, metrics)
    _attach_to_run(model_dir, out_dir, metrics_path, metrics, params)
    print(
        f"oip {tag}: {len(result.maps)} maps of {result.layer}, {metrics['dead_maps']} dead, "
        f"median robustness {metrics['median_robustness']:.3f} → {out_dir}"
    )


def _settings(cfg: OIPConfig) -> OIPSettings:
    return OIPSettings(
        seeds=[cfg.noise_seed + i for i in range(cfg.seeds)],
        wavelengths=list(cfg.wavelengths),
        steps=cfg.steps,
        step_size=cfg.step_size,
        noise=cfg.noise.value,
        suppress=cfg.suppression.value,
        blur_sigma=cfg.blur_sigma,
        fourier_damping=cfg.fourier_damping,
        jitter=cfg.jitter,
    )


def _run_maps(model: LayeredCNN, cfg: OIPConfig) -> OIPResult:
    return generate_oips(model, cfg.layer, cfg.maps or None, _settings(cfg), cfg.snapshots)


def _run_nodes(model: LayeredCNN, cfg: OIPConfig, result: OIPResult, focus: int) -> NodeOIPResult | None:
    """Per-node OIPs of the focus map; a dense layer has no spatial nodes, so none."""
    if len(layer_shape(model, result.layer)) < 3:
        return None
    return generate_node_oips(model, focus, result.layer, _settings(cfg))


def _check_maps(key: str, wanted: list[int], available: list[int]) -> None:
    missing = [m for m in wanted if m not in available]
    if missing:
        raise OIPError(f"oip.{key}={missing} are not among the optimised maps; valid: {_ranges(available)}")


def _ranges(values: list[int]) -> str:
    return f"{values[0]}..{values[-1]}" if values == list(range(values[0], values[-1] + 1)) else str(values)


def _focus_map(cfg: OIPConfig, table: pd.DataFrame) -> int:
    """The configured focus map, else the most active map (live maps first)."""
    if cfg.focus_map is not None:
        _check_maps("focus_map", [cfg.focus_map], table["map"].tolist())
        return cfg.focus_map
    ranked = table.sort_values(["dead", "best_activation", "map"], ascending=[True, False, True])
    return int(ranked["map"].iloc[0])


def _evolution_maps(cfg: OIPConfig, table: pd.DataFrame) -> list[int]:
    if cfg.evolution_maps:
        _check_maps("evolution_maps", cfg.evolution_maps, table["map"].tolist())
        return list(cfg.evolution_maps)
    ranked = table.sort_values(["dead", "best_activation", "map"], ascending=[True, False, True])
    return [int(m) for m in ranked["map"].iloc[:EVOLUTION_MAPS]]


def _figures(
    out: Path,
    result: OIPResult,
    table: pd.DataFrame,
    nodes: NodeOIPResult | None,
    focus: int,
    evolution_maps: list[int],
    tag: str,
) -> list[dict[str, str]]:
    """Draw the figures (the per-node grid only for a spatial layer); returns the index entries."""
    rows = table.set_index("map")
    best_seed = [result.seeds.index(int(s)) for s in table["best_seed"]]
    best_wl = [result.wavelengths.index(int(w)) for w in table["best_wavelength"]]
    best_images = torch.stack([result.images[i, k, w] for i, (k, w) in enumerate(zip(best_seed, best_wl, strict=True))])
    labels = [f"{m}: {a:.2g}" for m, a in zip(table["map"], table["best_activation"], strict=True)]
    save_figure(
        viz.oip_grid(best_images.numpy(), labels, table["dead"].tolist(), f"{tag} {result.layer}"), out / "oip_grid.png"
    )

    index = [result.maps.index(m) for m in evolution_maps]
    steps = sorted(result.snapshots)
    snaps = torch.stack([torch.stack([result.snapshots[s][i, best_seed[i], best_wl[i]] for s in steps]) for i in index])
    hist = torch.stack([result.history[:, i, best_seed[i], best_wl[i]] for i in index])
    values = hist[:, steps]
    save_figure(
        viz.evolution(snaps.numpy(), steps, values.numpy(), hist.numpy(), [f"map {m}" for m in evolution_maps]),
        out / "evolution.png",
    )

    i = result.maps.index(focus)
    save_figure(
        viz.wavelength_comparison(
            result.start.transpose(0, 1).numpy(),
            result.images[i].transpose(0, 1).numpy(),
            result.final[i].T.numpy(),
            result.wavelengths,
            result.seeds,
            f"{tag} {result.layer} map {focus}",
        ),
        out / "wavelengths.png",
    )

    n_dead = int(rows["dead"].sum())
    entries = [
        {
            "file": "oip_grid.png",
            "caption": f"OIPs of all {len(result.maps)} maps of {result.layer} ({tag}), plain "
            f"and contrast-enhanced; {n_dead} dead maps framed red.",
        },
        {
            "file": "evolution.png",
            "caption": f"Evolution of the OIPs of maps {evolution_maps} ({tag}) at steps "
            f"{steps}, with the objective over all steps.",
        },
        {
            "file": "wavelengths.png",
            "caption": f"Map {focus} of {result.layer} ({tag}): starting noise and OIP per "
            f"wavelength {result.wavelengths} and seed.",
        },
    ]
    if nodes is not None:
        grid = viz.node_grid(
            nodes.images.numpy(),
            nodes.activation.numpy(),
            nodes.dead.numpy(),
            f"{tag} {result.layer} map {focus} per node",
        )
        save_figure(grid, out / "nodes.png")
        caption = f"One OIP per node of map {focus} of {result.layer} ({tag}), laid out as the map."
        entries.append({"file": "nodes.png", "caption": caption})
    return entries


def _tensors(result: OIPResult, nodes: NodeOIPResult | None) -> dict[str, Any]:
    tensors = {
        "layer": result.layer,
        "maps": result.maps,
        "seeds": result.seeds,
        "wavelengths": result.wavelengths,
        "images": result.images,
        "history": result.history,
        "grad_seen": result.grad_seen,
        "snapshots": result.snapshots,
    }
    if nodes is not None:
        tensors |= {"node_map": nodes.map, "node_images": nodes.images, "node_activation": nodes.activation}
    return tensors


def _metrics(table: pd.DataFrame, result: OIPResult, focus: int) -> dict[str, Any]:
    """The per-variant summary (for ``dvc metrics show`` and the report); per-map numbers are in ``maps.csv``."""
    cross = cross_map_similarity(result.images, ~torch.tensor(table["dead"].to_numpy(dtype=bool)))
    return {**summary(table, cross), "layer": result.layer, "focus_map": focus}


def _attach_to_run(model_dir: Path, out_dir: Path, metrics_path: Path, metrics: dict[str, Any], params: Params) -> None:
    """Attach figures and summary numbers to the variant's training run, if it has one."""
    run_id = tracking.read_run_id(model_dir)
    if run_id is None:
        return
    scalars = {f"oip/{k}": float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    try:
        tracking.log_metrics(run_id, scalars, params.tracking.uri)
        for path in [*sorted(out_dir.glob("*.png")), out_dir / "maps.csv", metrics_path]:
            tracking.log_artifact(run_id, path, params.tracking.uri, artifact_path="oip")
    except Exception as err:  # the results are written; a tracking outage must not lose them
        print(f"oip: warning: could not attach to MLflow run {run_id}: {err}", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
