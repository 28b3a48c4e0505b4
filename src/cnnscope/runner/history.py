"""Each stage's wall time in earlier runs (``logs/repro/durations.json``), for the scheduler.

Why: the runner starts the ready stage with the longest chain of work behind it. Counted in stages,
chains tie where their costs differ by far (in the default study ``histograms@`` leads to ``compare``,
the longest stage, and ``oip@`` to ``exemplars@``: four stages each), and the study ended with
``compare``, ``atlas`` and ``report`` running one after another on one core. Seconds from the last
run break such ties. A stage not run before costs the mean of its kind; a kind never run here (every
kind, in a fresh clone) its ``first_run_seconds`` from the runner's config (``conf/runner/*.yaml``:
typical seconds per kind, so that a first ``make repro`` is ordered like later ones); a kind named
nowhere costs the mean of all known stages. The file lives beside the logs (git-ignored) and only
steers the order: what runs, and the bytes it writes, do not depend on it.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from statistics import mean

from cnnscope.runner.task import StageOutcome

FILE = "durations.json"


def load(root: Path, log_dir: str) -> dict[str, float]:
    """Stage → seconds of its last successful run; empty when there is no (readable) history."""
    try:
        data = json.loads((root / log_dir / FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, (int, float)) and v >= 0}


def record(root: Path, log_dir: str, outcomes: Iterable[StageOutcome]) -> None:
    """Add this run's successful stages to the history (written to a temporary file, then renamed)."""
    durations = load(root, log_dir)
    durations.update({o.stage: round(o.seconds, 2) for o in outcomes if o.ok})
    path = root / log_dir / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(durations, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def costs(
    stages: Iterable[str], durations: dict[str, float], first_run: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Each stage's expected seconds: its own last run, else its kind's mean, else the kind's
    ``first_run`` seconds, else the mean of all known stages (and of ``first_run``); 1 for every
    stage when nothing is known."""
    by_kind: dict[str, list[float]] = defaultdict(list)
    for stage, seconds in durations.items():
        by_kind[_kind(stage)].append(seconds)
    for name, seconds in (first_run or {}).items():
        by_kind.setdefault(name, [float(seconds)])
    known = [s for group in by_kind.values() for s in group]
    overall = mean(known) if known else 1.0
    out = {}
    for stage in stages:
        kind = by_kind.get(_kind(stage))
        out[stage] = durations[stage] if stage in durations else mean(kind) if kind else overall
    return out


def _kind(stage: str) -> str:
    return stage.split("@", 1)[0]
