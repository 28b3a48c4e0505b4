"""The softmax certainty on the probe images: every seed-level row to a CSV beside the report, and a
compact table per variant in it (a 40-row table before the findings buried them)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pandas as pd

from cnnscope.io import atomic_write

#: The per-probe, per-seed rows, relative to the report folder.
PROBE_TABLE = "tables/probe_softmax.csv"
COLUMNS = ["variant", "seed", "sample", "label", "predicted", "max_prob", "entropy_bits"]


class _Report(Protocol):
    folder: Path

    def add(self, *lines: str) -> None: ...

    def table(self, frame: pd.DataFrame) -> None: ...


def compact_certainty(probes: pd.DataFrame, variants: list[str]) -> pd.DataFrame:
    """Per variant over the probe images (each probe's top-1 probability first averaged over seeds):
    the mean top-1 probability, the share of probe predictions that are right (over probes and
    seeds), and the least certain probe with its probability."""
    rows = []
    for v in (v for v in variants if v in set(probes["variant"])):
        mine = probes[probes["variant"] == v]
        per_probe = mine.groupby("sample", sort=False)["max_prob"].mean()
        rows.append(
            {
                "variant": v,
                "probes": len(per_probe),
                "mean top-1 probability": per_probe.mean(),
                "share correct": (mine["predicted"] == mine["label"]).mean(),
                "least certain probe": f"{per_probe.idxmin()} ({per_probe.min():.3f})",
            }
        )
    return pd.DataFrame(rows)


def probe_certainty_section(report: _Report, certainty: pd.DataFrame, variants: list[str]) -> None:
    """Write :data:`PROBE_TABLE` into the report folder and show the compact table linking to it."""
    probes = certainty.loc[certainty["sample"] != "eval", COLUMNS]
    with atomic_write(report.folder / PROBE_TABLE) as fh:
        probes.to_csv(fh, index=False, float_format="%.6g")
    report.add(
        "**Softmax certainty on the probe images** (top-1 probability averaged over seeds per probe, then over "
        f"probes; every probe and seed with its entropy: [`{PROBE_TABLE}`]({PROBE_TABLE})):"
    )
    report.table(compact_certainty(probes, variants))
