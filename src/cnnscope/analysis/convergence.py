"""Whether a network's OIP ascents converged enough for claim (d) to be read on them.

Claim (d) compares one map's OIPs across noise restarts with the OIPs of two *different* maps
from different restarts (:func:`cnnscope.oip.metrics.cross_map_similarity`). While an ascent has
not converged, its OIP is still largely the noise it started from: both kinds of pair then
correlate noise against noise and the margin shrinks towards 0, which could read *equivalent* —
a statement about the ascent's budget (``oip.steps``), not about the maps. (The published default
study at 30 steps, under the earlier null that paired two maps from the *same* start, read
*contradicted* for the same reason.) A reviewer would not accept a verdict computed on unfinished
optimisations, so a (d) row with a seed whose network has fewer than ``compare.min_converged`` of
its live maps converged keeps its numbers but gets the verdict
:data:`~cnnscope.analysis.verdicts.NOT_CONVERGED` and stays out of the Holm family, as a
*degenerate null* does.

The fraction is of the **live** maps: a dead map (no gradient ever reached its candidates, see
:func:`cnnscope.oip.metrics.summary`) has nothing to converge and counts as unconverged in the OIP
summary's ``converged_fraction`` (over all maps), so a network with many dead maps would be gated
for maps that claim (d) leaves out anyway. Claim (c) is measured at step 0 and is never gated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cnnscope.analysis.verdicts import DEGENERATE, NOT_CONVERGED

#: Summaries per network name, then per seed: ``{"benchmark": {0: summary, 1: summary}, ...}``.
Summaries = Mapping[str, Mapping[int, Mapping[str, Any]]]


def _number(summary: Mapping[str, Any], key: str) -> float:
    """``summary[key]`` as a float; NaN when absent or empty (a summary read back from a CSV)."""
    value = summary.get(key)
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def live_converged_fraction(summary: Mapping[str, Any]) -> float:
    """The share of one network's live maps whose OIP ascent converged, from its OIP summary.

    ``converged_fraction`` counts converged live maps over *all* maps: with the counts ``maps`` and
    ``dead_maps`` it gives back the number of converged maps (rounded, so a summary read back from a
    CSV written to 6 digits gives the same share at the threshold), over ``maps − dead_maps``;
    without them it is divided by ``1 − dead_fraction``. 0 without a live map or without
    ``converged_fraction``: nothing shows that an ascent converged."""
    converged = _number(summary, "converged_fraction")
    maps, dead = _number(summary, "maps"), _number(summary, "dead_maps")
    if math.isnan(converged):
        return 0.0
    if maps > 0 and not math.isnan(dead):
        return round(converged * maps) / (maps - dead) if maps > dead else 0.0
    live = 1.0 - _number(summary, "dead_fraction")
    return min(1.0, converged / live) if live > 0 else 0.0


def gate(row: dict[str, Any], networks: Summaries, min_converged: float) -> dict[str, Any]:
    """``row`` (a claim (d) row over the seeds of ``networks``) with the verdict *not converged*
    when, in any of its seeds, one of its networks has fewer than ``min_converged`` of its live
    maps converged (``compare.min_converged``). The statement then says which fractions caused it.
    A *degenerate null* stays one: its control has no baseline, however long the ascent."""
    fractions = {name: {s: live_converged_fraction(m) for s, m in runs.items()} for name, runs in networks.items()}
    if row["verdict"] == DEGENERATE or all(f >= min_converged for per in fractions.values() for f in per.values()):
        return row
    seeds = sorted({s for per in fractions.values() for s in per})
    shares = {name: ", ".join(f"{100 * per[s]:.0f} %" for s in seeds if s in per) for name, per in fractions.items()}
    per_network = " and ".join(f"{share} of {name}'s" for name, share in shares.items())
    row["verdict"] = NOT_CONVERGED
    row["statement"] = (
        f"{row['statement']} (not read: the OIP ascent converged on {per_network} live maps in seeds "
        f"{', '.join(map(str, seeds))}, fewer than compare.min_converged {100 * min_converged:.0f} %; raise oip.steps)"
    )
    return row


__all__ = ["Summaries", "gate", "live_converged_fraction"]
