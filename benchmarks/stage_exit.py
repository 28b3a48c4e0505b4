"""Benchmark: what the interpreter's teardown costs a stage, against ending it right after its work.

A finished stage that is its process's program ends with ``os._exit`` once its ``atexit`` handlers,
logging and streams are done (``cnnscope.errors.run_stage``). This runs one stage command both ways,
alternating, in a scratch folder holding the default ``params.yaml``: as DVC runs it
(``python pipelines/<stage>.py``), and through a ``runpy`` wrapper, which is not the process's program
and so takes the ordinary exit with the teardown. It prints one JSON object with the median wall
seconds and peak resident memory (the kernel's ``wait4`` accounting) of each, and their ratios.

    python benchmarks/stage_exit.py [--stage validate] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cnnscope.compose import compose_params
from pipeline import REPO, clean_env

WRAPPER = "import runpy, sys; script, sys.argv = sys.argv[1], sys.argv[1:]; runpy.run_path(script, run_name='__main__')"


def run(command: list[str], folder: Path) -> tuple[float, int]:
    """Wall seconds and peak resident kilobytes of ``command`` run in ``folder``."""
    begin = time.perf_counter()
    process = subprocess.Popen(command, cwd=folder, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    error = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{error.decode()[-2000:]}")
    return time.perf_counter() - begin, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="validate", help="a stage of pipelines/ that needs only params.yaml")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    script = str(REPO / "pipelines" / f"{args.stage}.py")
    ways = {"early_exit": [sys.executable, script], "teardown": [sys.executable, "-c", WRAPPER, script]}
    results: dict[str, list[tuple[float, int]]] = {way: [] for way in ways}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(compose_params([])))
        for _ in range(args.rounds):
            for way, command in ways.items():
                results[way].append(run(command, Path(tmp)))
    median = {
        way: (statistics.median(s for s, _ in r), statistics.median(kb for _, kb in r) / 1024)
        for way, r in results.items()
    }
    print(
        json.dumps(
            {
                "stage": args.stage,
                "rounds": args.rounds,
                **{f"{way}_s": round(s, 2) for way, (s, _) in median.items()},
                **{f"{way}_peak_mb": round(mb) for way, (_, mb) in median.items()},
                "wall_ratio": round(median["teardown"][0] / median["early_exit"][0], 3),
                "peak_ratio": round(median["teardown"][1] / median["early_exit"][1], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
