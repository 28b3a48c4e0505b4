"""The report's "What the maps extract, in words" section: class selectivity of every map.

From the ``exemplars`` stage's top images per map (``exemplars/<variant>/seed<k>/exemplars.pt``)
and their labels in the prepared data: per map a class selectivity and dominant class
(:mod:`cnnscope.analysis.selectivity`), per layer the mean per variant with the seed-level
contrasts and the untrained control, and a generated paragraph per layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pandas as pd

from cnnscope.activations.exemplars import load_exemplars
from cnnscope.analysis.selectivity import layer_contrasts, layer_summary, map_selectivity, paragraph
from cnnscope.config import Params
from cnnscope.data.prepared import PreparedData
from cnnscope.layout import EXEMPLARS, run_dir


class _Report(Protocol):
    def add(self, *lines: str) -> None: ...

    def table(self, frame: pd.DataFrame) -> None: ...


def map_table(params: Params, root: Path, data: PreparedData) -> pd.DataFrame:
    """Every map's selectivity, for every variant × seed whose exemplars exist."""
    frames = []
    for variant in params.study.variants:
        for seed in params.study.seeds:
            path = run_dir(root / params.exemplars.out_dir, variant, seed) / EXEMPLARS
            if not path.is_file():
                continue
            for layer, ex in load_exemplars(path).items():
                labels = data.labels[ex.image_ids].numpy()
                frame = map_selectivity(labels, ex.values.numpy(), data.num_classes)
                frames.append(frame.assign(variant=variant, seed=seed, layer=layer))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def selectivity_section(report: _Report, params: Params, root: Path) -> None:
    data = PreparedData.load(root / params.data.out_dir)
    maps = map_table(params, root, data)
    k = params.exemplars.k
    report.add(
        "## What the maps extract, in words",
        f"From the exemplars stage's top {k} test images per map (params `exemplars`): a map's **class "
        f"selectivity** is 1 − H(p)/log₂ min({k}, classes) of its top images' class histogram p (1: all one class), "
        f"its dominant class the most common one; *mostly one class*: more than half its top {k} share a class. "
        "Maps silent on data are left out. Differences are paired per seed; the untrained network is the control "
        "(random maps also gather few classes by chance).",
    )
    if maps.empty:
        report.add("No exemplars were found (run the `exemplars` stage).")
        return
    summary = layer_summary(maps)
    nulls = [v for v in params.study.variants if not params.study.variant_specs[v].train]
    contrasts = layer_contrasts(summary, params.study.contrasts, nulls[0] if nulls else None, params.compare.confidence)
    shown = summary.groupby(["layer", "variant"], sort=False)[["selectivity", "mostly_one_class"]].agg(
        lambda s: f"{s.mean():.3f}" + (f" ± {s.std(ddof=1):.3f}" if len(s) > 1 else "")
    )
    report.table(shown.reset_index())
    for layer in dict.fromkeys(summary["layer"]):
        report.add(paragraph(str(layer), summary, contrasts, data.classes, maps))
