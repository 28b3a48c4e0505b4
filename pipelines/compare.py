"""DVC stage `compare`: histograms, entropy, divergences, certainty, class patterns and linear
probes for every variant and seed of the study, with seed statistics and bootstrap CIs; the
scale-free statistics, CKA, map matching, spatial probes, class-pattern chance levels and the
claims with seed-level verdicts (:func:`cnnscope.analysis.measures.measure_study`).

Reads ``activations/<variant>/seed<k>/`` for ``study.variants × study.seeds``, the prepared
images and the first seed's ``models/<variant>/seed<k>/initial.ckpt`` (kernels before training);
writes ``compare/`` (``figures/*.png``, ``tables/*.csv`` — one tidy table per quantity — and
``index.json`` listing every figure with a caption and every table) and the compact
``metrics/compare.json`` for ``dvc metrics show``. Then attaches each variant's figures and
metrics to its training run in MLflow.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from cnnscope import tracking
from cnnscope.activations import ActivationSet
from cnnscope.analysis import Roles, StudyResults, compare_study
from cnnscope.analysis.class_patterns import check_two_per_class
from cnnscope.analysis.edge_filters import edge_filter_stages
from cnnscope.analysis.histograms import pooled_pixels
from cnnscope.analysis.measures import TABLES as MEASURE_TABLES
from cnnscope.analysis.measures import MeasureSettings, headline, measure_study, split_reference_heads
from cnnscope.analysis.study.figures import initial_kernels, kernel_changes
from cnnscope.analysis.study.summary import flat_metrics, layer_profiles
from cnnscope.analysis.study.tables import TABLES
from cnnscope.config import Params, load_params, to_container
from cnnscope.data.prepared import PreparedData
from cnnscope.errors import CnnscopeError, run_stage
from cnnscope.io import atomic_dir, atomic_write, provenance, run_dir, write_json
from cnnscope.viz.measures import render_measures
from cnnscope.viz.study import render_study

METRICS = Path("metrics/compare.json")
PROFILES = Path("plots/compare")


def _open_sets(params: Params) -> dict[tuple[str, int], ActivationSet]:
    root = Path(params.extract.out_dir)
    wanted = [(v, s) for v in params.study.variants for s in params.study.seeds]
    missing = [str(run_dir("", v, s)) for v, s in wanted if not (run_dir(root, v, s) / "manifest.json").is_file()]
    if missing:
        found = sorted(str(p.parent.relative_to(root)) for p in root.glob("*/seed*/manifest.json"))
        raise CnnscopeError(
            f"no activations for {', '.join(missing)} under {root}/; found: {', '.join(found) or 'none'}. "
            "Run the extract stage first (dvc repro extract)."
        )
    return {(v, s): ActivationSet(run_dir(root, v, s)) for v, s in wanted}


def _write_outputs(res: StudyResults, out: Path, max_maps: int, record: dict[str, Any]) -> None:
    tables = []
    for name, table in res.tables.items():
        rel = f"tables/{name}.csv"
        with atomic_write(out / rel) as fh:
            table.to_csv(fh, index=False, float_format="%.6g")
        tables.append({"path": rel, "name": name, "description": {**TABLES, **MEASURE_TABLES}.get(name, name)})
    probe = res.probe_images
    edges = edge_filter_stages(torch.from_numpy(probe[0])) if probe is not None and len(probe) else None
    figures = render_study(res, out, max_maps, edges) + render_measures(res.tables["cka_overview"], out)
    index = {"figures": figures, "tables": tables, "feature_maps": res.feature_maps, "provenance": record}
    write_json(out / "index.json", index)


def _record_run(params: Params, res: StudyResults, out: Path, uri: str) -> None:
    """This execution as its own MLflow run under the study run, with its settings, figures and
    every variant's summary numbers, so each point of a sweep over ``compare.*`` stays reviewable."""
    config = to_container(params)
    tracking.record_stage(
        params.tracking.experiment,
        "compare",
        "compare",
        lambda: tracking.study_run_for(params.tracking.experiment, params.study.name, config, uri),
        {"compare": config["compare"], "study": {"variants": res.variants, "seeds": res.seeds}},
        {k: v for var in res.variants for k, v in flat_metrics(res.summary["variants"].get(var, {}), var).items()},
        [METRICS, *sorted((out / "figures").glob("*.png"))],
        uri=uri,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    uri = tracking.preflight(params.tracking.uri)  # before any work: fail in seconds, not minutes
    cfg = params.compare
    sets, heads = split_reference_heads(_open_sets(params))
    check_two_per_class(next(iter(sets.values())).group("eval").labels)  # before any work, not after
    trained = [v for v in params.study.variants if params.study.variant_specs[v].train]
    initial = initial_kernels(Path(params.trainer.models_dir), trained, min(params.study.seeds))
    data_dir = Path(params.data.out_dir)
    data = PreparedData.load(data_dir)
    roles = Roles.from_study(params.study)
    res = compare_study(
        sets, data.images, roles, cfg.bins, cfg.bootstrap, cfg.confidence, cfg.linear_probe_test_fraction
    )
    ids = torch.as_tensor(next(iter(sets.values())).group("eval").sample_ids, dtype=torch.long)
    contrasts = roles.present(res.variants)
    extra = measure_study(
        sets, pooled_pixels(data.images[ids]), res.layers, res.feature_maps, res.classes, res.tables, contrasts,
        MeasureSettings.from_config(cfg), cfg.bootstrap, heads,
    )  # fmt: skip
    res.tables.update(extra.tables)
    res.kernel_changes = kernel_changes(res.kernels, initial)
    res.summary = headline(res.tables, res.variants, res.seeds, res.feature_maps, res.eval_images)
    study = {"variants": params.study.variants, "seeds": params.study.seeds, "contrasts": params.study.contrasts}
    record = provenance({"compare": to_container(params)["compare"], **study}, data_dir)
    out = Path(cfg.out_dir)
    with atomic_dir(out) as tmp:
        _write_outputs(res, tmp, cfg.max_maps, record)
    write_json(METRICS, res.summary)
    with atomic_dir(PROFILES) as tmp:  # `dvc plots diff`: each variant's layer profile, experiment vs experiment
        for variant, profile in layer_profiles(res.tables, res.variants).items():
            profile.to_csv(tmp / f"{variant}.csv", index=False)
    _record_run(params, res, out, uri)
    print(
        f"compare: {len(res.variants)} variants × {len(res.seeds)} seeds, {len(res.layers)} layers → {out}/, {METRICS}"
    )


if __name__ == "__main__":
    run_stage(main)
