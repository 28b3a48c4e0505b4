"""DVC stage `prepare`: the configured source → data/prepared/{dataset.pt, manifest.json}."""

from __future__ import annotations

from pathlib import Path

from cnnscope.errors import run_stage
from cnnscope.stage_args import stage_args


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_args(__doc__, argv)
    from cnnscope.data.prepare import prepare  # torch: after --help

    cfg = params.data
    out = Path(cfg.out_dir)
    record = prepare(cfg, out)
    sizes = ", ".join(f"{k}={v}" for k, v in record["sizes"].items())
    print(f"prepared {record['source']} → {out}: {sizes}; subsets {record['subset_sizes']}")


if __name__ == "__main__":
    run_stage(main)
