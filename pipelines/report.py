"""DVC stage `report`: ``reports/<study>/`` (README.md, figures/, headline.json) from every other
stage's outputs, and ``reports/README.md``, the index of every study reported so far."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnscope import tracking
from cnnscope.config import Params, to_container
from cnnscope.errors import run_stage
from cnnscope.stage_args import stage_args


def main(argv: list[str] | None = None) -> None:
    params, args = stage_args(
        __doc__,
        argv,
        extra=lambda p: p.add_argument("--reports", default="reports", help="folder of all studies' reports"),
    )
    # torch, pandas, matplotlib: after --help, and in the runner's warm server rather than the
    # process DVC started
    from cnnscope.report import build_report
    from cnnscope.report.collect import read_json
    from cnnscope.report.index import HEADLINE_FILE, write_index

    # the store before any work: fail in seconds, not minutes
    with tracking.stage_tracking(params.tracking.experiment, params.tracking.uri) as run:
        out = Path(args.reports) / params.study.name
        readme = build_report(params, out)
        print(f"wrote {readme} and {write_index(Path(args.reports))}")
        _attach_to_study_run(run, params, out, read_json(out / HEADLINE_FILE))


def _attach_to_study_run(run: tracking.StageTracking, params: Params, out: Path, headline: dict[str, Any]) -> None:
    """Put the report and its headline numbers on the study's parent run, beside its variants' runs."""
    summary = {f"test_acc.{variant}": acc for variant, acc in headline["test_acc"].items()}
    summary |= {f"claims.{verdict.replace(' ', '_')}": n for verdict, n in headline["claims"].items()}
    run_id = run.attach_to_study(params.study.name, to_container(params), "report", summary, [out], "report")
    if run_id is not None:
        print(f"attached {out} to MLflow study run {run_id}")


if __name__ == "__main__":
    run_stage(main)
