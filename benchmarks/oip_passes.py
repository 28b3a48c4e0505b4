"""Benchmark: an OIP batch on a CPU as cache-sized passes (what the oip stage runs) vs one pass.

Both sides call :func:`cnnscope.oip.generate.generate_oips` with the ``oip`` settings of
``params.yaml`` (every map of the deepest layer, all restarts and wavelengths) on a freshly drawn
``mnist_cnn``; one side with :data:`~cnnscope.oip.generate.CPU_PASS_BYTES` as shipped, the other with
no limit (the whole batch in one pass). Each side runs ``--repeats`` times, alternating, and keeps
its fastest; the two results are compared bit for bit. ``--jobs 2`` runs that many copies of the
whole measurement side by side, one thread each, as two runner workers run two ``oip@`` stages:
they then share the processor's last-level cache and memory bandwidth. The process uses the
allocator setting every stage uses (:func:`cnnscope.runtime.keep_freed_memory`).

    python benchmarks/oip_passes.py --jobs 2

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="copies of the measurement run side by side")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timed runs of each side")
    parser.add_argument("--steps", type=int, help="ascent steps (default: params.yaml's oip.steps)")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one copy, JSON out
    return parser.parse_args()


def measure(args: argparse.Namespace) -> dict[str, object]:
    """One copy: both sides, alternating, at one thread."""
    import torch

    from cnnscope.config import load_params
    from cnnscope.oip import generate
    from cnnscope.runtime import keep_freed_memory
    from networks import mnist_cnn

    keep_freed_memory()
    torch.set_num_threads(1)
    cfg = load_params(args.params).oip
    settings = generate.OIPSettings.from_config(cfg)
    settings = replace(settings, steps=args.steps or settings.steps)
    model = mnist_cnn()
    shipped = generate.CPU_PASS_BYTES

    def run(budget: int) -> tuple[float, generate.OIPResult]:
        generate.CPU_PASS_BYTES = budget
        begin = time.perf_counter()
        result = generate.generate_oips(model, None, None, settings, ())
        return time.perf_counter() - begin, result

    run(shipped), run(1 << 62)  # warm-up: allocator, kernels
    passes_s, whole_s = [], []
    for _ in range(args.repeats):
        seconds, split = run(shipped)
        passes_s.append(seconds)
        seconds, whole = run(1 << 62)
        whole_s.append(seconds)
    generate.CPU_PASS_BYTES = shipped
    net = generate.ascent_net(model, generate.default_layer(model))
    start = torch.zeros(len(split.maps) * settings.candidates, 1, 28, 28)
    return {
        "candidates": len(start),
        "passes": len(generate.pass_rows(net, start)),
        "steps": settings.steps,
        "passes_seconds": [round(s, 3) for s in passes_s],
        "one_pass_seconds": [round(s, 3) for s in whole_s],
        "speedup": min(whole_s) / min(passes_s),
        "identical": all(torch.equal(getattr(split, k), getattr(whole, k)) for k in ("images", "history", "grad_seen")),
    }


def main() -> None:
    args = parse_args()
    if args.worker or args.jobs == 1:
        result = measure(args)
        if args.worker:
            print(json.dumps(result))
            return
        jobs = [result]
    else:
        argv = [sys.executable, __file__, "--worker", "--repeats", str(args.repeats), "--params", str(args.params)]
        argv += ["--steps", str(args.steps)] if args.steps else []
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        copies = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env) for _ in range(args.jobs)]
        jobs = [json.loads(copy.communicate()[0]) for copy in copies]
        if any(copy.returncode for copy in copies):
            sys.exit("oip_passes: a copy failed (its error is above)")
    from cnnscope.oip.generate import CPU_PASS_BYTES

    print(
        json.dumps(
            {
                "benchmark": "oip_passes",
                "cpu": platform.processor() or platform.machine(),
                "cpu_pass_bytes": CPU_PASS_BYTES,
                "jobs": jobs,
                "load_average_1min": round(os.getloadavg()[0], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
