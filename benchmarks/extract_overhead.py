"""Benchmark: extracting every layer of ``mnist_cnn`` vs a plain forward pass over the same images.

Runs, in one process, a plain batched forward pass (standardise + ``model(x)``, no grad) and the
full extraction (all 12 named layers + softmax: conv2, conv3, fc1, fc2 and softmax streamed to
``.npy`` files with the uint8 input, conv1 and the ReLU/pool/flatten outputs recorded as recipes)
over the 10,000 real MNIST test images,
alternating the two ``--repeats`` times; it reports the median and the best of each (the machine
may be shared). ``--store-all`` writes every layer instead, to show what the recipes save. Then it
measures peak resident memory of the extraction alone in fresh subprocesses for two image counts,
to show it does not grow with N. Prints one JSON object.

Like every stage (through ``run_stage``), it first lets glibc keep freed memory
(:func:`cnnscope.runtime.keep_freed_memory`); that speeds up the plain forward pass too.

    python benchmarks/extract_overhead.py [--repeats 7] [--batch-size 256] [--float32] [--store-all]

Wall-clock ratios are reported with CPU-time ratios (all threads of the process): on a shared
machine the wall clock of either side swings with other load, the CPU time much less.
``extract_write_s`` is the time the writer thread spent in the file writes (it overlaps the forward
pass): the page-cache cost of the bytes written, which is most of the overhead and on a VM varies
with whether the kernel has to fault fresh memory in from the host for the page cache.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from cnnscope.activations import ImageGroup, extract_activations, resolve_layers
from cnnscope.activations.store import NpyStreamWriter
from cnnscope.models import LayeredCNN
from cnnscope.runtime import keep_freed_memory
from networks import mnist_cnn

MNIST_TEST = Path(__file__).resolve().parents[2] / "shared/data/MNIST/raw/t10k-images-idx3-ubyte.gz"


def load_images(n: int) -> torch.Tensor:
    """The first ``n`` MNIST test images as uint8 ``(n, 1, 28, 28)`` (IDX: 16-byte header)."""
    if not MNIST_TEST.is_file():  # a clear line, not a traceback (exemplars_overhead.py reads them here too)
        print(
            f"cnnscope: error: {MNIST_TEST} not found: this benchmark times the 10,000 real MNIST test images, "
            "read from ../shared/data/MNIST/raw/ beside the repository (torchvision's layout); put the gzipped "
            "IDX files there",
            file=sys.stderr,
        )
        raise SystemExit(2)
    with gzip.open(MNIST_TEST, "rb") as fh:
        raw = np.frombuffer(fh.read(), dtype=np.uint8, offset=16)
    return torch.from_numpy(raw.reshape(-1, 1, 28, 28)[:n].copy())


def make_model(images: torch.Tensor) -> LayeredCNN:
    x = images.float() / 255
    return mnist_cnn(mean=x.mean().item(), std=x.std().item()).eval()


@torch.no_grad()
def plain_forward(model: LayeredCNN, images: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """Wall-clock and process CPU seconds (all threads) of a batched forward pass."""
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(images), batch_size):
        model(model.standardize(images[i : i + batch_size].float() / 255))
    return time.perf_counter() - wall, time.process_time() - cpu


class Extraction(NamedTuple):
    wall: float
    cpu: float
    #: seconds spent in the file writes (on the writer thread, overlapping the forward pass)
    write: float
    bytes: int
    derived: list[str]


@contextmanager
def timed_writes() -> Iterator[list[float]]:
    """Sum the seconds spent in ``NpyStreamWriter.append``: how much of the extraction is I/O."""
    spent = [0.0]
    original = NpyStreamWriter.append

    def append(self: NpyStreamWriter, batch: np.ndarray) -> None:
        start = time.perf_counter()
        original(self, batch)
        spent[0] += time.perf_counter() - start

    NpyStreamWriter.append = append
    try:
        yield spent
    finally:
        NpyStreamWriter.append = original


def extraction(model: LayeredCNN, images: torch.Tensor, batch_size: int, float16: bool, derive: bool) -> Extraction:
    """Time extracting every layer to a temporary folder; bytes written, layers derived on read."""
    ids = torch.arange(len(images))
    group = ImageGroup(images, ids, torch.zeros(len(images), dtype=torch.long))
    with tempfile.TemporaryDirectory() as tmp, timed_writes() as write:
        wall, cpu = time.perf_counter(), time.process_time()
        manifest = extract_activations(
            model, {"eval": group}, resolve_layers(model, []), tmp, batch_size, float16, derive=derive
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*.npy"))
    return Extraction(wall, cpu, write[0], size, list(manifest["derived"]))


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def print_peak_growth(n: int, run: Callable[[LayeredCNN, torch.Tensor], object]) -> None:
    """``run(model, images)`` over the first ``n`` images, in a fresh process (a child of the
    benchmark): print its peak RSS growth over the state just before it."""
    images = load_images(n)
    model = make_model(images)
    run(model, images[:64])  # warm-up: allocator, thread pool
    before = rss_mb()
    run(model, images)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": n, "rss_before_mb": round(before, 1), "peak_growth_mb": round(peak - before, 1)}))


def timing(
    name: str, forward: list[tuple[float, float]], runs: list[tuple[float, float]], goal: float
) -> dict[str, Any]:
    """The timing keys of an overhead benchmark: ``forward`` and ``runs`` are alternating (wall,
    CPU) seconds of the plain forward pass and of the pass measured, ``name``."""
    fw, fc = np.array(forward).T
    ew, ec = np.array(runs).T
    return {
        "torch_threads": torch.get_num_threads(),
        "forward_wall_s": fw.round(3).tolist(),
        f"{name}_wall_s": ew.round(3).tolist(),
        "forward_cpu_s": fc.round(3).tolist(),
        f"{name}_cpu_s": ec.round(3).tolist(),
        "forward_wall_median_s": round(float(np.median(fw)), 3),
        f"{name}_wall_median_s": round(float(np.median(ew)), 3),
        "ratio_wall_best": round(float(ew.min() / fw.min()), 3),
        "ratio_wall_median": round(float(np.median(ew) / np.median(fw)), 3),
        "ratio_cpu_median": round(float(np.median(ec) / np.median(fc)), 3),
        "goal_ratio": goal,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--float32", action="store_true", help="store float32 instead of float16")
    parser.add_argument("--store-all", action="store_true", help="write every layer, no recipes")
    parser.add_argument("--memory-n", type=int, nargs=2, default=[1000, 10000])
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    float16, derive = not args.float32, not args.store_all
    if args.child:
        print_peak_growth(args.child, lambda m, x: extraction(m, x, args.batch_size, float16, derive))
        return
    images = load_images(10_000)
    model = make_model(images)
    plain_forward(model, images[:512], args.batch_size)  # warm-up
    forward, runs = [], []
    for _ in range(args.repeats):
        forward.append(plain_forward(model, images, args.batch_size))
        runs.append(extraction(model, images, args.batch_size, float16, derive))
    writes = np.array([r.write for r in runs])
    memory = []
    for n in args.memory_n:
        cmd = [sys.executable, __file__, "--child", str(n), "--batch-size", str(args.batch_size)]
        flags = [flag for flag, on in (("--float32", args.float32), ("--store-all", args.store_all)) if on]
        out = subprocess.run([*cmd, *flags], capture_output=True, text=True, check=True)
        memory.append(json.loads(out.stdout))
    result = {
        "benchmark": "extract_overhead",
        "images": len(images),
        "layers": len(resolve_layers(model, [])),
        "derived_layers": runs[0].derived,
        "batch_size": args.batch_size,
        "dtype": "float16" if float16 else "float32",
        "bytes_written": runs[0].bytes,
        "extract_write_s": writes.round(3).tolist(),
        **timing("extract", forward, [(r.wall, r.cpu) for r in runs], 1.3),
        "peak_memory": memory,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
