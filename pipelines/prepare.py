"""DVC stage `prepare`: the configured source → data/prepared/{dataset.pt, manifest.json}."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnscope.config import load_params
from cnnscope.errors import run_stage


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="validated configuration (default: params.yaml)")
    args = parser.parse_args(argv)
    from cnnscope.data.prepare import prepare  # torch: after --help

    cfg = load_params(args.params).data
    out = Path(cfg.out_dir)
    record = prepare(cfg, out, cache_dir=Path("data/cache"))
    sizes = ", ".join(f"{k}={v}" for k, v in record["sizes"].items())
    print(f"prepared {record['source']} → {out}: {sizes}; subsets {record['subset_sizes']}")


if __name__ == "__main__":
    run_stage(main)
