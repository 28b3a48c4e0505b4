"""The claims of a study as one table and one family of tests: its columns, the claims of several
contrasts joined without counting a claim twice, and the Holm adjustment over the rows tested.

Why apart from :mod:`.claims`: that module computes each claim's rows; what makes them one table
(and the family the Holm adjustment runs over) is the same whichever claims are in it, and the
report (:mod:`cnnscope.report.findings`, :mod:`cnnscope.report.evidence`) joins claims from other
stages into it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cnnscope.analysis.verdicts import TESTED, holm

#: The claims table's columns, in order: an empty table has them too.
COLUMNS = [
    "claim",
    "statement",
    "measure",
    "layer",
    "variant",
    "reference",
    "control",
    "n_seeds",
    "mean_difference",
    "effect_dz",
    "seed_ci_low",
    "seed_ci_high",
    "sesoi",
    "sign_flip_p",
    "sign_flip_min_p",
    "holm_p",
    "tost_p",
    "verdict",
    "image_ci_low",
    "image_ci_high",
]


def with_holm(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``holm_p``: the Holm–Bonferroni adjusted sign-flip p over its tested rows
    (verdicts in :data:`~cnnscope.analysis.verdicts.TESTED`; the others are not in the family)."""
    out = table.copy()
    tested = out["verdict"].isin(TESTED).to_numpy() if len(out) else np.zeros(0, bool)
    p = np.where(tested, out["sign_flip_p"].to_numpy(dtype=np.float64), np.nan) if len(out) else np.zeros(0)
    out["holm_p"] = holm(p)
    return out


def join_contrasts(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The claims of several contrasts as one table. A within-network claim ((e), VI and their
    controls) concerns the first variant of a contrast alone, so two contrasts with the same first
    variant (benchmark − dummy, benchmark − dummy_steps) would test it twice and count it twice in
    the Holm family: it is kept once."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    key = ["claim", "statement", "measure", "layer", "variant", "reference"]
    return table.drop_duplicates(subset=key, ignore_index=True)


__all__ = ["COLUMNS", "join_contrasts", "with_holm"]
