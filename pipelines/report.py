"""DVC stage `report`: reports/README.md and reports/figures/ from every other stage's outputs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnnscope import tracking
from cnnscope.config import Params, load_params, to_container
from cnnscope.errors import run_stage
from cnnscope.report import build_report
from cnnscope.report.collect import per_run_json


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="validated configuration (default: params.yaml)")
    parser.add_argument("--out", default="reports", help="output folder (default: reports)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    uri = tracking.preflight(params.tracking.uri)  # before any work: fail in seconds, not minutes
    readme = build_report(params, Path(args.out))
    print(f"wrote {readme}")
    _attach_to_study_run(params, Path(args.out), uri)


def _attach_to_study_run(params: Params, out: Path, uri: str) -> None:
    """Put the report and its figures on the study's parent run, beside its variants' runs."""
    runs = per_run_json(Path("metrics/train"), params.study.variants, params.study.seeds)
    means = runs.groupby("variant")[["test_acc", "test_loss"]].mean()
    summary = {f"{col}.{variant}": float(means.loc[variant, col]) for variant in means.index for col in means}
    try:
        run_id = tracking.study_run_for(params.tracking.experiment, params.study.name, to_container(params), uri)
    except Exception as err:  # the report on disk is the product; tracking is a view of it
        print(f"report: warning: could not find the MLflow study run ({err})", file=sys.stderr)
        return
    if tracking.attach(run_id, uri, summary, [out], artifact_path="report", stage="report"):
        print(f"attached {out} to MLflow study run {run_id}")


if __name__ == "__main__":
    run_stage(main)
