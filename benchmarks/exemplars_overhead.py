"""Benchmark: the exemplar pass (top-k per map of the default layers, median sample, sums, crops)
vs one plain forward pass of the whole network over the same split.

In one process it alternates a plain batched forward pass (standardise + ``model(x)``, no grad)
and :func:`cnnscope.activations.exemplars.find_exemplars` over the 10,000 real MNIST test images
(``../shared/data``; a trained-looking network is not needed for the cost), ``--repeats`` times,
and reports medians and bests, wall clock and process CPU time. Then it measures the peak
resident memory growth of the exemplar pass alone in fresh subprocesses for two split sizes, to
show it does not grow with N. Prints one JSON object; the goal is a ratio ≤ 1.5.

    python benchmarks/exemplars_overhead.py [--repeats 5] [--batch-size 256] [--k 9] [--threads N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cnnscope.activations.exemplars import default_layers, find_exemplars
from cnnscope.compose import compose_params
from cnnscope.models import LayeredCNN
from cnnscope.runtime import keep_freed_memory
from extract_overhead import load_images, make_model, plain_forward, print_peak_growth, timing


def exemplar_pass(model: LayeredCNN, images: torch.Tensor, batch_size: int, k: int) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of the exemplar pass over ``images``."""
    ids = torch.arange(len(images))
    wall, cpu = time.perf_counter(), time.process_time()
    cfg = compose_params()["exemplars"]  # the median's settings as the stage takes them
    median = {"n_median": cfg["median_images"], "median_sample": cfg["median_sample"]}
    find_exemplars(model, images, ids, default_layers(model), k=k, batch_size=batch_size, **median)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--k", type=int, default=9)
    parser.add_argument("--memory-n", type=int, nargs=2, default=[1000, 10000])
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--profile", action="store_true", help="cProfile one pass (top 25 by own time)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print_peak_growth(args.child, lambda m, x: exemplar_pass(m, x, args.batch_size, args.k))
        return
    images = load_images(10_000)
    model = make_model(images)
    plain_forward(model, images[:512], args.batch_size)  # warm-up
    exemplar_pass(model, images[:512], args.batch_size, args.k)
    if args.profile:
        with cProfile.Profile() as profile:
            exemplar_pass(model, images, args.batch_size, args.k)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return
    forward, runs = [], []
    for _ in range(args.repeats):
        forward.append(plain_forward(model, images, args.batch_size))
        runs.append(exemplar_pass(model, images, args.batch_size, args.k))
    memory = []
    for n in args.memory_n:
        cmd = [sys.executable, __file__, "--child", str(n), "--batch-size", str(args.batch_size), "--k", str(args.k)]
        cmd += ["--threads", str(args.threads)] if args.threads else []
        memory.append(json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout))
    result = {
        "benchmark": "exemplars_overhead",
        "images": len(images),
        "layers": default_layers(model),
        "k": args.k,
        "batch_size": args.batch_size,
        **timing("exemplars", forward, runs, 1.5),
        "peak_memory": memory,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
