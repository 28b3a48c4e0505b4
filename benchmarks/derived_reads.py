"""Benchmark: what recomputing derived layers on every read costs the `compare` analyses.

Runs :func:`cnnscope.analysis.compare_study` on a finished pipeline's activations (the default
study after ``dvc repro``) with :meth:`ActivationSet.array` timed, and reports the seconds spent
recomputing derived layers (recipes) against the whole analysis, in one run. Also times one read
of every derived layer of every set. Nothing is written; MLflow is not touched.

    python benchmarks/derived_reads.py [--params params.yaml]

Prints one JSON object.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict

import numpy as np
import torch

from cnnscope.activations import ActivationSet
from cnnscope.analysis import Roles, compare_study
from cnnscope.analysis.measures import MeasureSettings, split_reference_heads
from finished_study import finished_study


def main() -> None:
    params, every, images = finished_study(__doc__.splitlines()[0] if __doc__ else None)
    sets, _ = split_reference_heads(every)  # compared layer by layer, as in the stage (no pixel mlp)

    spent: dict[str, float] = defaultdict(float)
    reads = 0
    original = ActivationSet.array

    def timed_array(self: ActivationSet, group: str, layer: str) -> np.ndarray:
        nonlocal reads
        start = time.perf_counter()
        out = original(self, group, layer)
        if layer in self.manifest["derived"]:
            spent[layer] += time.perf_counter() - start
            reads += 1
        return out

    ActivationSet.array = timed_array  # type: ignore[method-assign]
    cfg = params.compare
    start = time.perf_counter()
    compare_study(
        sets,
        images,
        Roles.from_study(params.study),
        cfg.bins,
        cfg.bootstrap,
        cfg.confidence,
        MeasureSettings.from_config(cfg).network(),
    )
    total = time.perf_counter() - start
    ActivationSet.array = original  # type: ignore[method-assign]

    once: dict[str, float] = defaultdict(float)
    for aset in sets.values():
        for group in aset.manifest["groups"]:
            for layer in aset.manifest["derived"]:
                start = time.perf_counter()
                aset.array(group, layer)
                once[layer] += time.perf_counter() - start
    derived = sum(spent.values())
    print(
        json.dumps(
            {
                "benchmark": "derived_reads",
                "sets": len(sets),
                "eval_images": len(next(iter(sets.values())).group("eval")),
                "threads": torch.get_num_threads(),
                "compare_study_s": round(total, 2),
                "derived_reads": reads,
                "derived_read_s": round(derived, 2),
                "fraction_of_compare": round(derived / total, 3),
                "one_read_of_every_derived_layer_s": round(sum(once.values()), 2),
                "one_read_by_layer_s": {k: round(v, 3) for k, v in once.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
