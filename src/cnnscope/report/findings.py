"""The headline findings a report opens with, generated from the numbers the stages wrote.

A reader should not have to find the claims table at the end of a long report to learn what the
study found. Each seed claim becomes one sentence (verdict, effect, interval, number of seeds) that
links to the section holding its evidence; accuracy comes first, beside chance and the untrained
baseline. The same numbers are the study's headline for the reports index and its MLflow run.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cnnscope.analysis.claim_family import COLUMNS, with_holm
from cnnscope.analysis.claims import oip_claims, silent_layers

#: The section holding the evidence of each claim, by its letter (headings of the report).
EVIDENCE = {
    "a": "Scale-free layer statistics",
    "a′": "Representation similarity (debiased linear CKA)",
    "b": "Softmax certainty per probe (Fig. 8)",
    "c": "3. Input patterns each map reacts to (OIPs)",
    "d": "3. Input patterns each map reacts to (OIPs)",
    "e": "Class patterns with a contrast and a chance level",
    "VI": "Classification by activation patterns",
}
CLAIMS_HEADING = "The seed articles' claims, one table"


def slug(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading: lower case, punctuation
    other than ``-`` and ``_`` dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@dataclass(frozen=True)
class ClaimInputs:
    """What the report's claims table is built from besides the compare stage's tables. One value,
    so the findings, the measures section and the shipped evidence cannot be given different ones."""

    #: The OIP stage's summary per (variant, seed): claims (c) and (d).
    oip_metrics: Mapping[tuple[str, int], Mapping[str, Any]]
    #: ``study.contrasts``: the ``[variant, reference]`` pairs.
    contrasts: Sequence[Sequence[str]]
    #: ``compare.confidence`` and ``compare.sesoi``: the verdicts' interval and smallest effects.
    confidence: float
    sesoi: Mapping[str, float]
    #: ``compare.min_converged``: the fewest share of a network's live maps whose OIP ascent
    #: converged before claim (d) is read on them (:mod:`cnnscope.analysis.convergence`).
    min_converged: float
    #: The untrained variants; the first is the control of the within-network claims.
    null_models: Sequence[str]
    #: More rows of the same columns (the trajectory stage's matched-step claim (a)), or None.
    extra: pd.DataFrame | None


def claims_frame(tables: Path, inputs: ClaimInputs) -> pd.DataFrame:
    """The compare stage's claims (a, a′, b, e, VI) joined with the OIP stage's (c, d) and their
    trained − untrained controls (against the first of ``inputs.null_models``), by claim letter, with
    the Holm-adjusted p recomputed over the whole table (the family the report shows), and the rows
    of ``inputs.extra``."""
    frames = []
    path = tables / "claims.csv"
    if path.is_file():
        with contextlib.suppress(pd.errors.EmptyDataError):  # written without columns: no claim testable
            frames.append(pd.read_csv(path, keep_default_na=False, na_values=[""]))
    scale = tables / "activation_scale.csv"
    silent = silent_layers(pd.read_csv(scale)) if scale.is_file() else set()
    null = next(iter(inputs.null_models), None)
    for variant in dict.fromkeys(c[0] for c in inputs.contrasts):
        rows = oip_claims(
            variant, inputs.oip_metrics, inputs.confidence, inputs.sesoi, null, silent,
            min_converged=inputs.min_converged,
        )  # fmt: skip
        frames.append(pd.DataFrame(rows, columns=COLUMNS))
    frames = [f for f in [*frames, inputs.extra] if f is not None and len(f)]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    order = {c: i for i, c in enumerate(("a", "a′", "b", "c", "d", "e", "VI"))}
    table = pd.concat(frames, ignore_index=True)
    table["control"] = table["control"].fillna("") if "control" in table else ""
    table = table.sort_values("claim", key=lambda c: c.map(order).fillna(len(order)), kind="stable")
    return with_holm(table.reset_index(drop=True))


def claim_sentence(row: Mapping[str, Any], confidence: float, headings: set[str]) -> str:
    """One finding: ``**holds** (a) <statement>: <measure> <mean> on <layer>, 95 % interval over n
    seeds [lo, hi] → evidence``."""
    n = int(row["n_seeds"])
    seeds = f"{n} training seed{'s' if n != 1 else ''}"
    interval = (
        f"{confidence:.0%} interval over {seeds} [{row['seed_ci_low']:+.3g}, {row['seed_ci_high']:+.3g}]"
        if n >= 2
        else f"from {seeds}, no interval"
    )
    dz = row.get("effect_dz", float("nan"))
    sesoi = row.get("sesoi", float("nan"))
    extra = f" (d_z {dz:+.3g})" if pd.notna(dz) else ""
    extra += f", SESOI ±{sesoi:.3g}" if pd.notna(sesoi) and sesoi else ""
    control = row.get("control", "")
    tag = f" *control: {control}*" if isinstance(control, str) and control else ""
    where = EVIDENCE.get(str(row["claim"]), CLAIMS_HEADING)
    target = where if where in headings else CLAIMS_HEADING
    return (
        f"- **{row['verdict']}** ({row['claim']}){tag} {row['statement']}: {row['measure']} = "
        f"{row['mean_difference']:+.3g} on `{row['layer']}`{extra}, {interval}. [evidence](#{slug(target)})"
    )


def accuracy_sentence(means: pd.Series, stds: pd.Series, chance: float, n_seeds: int) -> str:
    """Test accuracy of every variant (mean ± std over seeds) beside the chance level."""
    parts = [f"`{v}` {100 * means[v]:.1f} %" + (f" ± {100 * stds[v]:.1f}" if n_seeds > 1 else "") for v in means.index]
    seeds = f"{n_seeds} training seed{'s' if n_seeds != 1 else ''}"
    return f"- Test accuracy ({seeds}): {', '.join(parts)}; chance {100 * chance:.1f} %. [evidence](#1-training)"


#: The columns of each claim row kept in ``headline.json`` (what the repository README quotes).
HEADLINE_CLAIM = ["claim", "statement", "measure", "layer", "control", "n_seeds", "mean_difference",
                  "seed_ci_low", "seed_ci_high", "verdict"]  # fmt: skip


def headline(
    study: str,
    command: str,
    means: pd.Series,
    claims: pd.DataFrame,
    n_seeds: int,
    data: str,
    confidence: float,
    stds: pd.Series | None = None,
    chance: float | None = None,
) -> dict[str, Any]:
    """The study's numbers for the reports index, its MLflow run and the repository README's
    findings (:mod:`cnnscope.report.readme`): accuracies (mean, and sd over seeds), chance, the
    verdict counts and every claim row with its interval (NaN written as null)."""
    verdicts = claims["verdict"].value_counts()
    record: dict[str, Any] = {
        "study": study,
        "command": command,
        "data": data,
        "seeds": n_seeds,
        "test_acc": {str(v): float(a) for v, a in means.items()},
        "claims": {str(k): int(c) for k, c in verdicts.items()},
    }
    if stds is not None:
        record["test_acc_std"] = {str(v): None if pd.isna(sd) else float(sd) for v, sd in stds.items()}
    if chance is not None:
        record["chance"] = float(chance)
    record["confidence"] = float(confidence)
    rows = claims.reindex(columns=HEADLINE_CLAIM).astype(object)
    record["findings"] = [
        {k: None if v is None or (isinstance(v, float) and v != v) else v for k, v in row.items()}
        for row in rows.where(rows.notna(), None).to_dict("records")
    ]
    return record
