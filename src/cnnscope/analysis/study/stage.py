"""The ``compare`` stage's steps as named library functions, so its script reads
load → compute → tables → render → write: open the study's activation sets, compute every table
(:func:`~cnnscope.analysis.study.compare_study` plus the issue-13 measures and the headline
summary), and write the tables with their index entries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from cnnscope.activations import ActivationSet
from cnnscope.analysis.histograms import pooled_pixels
from cnnscope.analysis.measure_summary import headline, measure_study
from cnnscope.analysis.measures import TABLES as MEASURE_TABLES
from cnnscope.analysis.measures import MeasureSettings
from cnnscope.analysis.network import ROWS, NetworkMeasures, load, network_measures
from cnnscope.analysis.shared_bins import load as load_counts
from cnnscope.analysis.study import EVAL, Roles, StudyResults, compare_study
from cnnscope.analysis.study.common import Sets
from cnnscope.analysis.study.tables import TABLES
from cnnscope.errors import CnnscopeError
from cnnscope.io import atomic_write
from cnnscope.layout import HISTOGRAMS, MANIFEST, run_dir

if TYPE_CHECKING:  # the library needs no config (and omegaconf) to run
    from cnnscope.config import CompareConfig


def open_sets(
    extract_dir: str | Path, variants: Sequence[str], seeds: Sequence[int]
) -> dict[tuple[str, int], ActivationSet]:
    """The activation sets of ``variants × seeds``, or one error naming the missing networks and
    those that were extracted (all are checked before any is opened)."""
    root = Path(extract_dir)
    wanted = [(v, s) for v in variants for s in seeds]
    missing = [str(run_dir("", v, s)) for v, s in wanted if not (run_dir(root, v, s) / MANIFEST).is_file()]
    if missing:
        found = sorted(str(p.parent.relative_to(root)) for p in root.glob(f"*/seed*/{MANIFEST}"))
        raise CnnscopeError(
            f"no activations for {', '.join(missing)} under {root}/; found: {', '.join(found) or 'none'}. "
            "Run the extract stage first (cnnscope repro extract)."
        )
    return {(v, s): ActivationSet(run_dir(root, v, s)) for v, s in wanted}


def open_networks(root: str | Path, nets: Iterable[tuple[str, int]]) -> dict[tuple[str, int], NetworkMeasures]:
    """The ``measures@`` stages' results of ``nets`` under ``root``, or one error naming the missing
    networks (all are checked before any is read)."""
    missing = [str(run_dir("", v, s)) for v, s in nets if not (run_dir(root, v, s) / ROWS).is_file()]
    if missing:
        raise CnnscopeError(
            f"no per-network measures for {', '.join(missing)} under {root}/: run their stages first "
            "(cnnscope repro measures)"
        )
    return {(v, s): load(run_dir(root, v, s)) for v, s in nets}


def open_histograms(
    root: str | Path, nets: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], Mapping[str, np.ndarray]]:
    """The ``histograms@`` stages' counts of ``nets`` under ``root``, or one error naming the missing
    networks."""
    missing = [str(run_dir("", v, s)) for v, s in nets if not (run_dir(root, v, s) / HISTOGRAMS).is_file()]
    if missing:
        raise CnnscopeError(
            f"no histograms for {', '.join(missing)} under {root}/: run their stages first (cnnscope repro histograms)"
        )
    return {(v, s): load_counts(run_dir(root, v, s)) for v, s in nets}


def full_study(
    sets: Sets,
    heads: Mapping[tuple[str, int], ActivationSet],
    images: torch.Tensor,
    roles: Roles,
    cfg: CompareConfig,
    networks: Mapping[tuple[str, int], NetworkMeasures] | None = None,
    histograms: Mapping[tuple[str, int], Mapping[str, np.ndarray]] | None = None,
) -> StudyResults:
    """Every table of the compare stage: :func:`compare_study`'s, the measures of
    :func:`~cnnscope.analysis.measure_summary.measure_study` (``heads``: networks of another architecture,
    see :func:`~cnnscope.analysis.measures.split_reference_heads`) and the headline summary.
    ``networks``: each network's own measures (the ``measures@`` stages' results, :func:`open_networks`);
    ``histograms``: each network's counts on the shared bins (the ``histograms@`` stages'). Without
    them they are computed here, in this process, with the same result."""
    settings = MeasureSettings.from_config(cfg)
    if networks is None:
        networks = {net: network_measures(aset, settings.network()) for net, aset in sets.items()}
    res = compare_study(
        sets, images, roles, cfg.bins, cfg.bootstrap, cfg.confidence, settings.network(), networks, histograms,
    )  # fmt: skip
    ids = torch.as_tensor(next(iter(sets.values())).group(EVAL).sample_ids, dtype=torch.long)
    extra = measure_study(
        sets, pooled_pixels(images[ids]), res.layers, res.feature_maps, res.classes, res.tables,
        roles.present(res.variants), settings, cfg.bootstrap, heads, roles.null_models, networks, histograms,
    )  # fmt: skip
    res.tables.update(extra.tables)
    res.summary = headline(res.tables, res.variants, res.seeds, res.feature_maps, res.eval_images)
    return res


def write_tables(tables: Mapping[str, pd.DataFrame], out_dir: str | Path) -> list[dict[str, Any]]:
    """Write each table to ``out_dir/tables/<name>.csv``; returns their ``index.json`` entries.

    Twelve significant digits: the report ships these tables and recomputes every verdict from
    them (:mod:`cnnscope.report.evidence`); six digits changed a CKA-to-pixels difference near a
    ceiling of 1 (0.9969 − 0.9962) in its fourth digit."""
    descriptions = {**TABLES, **MEASURE_TABLES}
    entries = []
    for name, table in tables.items():
        rel = f"tables/{name}.csv"
        with atomic_write(Path(out_dir) / rel) as fh:
            table.to_csv(fh, index=False, float_format="%.12g")
        entries.append({"path": rel, "name": name, "description": descriptions.get(name, name)})
    return entries
