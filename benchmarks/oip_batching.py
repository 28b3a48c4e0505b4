"""Benchmark: all maps of a layer as one OIP batch vs a Python loop over the maps one at a time.

Both sides run the same ascent (:func:`cnnscope.oip.ascent.ascend`) with the same settings and
starting noise, at the network's native input size; only the batching differs. The loop may run
fewer steps (``--loop-steps``) — rates are compared per step. The two sides alternate ``--repeats``
times and each keeps its fastest run (the machine may be shared); process CPU time is reported
beside the wall clock. The process uses the allocator setting every stage uses
(:func:`cnnscope.runtime.keep_freed_memory`). Also measured in the same run: the
batch's FLOP/s (counted by ``torch.utils.flop_counter``) against a large matmul's FLOP/s, so the
ratio can be read as "how close to the machine's arithmetic limit the batch runs".

    python benchmarks/oip_batching.py --threads 2            # CPU, 2 cores
    python benchmarks/oip_batching.py --device cuda          # GPU when one is available
    python benchmarks/oip_batching.py --layer pool1          # the cost of the first block alone
    python benchmarks/oip_batching.py --model-order          # without moving ReLUs behind pools

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from cnnscope.oip.ascent import ascend, frozen
from cnnscope.oip.generate import ascent_net, default_layer, layer_shape
from cnnscope.oip.objectives import MapMean
from cnnscope.oip.param import initial_noise
from cnnscope.oip.transforms import suppression
from cnnscope.runtime import keep_freed_memory
from networks import mnist_cnn


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--restarts", type=int, default=2, help="noise restarts per map and wavelength")
    parser.add_argument("--wavelengths", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--steps", type=int, default=10, help="ascent steps of the batched run")
    parser.add_argument("--loop-steps", type=int, default=5, help="ascent steps per map of the loop")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timed runs of each side")
    parser.add_argument("--layer", help="target layer (default: the deepest conv map, as the oip stage)")
    parser.add_argument(
        "--model-order", action="store_true", help="ascend the model's own layer order, not ascent_net's"
    )
    parser.add_argument("--matmul", type=int, default=2048, help="side of the reference matmul")
    return parser.parse_args()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """Wall-clock and process CPU seconds (all threads) of ``fn()``."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def matmul_flops(side: int, device: torch.device, repeats: int = 10) -> float:
    a = torch.randn(side, side, device=device)
    b = torch.randn(side, side, device=device)
    a @ b  # warm-up
    seconds = min(timed(lambda: [a @ b for _ in range(repeats)], device)[0] for _ in range(3))
    return 2 * side**3 * repeats / seconds


def step_flops(net: torch.nn.Module, start: torch.Tensor, objective: MapMean) -> int:
    """FLOPs of one ascent step: forward plus the input gradient."""
    x = start.clone().requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        objective(net(x)).sum().backward()  # autograd.grad is not supported under the counter
    return int(counter.get_total_flops())


def main() -> None:
    args = parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = mnist_cnn().to(device)
    layer = args.layer or default_layer(model)
    n_maps = layer_shape(model, layer)[0]
    seeds = list(range(args.restarts))
    per_map = initial_noise(seeds, args.wavelengths, 1, 28).flatten(0, 1).to(device)  # (K·W, 1, 28, 28)
    blur = suppression("blur", 0.5, 0.0)  # the article's blur; the damping (0.0) is the fourier kind's only
    net = model.truncated(layer) if args.model_order else ascent_net(model, layer)

    def run(maps: list[int], steps: int) -> torch.Tensor:
        start = per_map.repeat(len(maps), 1, 1, 1)
        channels = torch.tensor(maps, device=device).repeat_interleave(len(per_map))
        return ascend(net, start, MapMean(channels), steps, 0.1, blur, None, (), None, False).images

    with frozen(net):
        run([0], 1), run(list(range(n_maps)), 1)  # warm-up (allocator, kernels, thread pool)
        batch_runs, loop_runs = [], []
        for _ in range(args.repeats):
            batch_runs.append(timed(lambda: run(list(range(n_maps)), args.steps), device))
            loop_runs.append(timed(lambda: [run([m], args.loop_steps) for m in range(n_maps)], device))
        check = run(list(range(n_maps)), args.loop_steps)
        singles = torch.cat([run([m], args.loop_steps) for m in (0, n_maps // 2, n_maps - 1)])
        picked = torch.cat([check[m * len(per_map) : (m + 1) * len(per_map)] for m in (0, n_maps // 2, n_maps - 1)])
        channels = torch.arange(n_maps, device=device).repeat_interleave(len(per_map))
        flops = step_flops(net, per_map.repeat(n_maps, 1, 1, 1), MapMean(channels))
    # Per-step costs: the batch steps all maps at once, the loop one map at a time.
    batch_s, batch_cpu = (min(t) for t in zip(*batch_runs, strict=True))
    loop_s, loop_cpu = (min(t) for t in zip(*loop_runs, strict=True))
    batch_step = batch_s / (args.steps + 1)  # ascend(steps) does steps + 1 forwards
    loop_step = loop_s / (args.loop_steps + 1)
    per_step_ratios = [
        (loop / (args.loop_steps + 1)) / (batch / (args.steps + 1))
        for (batch, _), (loop, _) in zip(batch_runs, loop_runs, strict=True)
    ]
    reference = matmul_flops(args.matmul, device)
    print(
        json.dumps(
            {
                "benchmark": "oip_batching",
                "device": torch.cuda.get_device_name(device)
                if device.type == "cuda"
                else platform.processor() or "cpu",
                "threads": torch.get_num_threads(),
                "layer": layer,
                "layer_order": "model" if args.model_order else "ascent_net",
                "maps": n_maps,
                "candidates_per_map": len(per_map),
                "batch_size": n_maps * len(per_map),
                "steps_batch": args.steps,
                "steps_loop": args.loop_steps,
                "repeats": args.repeats,
                "batch_seconds": [round(wall, 4) for wall, _ in batch_runs],
                "loop_seconds": [round(wall, 4) for wall, _ in loop_runs],
                "batch_seconds_per_step": batch_step,
                "loop_seconds_per_step_all_maps": loop_step,
                "speedup_batch_vs_loop": loop_step / batch_step,
                "speedup_per_repeat": [round(r, 3) for r in per_step_ratios],
                "speedup_cpu_time": (loop_cpu / (args.loop_steps + 1)) / (batch_cpu / (args.steps + 1)),
                "batch_steps_per_s": 1 / batch_step,
                "batch_map_steps_per_s": n_maps / batch_step,
                "loop_map_steps_per_s": n_maps / loop_step,
                "batch_maps_per_s_at_steps": n_maps / (batch_step * args.steps),
                "step_gflop": flops / 1e9,
                "batch_gflop_per_s": flops / batch_step / 1e9,
                "matmul_gflop_per_s": reference / 1e9,
                "batch_fraction_of_matmul": flops / batch_step / reference,
                "loop_gflop_per_s": flops / loop_step / 1e9,
                "loop_fraction_of_matmul": flops / loop_step / reference,
                # The most any batching could gain over this loop: the batch at the matmul's FLOP/s.
                "speedup_ceiling_at_matmul_rate": reference / (flops / loop_step),
                "max_abs_diff_batch_vs_loop": float((picked - singles).abs().max()),
                "load_average_1min": round(os.getloadavg()[0], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
