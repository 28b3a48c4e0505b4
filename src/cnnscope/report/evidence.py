"""The evidence shipped with a report: every per-seed table behind a verdict, in ``reports/<study>/tables/``.

A verdict a reader cannot recompute is a claim on trust. The compare tables (``compare/tables``),
the OIP summaries (``metrics/oip``) and the training metrics are DVC outputs outside git, so a
clone holds only the report. The report stage therefore copies into ``tables/`` (CSV, at most
:data:`BUDGET` bytes per study) the per-seed tables every verdict is computed from and every table
the report cites, the trajectory rows behind the matched-step claim (a), the final claims table,
and ``verdicts.json``: what :func:`recompute_claims` needs besides the tables (contrasts, untrained
controls, SESOI, confidence, the fewest converged share of live maps for claim (d), first and deepest
map, the trajectories' deepest map).
:func:`recompute_claims` rebuilds every seed-level verdict from those files alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cnnscope.analysis.claim_family import join_contrasts, with_holm
from cnnscope.analysis.claims import claims_table, matched_step_claims
from cnnscope.errors import CnnscopeError
from cnnscope.io import read_table

#: Most bytes of CSV a study ships (issue 25).
BUDGET = 3_000_000
#: Compare tables behind the verdicts (per seed) or cited by the report, in report order.
COMPARE_TABLES = (
    "scale_free",
    "cka",
    "cka_overview",
    "certainty",
    "spatial_probe",
    "matching_summary",
    "matching_overview",
    "fcp_contrast",
    "overlap",
    "pattern_classification",
    "pattern_confusion",
    "activation_scale",
    "seed_summary",
    "layer_stats",
    "divergences",
    "linear_probe",
)
RECIPE = "verdicts.json"
OIP_RUNS = "oip_runs.csv"
TRAIN_RUNS = "train_runs.csv"
#: The trajectory rows behind the matched-step claim (a): the deepest map's Hoyer per variant, seed
#: and checkpoint step (the layer is the recipe's ``trajectory_layer``).
TRAJECTORY = "trajectory_hoyer.csv"
#: The seed-level columns of a claim that :func:`recompute_claims` reproduces (the image bootstrap
#: needs per-image arrays that are not shipped).
SEED_LEVEL = ["claim", "control", "n_seeds", "mean_difference", "effect_dz", "seed_ci_low", "seed_ci_high",
              "sesoi", "sign_flip_p", "holm_p", "tost_p", "verdict"]  # fmt: skip


class EvidenceError(CnnscopeError, ValueError):
    """The shipped evidence is over budget or does not reproduce its verdicts."""


def ship_tables(
    out: Path,
    compare_tables: Path,
    claims: pd.DataFrame,
    oip_runs: Mapping[tuple[str, int], Mapping[str, Any]],
    train_runs: pd.DataFrame,
    recipe: Mapping[str, Any],
    trajectories: pd.DataFrame | None = None,
) -> list[str]:
    """Write the evidence into ``out`` (the report's ``tables/``); returns the file names.
    ``trajectories``: the rows behind the matched-step claim, when the study has one. Raises
    :class:`EvidenceError` when the CSVs exceed :data:`BUDGET`."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in COMPARE_TABLES:
        source = compare_tables / f"{name}.csv"
        if source.is_file() and source.stat().st_size:
            (out / f"{name}.csv").write_bytes(source.read_bytes())
            written.append(f"{name}.csv")
    claims.to_csv(out / "claims.csv", index=False, float_format="%.10g")
    written.append("claims.csv")
    if oip_runs:
        rows = [{"variant": v, "seed": s, **_numbers(m)} for (v, s), m in sorted(oip_runs.items())]
        pd.DataFrame(rows).to_csv(out / OIP_RUNS, index=False, float_format="%.6g")
        written.append(OIP_RUNS)
    train_runs.to_csv(out / TRAIN_RUNS, index=False, float_format="%.6g")
    written.append(TRAIN_RUNS)
    if trajectories is not None and len(trajectories):
        trajectories.to_csv(out / TRAJECTORY, index=False, float_format="%.10g")
        written.append(TRAJECTORY)
    (out / RECIPE).write_text(json.dumps(dict(recipe), indent=1, sort_keys=True) + "\n")
    size = sum((out / name).stat().st_size for name in written)
    if size > BUDGET:
        raise EvidenceError(f"the report's tables/ hold {size:,} bytes of CSV, over the {BUDGET:,} budget")
    return [*written, RECIPE]


def _numbers(record: Mapping[str, Any]) -> dict[str, Any]:
    """The numeric and string top-level values of an OIP summary (``layer`` is a string)."""
    return {k: v for k, v in record.items() if isinstance(v, int | float | str) and not isinstance(v, bool)}


def _read(folder: Path, name: str) -> pd.DataFrame | None:
    return read_table(folder / f"{name}.csv")


def recompute_claims(folder: Path) -> pd.DataFrame:
    """Every claim's seed-level verdict, from a report's ``tables/`` alone (no pipeline outputs)."""
    recipe = json.loads((folder / RECIPE).read_text())
    tables = {name: t for name in COMPARE_TABLES if (t := _read(folder, name)) is not None}
    runs = _read(folder, OIP_RUNS.removesuffix(".csv"))
    oip = {(str(r["variant"]), int(r["seed"])): r.to_dict() for _, r in runs.iterrows()} if runs is not None else {}
    variants: Sequence[str] = recipe["variants"]
    null = next(iter(recipe["null_models"]), None)
    frames, seen = [], set()
    for a, b in recipe["contrasts"]:  # claims (c), (d) once per network, as the report joins them
        frames.append(
            claims_table(
                a,
                b,
                variants,
                tables,
                recipe["first_map"],
                recipe["deepest_map"],
                None if a in seen else (oip or None),
                None,
                confidence=recipe["confidence"],
                resamples=0,
                sesoi=recipe["sesoi"],
                # a recipe shipped before compare.min_converged existed was computed without the gate
                min_converged=recipe.get("min_converged", 0.0),
                null=null,
            )
        )
        seen.add(a)
    trajectories = _read(folder, TRAJECTORY.removesuffix(".csv"))
    if trajectories is not None:  # the matched-step claim (a), after the others as the report joins it
        frames.append(
            matched_step_claims(
                trajectories.assign(layer=trajectories["layer"].astype(str)),
                recipe["contrasts"],
                recipe.get("trajectory_layer"),
                recipe["confidence"],
                recipe["sesoi"],
            )
        )
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=SEED_LEVEL)
    order = {c: i for i, c in enumerate(("a", "a′", "b", "c", "d", "e", "VI"))}
    table = join_contrasts(frames)
    table = table.sort_values("claim", key=lambda c: c.map(order).fillna(len(order)), kind="stable")
    return with_holm(table.reset_index(drop=True))


def check_shipped(folder: Path, atol: float = 1e-4) -> pd.DataFrame:
    """Recompute the claims from ``folder`` (a report's ``tables/``) and compare them with its
    ``claims.csv``; returns the recomputed table, raises :class:`EvidenceError` on a mismatch."""
    shipped = pd.read_csv(folder / "claims.csv", keep_default_na=False, na_values=[""])
    again = recompute_claims(folder)
    if len(shipped) != len(again):
        raise EvidenceError(f"{folder}: {len(shipped)} shipped claims, {len(again)} recomputed")
    for column in SEED_LEVEL:
        a, b = shipped[column], again[column]
        if a.dtype.kind in "fi" or b.dtype.kind in "fi":
            x, y = pd.to_numeric(a, errors="coerce"), pd.to_numeric(b, errors="coerce")
            same = ((x - y).abs() <= atol * (1 + y.abs())) | (x.isna() & y.isna())
        else:
            same = a.fillna("").astype(str) == b.fillna("").astype(str)
        if not same.all():
            bad = int((~same).to_numpy().argmax())
            raise EvidenceError(
                f"{folder}: claim row {bad} column {column}: shipped {a.iloc[bad]}, recomputed {b.iloc[bad]}"
            )
    return again
