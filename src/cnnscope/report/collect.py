"""Read the stage outputs the report is built from into tidy pandas tables.

Every reader takes paths, not params: the report shows what the stages actually wrote, and a
missing output is an error that names the stage to run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnnscope.errors import CnnscopeError
from cnnscope.layout import CONFUSION_TABLE, history_path, read_run_metrics, run_dir


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise CnnscopeError(f"{path} is missing: run the stage that writes it (dvc repro)")
    return json.loads(path.read_text())


def per_run_metrics(root: Path, stage: str, variants: list[str], seeds: list[int]) -> pd.DataFrame:
    """One row per (variant, seed) from ``metrics/<stage>/<variant>_seed<k>.json`` (numeric top-level keys)."""
    rows = []
    for (variant, seed), record in read_run_metrics(stage, variants, seeds, root).items():
        numbers = {k: v for k, v in record.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        rows.append({"variant": variant, "seed": seed, **numbers})
    return pd.DataFrame(rows)


def with_maps(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The per-run rows of networks that have feature maps, and the variants that have none (the
    per-map stages record ``maps: 0`` for them): a row of dashes would read as missing data."""
    mapless = runs["maps"] == 0 if "maps" in runs else pd.Series(False, index=runs.index)
    return runs[~mapless], list(dict.fromkeys(runs.loc[mapless, "variant"]))


def histories(root: Path, variants: list[str], seeds: list[int]) -> pd.DataFrame:
    """Per-epoch training history of every run, tidy: variant, seed, epoch, columns of the CSV."""
    frames = []
    for variant in variants:
        for seed in seeds:
            path = history_path(variant, seed, root)
            if not path.is_file():
                raise CnnscopeError(f"{path} is missing: run cnnscope repro train")
            frame = pd.read_csv(path)
            if not frame.empty:  # the untrained null model has no epochs
                frames.append(frame.astype(float).assign(variant=variant, seed=seed))
    return pd.concat(frames, ignore_index=True)


def mean_std(table: pd.DataFrame, columns: list[str], order: list[str]) -> pd.DataFrame:
    """``mean ± std`` over seeds per variant, in study order (std is 0 with one seed)."""
    grouped = table.groupby("variant", sort=False)[columns]
    mean, std = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
    out = pd.DataFrame(index=[v for v in order if v in mean.index])
    for col in columns:
        out[col] = [_pm(mean.loc[v, col], std.loc[v, col]) for v in out.index]
    out.index.name = "variant"
    return out.reset_index()


def _pm(mean: float, std: float) -> str:
    """``mean ± std``; counts without decimals, a missing value (e.g. no validation) as an em dash."""
    if pd.isna(mean):
        return "—"
    if float(mean).is_integer() and float(std).is_integer():
        return f"{mean:.0f} ± {std:.0f}"
    return f"{mean:.4f} ± {std:.4f}"


def figure_index(path: Path) -> list[dict[str, str]]:
    """Figures listed by a stage's ``index.json`` (a list, or a dict with a ``figures`` list)."""
    data = read_json(path)
    entries = data.get("figures", []) if isinstance(data, dict) else data
    return [{"path": str(e["path"]), "caption": str(e.get("caption", ""))} for e in entries]


def confusion_rates(models_dir: Path, variants: list[str], seeds: list[int]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Class names and, per variant, the test confusion matrix row-normalised (each true class's
    row sums to 1) and averaged over ``seeds``, from ``models/<variant>/seed<k>/confusion.csv``."""
    classes: list[str] = []
    out = {}
    for variant in variants:
        rates = []
        for seed in seeds:
            path = run_dir(models_dir, variant, seed) / CONFUSION_TABLE
            if not path.is_file():
                raise CnnscopeError(f"{path} is missing: run cnnscope repro train")
            frame = pd.read_csv(path, index_col=0)
            classes = [str(c) for c in frame.columns]
            counts = frame.to_numpy(dtype=np.float64)
            rates.append(counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0))
        out[variant] = np.mean(rates, axis=0)
    return classes, out
