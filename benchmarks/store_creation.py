"""Benchmark: making a new embedded MLflow store, in place vs whole in a scratch database.

MLflow makes a new SQLite store by running every one of its schema migrations, each a committed
transaction. In place, each commit waits for the disk (``fsync``); :func:`cnnscope.tracking_store.
_create_whole` runs them in a memory-backed scratch database and copies the finished store next to
its destination. Every test and every fresh clone makes such stores, so the wait adds up.

Makes ``--stores`` stores each way, alternating, in ``--folder`` (default: a scratch folder beside
the repository, on the disk its ``mlflow.db`` lives on), and reports the median wall and CPU
seconds per store and their ratio, in one run. Each store gets its own file, so MLflow's per-URI
caches do not carry over; the two ways share one process and its imports.

    python benchmarks/store_creation.py [--stores 4] [--folder DIR]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cnnscope.io import repo_root


def timed(make: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    make()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stores", type=int, default=4, help="stores made each way (default 4)")
    parser.add_argument("--folder", type=Path, default=None, help="where the stores go (default: beside the repo)")
    args = parser.parse_args()

    from mlflow.tracking import MlflowClient

    from cnnscope.tracking_store import _create_whole

    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(dir=args.folder or repo_root().parent, prefix="store-creation-") as folder:
        root = Path(folder)
        MlflowClient(f"sqlite:///{root / 'warm-up.db'}").search_experiments()  # imports and first-use costs
        times: dict[str, list[tuple[float, float]]] = {"in_place": [], "whole": []}
        for i in range(args.stores):
            in_place = f"sqlite:///{root / f'in-place-{i}.db'}"
            times["in_place"].append(timed(lambda: MlflowClient(in_place).search_experiments()))  # noqa: B023
            times["whole"].append(timed(lambda: _create_whole(root / f"whole-{i}.db")))  # noqa: B023
    median = {
        way: {"wall_s": statistics.median(t[0] for t in runs), "cpu_s": statistics.median(t[1] for t in runs)}
        for way, runs in times.items()
    }
    result = {
        "stores_each_way": args.stores,
        "folder": "beside the repository" if args.folder is None else str(args.folder),
        **median,
        "wall_ratio_in_place_over_whole": median["in_place"]["wall_s"] / median["whole"]["wall_s"],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
