"""DVC stage `compare`: histograms, entropy, divergences, certainty, class patterns and linear
probes for every variant and seed of the study, with seed statistics and bootstrap CIs.

Reads ``activations/<variant>/seed<k>/`` for ``study.variants × study.seeds`` and the prepared
images; writes ``compare/`` (``figures/*.png``, ``tables/*.csv`` — one tidy table per quantity —
and ``index.json`` listing every figure with a caption and every table) and the compact
``metrics/compare.json`` for ``dvc metrics show``. Then attaches each variant's figures and
metrics to its training run in MLflow.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cnnscope import tracking
from cnnscope.activations import ActivationSet
from cnnscope.analysis import StudyResults, compare_study
from cnnscope.config import Params, load_params, to_container
from cnnscope.data.prepared import MANIFEST_FILE, PreparedData
from cnnscope.errors import CnnscopeError, run_stage
from cnnscope.io import atomic_dir, atomic_write, provenance, write_json
from cnnscope.viz.study import render_study

METRICS = Path("metrics/compare.json")
TABLE_DOCS = {
    "layer_stats": "entropy (bits), sparsity, mean, std, information gain, JS vs input; per layer and group",
    "input_stats": "the same statistics of the input pixels per group",
    "histograms": "counts and probabilities on the shared bin edges (variant 'input', seed -1: pixels)",
    "divergences": "KL(variant‖reference) and JS between variants, same seed, smoothed histograms (bits)",
    "certainty": "softmax entropy, max/true-class probability, prediction per probe; means over the eval sample",
    "softmax": "class probabilities per variant, seed and probe",
    "linear_probe": "held-out accuracy of a logistic regression on pooled activations per layer",
    "similarity": "mean within-class and between-class cosine similarity of activations per layer",
    "fcp": "nodes of the deepest feature map active in all / any probe image of one class, Jaccard",
    "differences": "variant − reference of per-image quantities with two-level bootstrap CIs",
    "seed_summary": "mean ± std over seeds of every per-seed quantity",
}


def _open_sets(params: Params) -> dict[tuple[str, int], ActivationSet]:
    root = Path(params.extract.out_dir)
    wanted = [(v, s) for v in params.study.variants for s in params.study.seeds]
    missing = [f"{v}/seed{s}" for v, s in wanted if not (root / v / f"seed{s}" / "manifest.json").is_file()]
    if missing:
        found = sorted(str(p.parent.relative_to(root)) for p in root.glob("*/seed*/manifest.json"))
        raise CnnscopeError(
            f"no activations for {', '.join(missing)} under {root}/; found: {', '.join(found) or 'none'}. "
            "Run the extract stage first (dvc repro extract)."
        )
    return {(v, s): ActivationSet(root / v / f"seed{s}") for v, s in wanted}


def _write_outputs(res: StudyResults, out: Path, max_maps: int, record: dict[str, Any]) -> None:
    tables = []
    for name, table in res.tables.items():
        rel = f"tables/{name}.csv"
        with atomic_write(out / rel) as fh:
            table.to_csv(fh, index=False, float_format="%.6g")
        tables.append({"path": rel, "name": name, "description": TABLE_DOCS.get(name, name)})
    figures = render_study(res, out, max_maps)
    write_json(out / "index.json", {"figures": figures, "tables": tables, "provenance": record})


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
        {k: v for var in res.variants for k, v in _flatten(res.summary["variants"].get(var, {}), var).items()},
        [METRICS, *sorted((out / "figures").glob("*.png"))],
        uri=uri,
    )


def _flatten(tree: dict[str, Any], prefix: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name))
        elif isinstance(value, int | float) and value == value:  # skip NaN
            out[name] = float(value)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    uri = tracking.preflight(params.tracking.uri)  # before any work: fail in seconds, not minutes
    cfg = params.compare
    sets = _open_sets(params)
    data_dir = Path(params.data.out_dir)
    data = PreparedData.load(data_dir)
    res = compare_study(sets, data.images, cfg.bins, cfg.bootstrap, cfg.confidence, cfg.probe_test_fraction)
    manifest = data_dir / MANIFEST_FILE
    config = to_container(params)
    record = provenance(
        {"compare": config["compare"], "variants": params.study.variants, "seeds": params.study.seeds},
        manifest if manifest.is_file() else None,
    )
    out = Path(cfg.out_dir)
    with atomic_dir(out) as tmp:
        _write_outputs(res, tmp, cfg.max_maps, record)
    write_json(METRICS, res.summary)
    _record_run(params, res, out, uri)
    print(
        f"compare: {len(res.variants)} variants × {len(res.seeds)} seeds, {len(res.layers)} layers → {out}/, {METRICS}"
    )


if __name__ == "__main__":
    run_stage(main)
