"""DVC stage `report`: ``reports/<study>/`` (README.md, figures/, headline.json) from every other
stage's outputs, and ``reports/README.md``, the index of every study reported so far."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cnnscope import tracking
from cnnscope.config import Params, load_params, to_container
from cnnscope.errors import run_stage
from cnnscope.report import build_report
from cnnscope.report.collect import read_json
from cnnscope.report.index import HEADLINE_FILE, write_index


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="validated configuration (default: params.yaml)")
    parser.add_argument("--reports", default="reports", help="folder of all studies' reports (default: reports)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    uri = tracking.preflight(params.tracking.uri)  # before any work: fail in seconds, not minutes
    out = Path(args.reports) / params.study.name
    readme = build_report(params, out)
    print(f"wrote {readme} and {write_index(Path(args.reports))}")
    _attach_to_study_run(params, out, read_json(out / HEADLINE_FILE), uri)


def _attach_to_study_run(params: Params, out: Path, headline: dict[str, Any], uri: str) -> None:
    """Put the report and its headline numbers on the study's parent run, beside its variants' runs."""
    summary = {f"test_acc.{variant}": acc for variant, acc in headline["test_acc"].items()}
    summary |= {f"claims.{verdict.replace(' ', '_')}": n for verdict, n in headline["claims"].items()}
    try:
        run_id = tracking.study_run_for(params.tracking.experiment, params.study.name, to_container(params), uri)
    except Exception as err:  # the report on disk is the product; tracking is a view of it
        print(f"report: warning: could not find the MLflow study run ({err})", file=sys.stderr)
        return
    if tracking.attach(run_id, uri, summary, [out], artifact_path="report", stage="report"):
        print(f"attached {out} to MLflow study run {run_id}")


if __name__ == "__main__":
    run_stage(main)
