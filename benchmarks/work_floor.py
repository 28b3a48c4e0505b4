"""Benchmark: how fast could any runner make a study on this machine? The study's work, without the
per-stage cost of separate processes.

``cnnscope repro`` runs each stage as DVC does: one ``dvc repro --single-item`` process, which starts
the stage's own Python process, which imports torch (and Lightning, MLflow, ... where the stage
needs them) before it does any work. This benchmark runs every stage's command of a finished study
once more, in DVC's order, *inside one Python process* (``runpy``, as the tests run stages): each
package is imported once, no DVC process runs. What is left is the work, plus what a stage does
every time it starts (reading and validating ``params.yaml``, loading its inputs). The reference is
the same stages' wall times under the runner (the study's ``logs/repro/summary.csv``).

It prints one JSON object: per stage kind, the in-process seconds and the runner's; their sums; the
fixed cost per stage (runner − in-process, ÷ stages); and the lower bound of the pipeline's wall
time on ``--workers`` cores with zero fixed cost: ``max(sum ÷ workers, longest chain)``, both from
the in-process times. A runner can only beat that bound by making the stages' work itself smaller.

Run it in a folder holding a finished study (a fresh clone after ``make repro``): it rewrites the
study's outputs (the same bytes but for each run's MLflow id) and adds MLflow runs, so use a scratch
clone, never the repository you commit from.

    python benchmarks/work_floor.py --folder /tmp/clone [--workers 2]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import runpy
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path

from cnnscope.runner.dag import read_state
from cnnscope.runner.schedule import chains


def stage_commands(folder: Path) -> dict[str, str]:
    """Each stage's command, by its address (``stages/train/dvc.yaml:train@benchmark-0``), as DVC
    interpolates it (``dvc.repo.Repo``, DVC's documented Python API)."""
    from dvc.repo import Repo

    with Repo(str(folder)) as repo:
        return {stage.addressing: stage.cmd for stage in repo.index.stages if stage.cmd}


def run_in_process(command: str) -> float:
    """Wall seconds of ``python <script> <args>`` run in this process; the stage must succeed."""
    words = shlex.split(command)
    if words[:1] != ["python"] or len(words) < 2:
        raise SystemExit(f"not a `python <script>` command: {command!r}")
    sys.argv = words[1:]
    begin = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout: this benchmark's JSON only
            runpy.run_path(words[1], run_name="__main__")
    except SystemExit as done:
        if done.code not in (None, 0):
            raise SystemExit(f"{command!r} failed with exit status {done.code}") from None
    return time.perf_counter() - begin


def runner_walls(folder: Path) -> dict[str, float]:
    """The stage wall times of the study's last ``cnnscope repro`` (empty if it has none)."""
    path = folder / "logs" / "repro" / "summary.csv"
    if not path.is_file():
        return {}
    with path.open() as fh:
        return {row["stage"]: float(row["seconds"]) for row in csv.DictReader(fh) if row["status"] == "ok"}


def by_kind(seconds: dict[str, float]) -> dict[str, dict[str, float]]:
    kinds: dict[str, list[float]] = defaultdict(list)
    for stage, value in seconds.items():
        kinds[stage.split("@", 1)[0]].append(value)
    return {
        kind: {"stages": len(v), "sum": round(sum(v), 1), "mean": round(sum(v) / len(v), 2)}
        for kind, v in kinds.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True, help="a finished study (a scratch clone)")
    parser.add_argument("--workers", type=int, default=2, help="cores of the bound (default 2)")
    args = parser.parse_args()
    folder = args.folder.resolve()
    graph, _ = read_state(folder)
    commands = stage_commands(folder)
    os.chdir(folder)  # stages run from the repository root, as DVC runs them (wdir ../..)
    started = time.perf_counter()
    order = graph.order(graph.stages)
    inside = {stage: run_in_process(commands[graph.target(stage)]) for stage in order}
    total = time.perf_counter() - started
    critical = max(chains(graph, order, inside).values())
    walls = runner_walls(folder)
    common = [s for s in inside if s in walls]
    fixed = (sum(walls[s] for s in common) - sum(inside[s] for s in common)) / len(common) if common else None
    print(
        json.dumps(
            {
                "stages": len(graph.stages),
                "in_process_seconds": round(total, 1),
                "in_process_by_kind": by_kind(inside),
                "runner_seconds": round(sum(walls.values()), 1) if walls else None,
                "runner_by_kind": by_kind(walls) if walls else None,
                "fixed_cost_per_stage": None if fixed is None else round(fixed, 2),
                "longest_chain_in_process": round(critical, 1),
                f"floor_on_{args.workers}_cores": round(max(total / args.workers, critical), 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
