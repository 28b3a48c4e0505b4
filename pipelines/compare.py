"""DVC stage `compare`: histograms, entropy, divergences, certainty, class patterns and linear
probes for every variant and seed of the study, with seed statistics and bootstrap CIs; the
scale-free statistics, CKA, map matching, spatial probes, class-pattern chance levels and the
claims with seed-level verdicts (:func:`cnnscope.analysis.measure_summary.measure_study`).

Reads ``activations/<variant>/seed<k>/`` and what the ``measures@<variant>-<seed>`` stages computed
from each network alone (``measures/<variant>/seed<k>/``) and its histograms on the shared bins
(``histograms/<variant>/seed<k>/``, the ``histograms@`` stages) for ``study.variants × study.seeds``, the prepared
images and the first seed's ``models/<variant>/seed<k>/initial.ckpt`` (kernels before training);
writes ``compare/`` (``figures/*.png``, ``tables/*.csv`` — one tidy table per quantity —
and ``index.json`` listing every figure with a caption and every table) and the compact
``metrics/compare.json`` for ``dvc metrics show`` and ``plots/compare/<variant>.csv`` for
``dvc plots``. Then records the execution as an MLflow run under the study's run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cnnscope import tracking
from cnnscope.config import Params, to_container
from cnnscope.errors import run_stage
from cnnscope.io import atomic_dir, provenance, write_json
from cnnscope.layout import HISTOGRAMS_ROOT, MEASURES_ROOT, stage_metrics
from cnnscope.stage_args import stage_args

if TYPE_CHECKING:
    from cnnscope.analysis import StudyResults

METRICS = stage_metrics("compare")
PROFILES = Path("plots/compare")  # `dvc plots diff`: each variant's layer profile, run vs run


def _record_run(run: tracking.StageTracking, params: Params, res: StudyResults, out: Path) -> None:
    """This execution as its own MLflow run under the study run, with its settings, figures and
    every variant's summary numbers, so each point of a sweep over ``compare.*`` stays reviewable."""
    from cnnscope.analysis.study.summary import flat_metrics

    config = to_container(params)
    run.record(
        "compare",
        "compare",
        lambda: run.study_run(params.study.name, config),
        {"compare": config["compare"], "study": {"variants": res.variants, "seeds": res.seeds}},
        {k: v for var in res.variants for k, v in flat_metrics(res.summary["variants"].get(var, {}), var).items()},
        [METRICS, *sorted((out / "figures").glob("*.png"))],
    )


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_args(__doc__, argv)
    # the store before any work (fail in seconds, not minutes); the run is FINISHED only with the stage
    with tracking.stage_tracking(params.tracking.experiment, params.tracking.uri) as run:
        _compare(params, run)


def _compare(params: Params, run: tracking.StageTracking) -> None:
    # torch, pandas, matplotlib: after --help, and in the runner's warm server rather than the
    # process DVC started
    from cnnscope.analysis import Roles
    from cnnscope.analysis.class_patterns import check_two_per_class
    from cnnscope.analysis.edge_filters import first_probe_stages
    from cnnscope.analysis.measures import split_reference_heads
    from cnnscope.analysis.study.figures import initial_kernels, kernel_changes
    from cnnscope.analysis.study.stage import full_study, open_histograms, open_networks, open_sets, write_tables
    from cnnscope.analysis.study.summary import write_layer_profiles
    from cnnscope.data.prepared import PreparedData
    from cnnscope.viz.study import render_compare

    cfg = params.compare
    sets, heads = split_reference_heads(open_sets(params.extract.out_dir, params.study.variants, params.study.seeds))
    check_two_per_class(next(iter(sets.values())).group("eval").labels)  # before any work, not after
    trained = [v for v in params.study.variants if params.study.variant_specs[v].train]
    initial = initial_kernels(Path(params.trainer.models_dir), trained, params.study.seeds[0])
    data_dir = Path(params.data.out_dir)
    networks = open_networks(MEASURES_ROOT, sets)  # the measures@ stages: each network's own numbers
    histograms = open_histograms(HISTOGRAMS_ROOT, sets)  # the histograms@ stages: on the shared bins
    images = PreparedData.load(data_dir).images
    res = full_study(sets, heads, images, Roles.from_study(params.study), cfg, networks, histograms)
    res.kernel_changes = kernel_changes(res.kernels, initial)

    study = {"variants": params.study.variants, "seeds": params.study.seeds, "contrasts": params.study.contrasts}
    record = provenance({"compare": to_container(params)["compare"], **study}, data_dir)
    out = Path(cfg.out_dir)
    with atomic_dir(out) as tmp:
        tables = write_tables(res.tables, tmp)
        figures = render_compare(res, tmp, cfg.max_maps, first_probe_stages(res.probe_images))
        index = {"figures": figures, "tables": tables, "feature_maps": res.feature_maps, "provenance": record}
        write_json(tmp / "index.json", index)
    write_json(METRICS, res.summary)
    write_layer_profiles(res.tables, res.variants, PROFILES)
    _record_run(run, params, res, out)
    print(
        f"compare: {len(res.variants)} variants × {len(res.seeds)} seeds, {len(res.layers)} layers → {out}/, {METRICS}"
    )


if __name__ == "__main__":
    run_stage(main)
