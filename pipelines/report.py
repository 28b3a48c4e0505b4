"""DVC stage `report`: reports/README.md and reports/figures/ from every other stage's outputs."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnscope.config import load_params
from cnnscope.errors import run_stage
from cnnscope.report import build_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="validated configuration (default: params.yaml)")
    parser.add_argument("--out", default="reports", help="output folder (default: reports)")
    args = parser.parse_args()
    readme = build_report(load_params(args.params), Path(args.out))
    print(f"wrote {readme}")


if __name__ == "__main__":
    run_stage(main)
