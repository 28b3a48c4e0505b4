"""Benchmark: what the issue-13 measures (scale-free statistics, CKA, map matching, spatial probes,
class-pattern chance levels, claims) add to the `compare` stage, as a ratio in one run.

On a finished pipeline's activations (the default study after ``dvc repro``), times the stage's
earlier work — :func:`cnnscope.analysis.compare_study` and its figures — and then the measures the
stage now adds (:func:`cnnscope.analysis.measure_summary.measure_study` and the CKA heatmap), in one
process on the same data. Goal: ``ratio`` = (earlier + measures) / earlier ≤ 2. Figures go to a
temporary folder; nothing in the repository is written and MLflow is not touched.

    python benchmarks/compare_measures.py [--params params.yaml]

Prints one JSON object.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from cnnscope.analysis import Roles, compare_study
from cnnscope.analysis.histograms import pooled_pixels
from cnnscope.analysis.measure_summary import measure_study
from cnnscope.analysis.measures import MeasureSettings, split_reference_heads
from cnnscope.viz.measures import render_measures
from cnnscope.viz.study import render_study
from finished_study import finished_study


def main() -> None:
    params, every, images = finished_study(__doc__.splitlines()[0] if __doc__ else None)
    cfg = params.compare
    sets, heads = split_reference_heads(every)
    roles = Roles.from_study(params.study)
    settings = MeasureSettings.from_config(cfg)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        res = compare_study(sets, images, roles, cfg.bins, cfg.bootstrap, cfg.confidence, settings.network())
        render_study(res, Path(tmp), cfg.max_maps)
        earlier = time.perf_counter() - start

        start = time.perf_counter()
        ids = torch.as_tensor(next(iter(sets.values())).group("eval").sample_ids, dtype=torch.long)
        extra = measure_study(
            sets, pooled_pixels(images[ids]), res.layers, res.feature_maps, res.classes, res.tables,
            params.study.contrasts, settings, cfg.bootstrap, heads,
        )  # fmt: skip
        render_measures(extra.tables["cka_overview"], Path(tmp))
        measures = time.perf_counter() - start
    print(
        json.dumps(
            {
                "benchmark": "compare_measures",
                "networks": len(sets),
                "eval_images": len(ids),
                "layers": len(res.layers),
                "threads": torch.get_num_threads(),
                "earlier_compare_s": round(earlier, 2),
                "measures_s": round(measures, 2),
                "ratio": round((earlier + measures) / earlier, 3),
                "goal": "ratio <= 2",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
