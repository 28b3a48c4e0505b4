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
from pathlib import Path
from typing import Any

import pandas as pd

from cnnscope.analysis.claims import COLUMNS, oip_claims

#: The section holding the evidence of each claim, by its letter (headings of the report).
EVIDENCE = {
    "a": "Scale-free layer statistics",
    "a′": "Representation similarity (debiased linear CKA)",
    "b": "Softmax certainty per probe (Fig. 8)",
    "c": "3. Input patterns each map reacts to (OIPs)",
    "d": "3. Input patterns each map reacts to (OIPs)",
    "e": "Class patterns with a contrast and a chance level",
}
CLAIMS_HEADING = "The seed articles' claims, one table"


def slug(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading: lower case, punctuation
    other than ``-`` and ``_`` dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def claims_frame(
    tables: Path,
    oip_metrics: Mapping[tuple[str, int], Mapping[str, Any]],
    contrasts: Sequence[Sequence[str]],
    confidence: float,
) -> pd.DataFrame:
    """The compare stage's claims (a, a′, b, e) joined with the OIP stage's (c, d), by claim letter."""
    frames = []
    path = tables / "claims.csv"
    if path.is_file():
        with contextlib.suppress(pd.errors.EmptyDataError):  # written without columns: no claim testable
            frames.append(pd.read_csv(path))
    for variant in dict.fromkeys(c[0] for c in contrasts):
        frames.append(pd.DataFrame(oip_claims(variant, oip_metrics, confidence), columns=COLUMNS))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(frames, ignore_index=True).sort_values("claim", kind="stable").reset_index(drop=True)


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
    where = EVIDENCE.get(str(row["claim"]), CLAIMS_HEADING)
    target = where if where in headings else CLAIMS_HEADING
    return (
        f"- **{row['verdict']}** ({row['claim']}) {row['statement']}: {row['measure']} = "
        f"{row['mean_difference']:+.3g} on `{row['layer']}`, {interval}. [evidence](#{slug(target)})"
    )


def accuracy_sentence(means: pd.Series, stds: pd.Series, chance: float, n_seeds: int) -> str:
    """Test accuracy of every variant (mean ± std over seeds) beside the chance level."""
    parts = [f"`{v}` {100 * means[v]:.1f} %" + (f" ± {100 * stds[v]:.1f}" if n_seeds > 1 else "") for v in means.index]
    seeds = f"{n_seeds} training seed{'s' if n_seeds != 1 else ''}"
    return f"- Test accuracy ({seeds}): {', '.join(parts)}; chance {100 * chance:.1f} %. [evidence](#1-training)"


def headline(
    study: str, command: str, means: pd.Series, claims: pd.DataFrame, n_seeds: int, data: str
) -> dict[str, Any]:
    """The study's few numbers for the reports index and its MLflow run: accuracies and verdicts."""
    verdicts = claims["verdict"].value_counts()
    return {
        "study": study,
        "command": command,
        "data": data,
        "seeds": n_seeds,
        "test_acc": {str(v): float(a) for v, a in means.items()},
        "claims": {str(k): int(c) for k, c in verdicts.items()},
    }
