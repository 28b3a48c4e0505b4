"""Benchmark: the networks' max-pool (channels-last forward, NCHW backward) vs ``nn.MaxPool2d``.

Times, at one thread (the stages' setting), the default ``mnist_cnn`` on a batch of the trainer's
size: a training step (forward, cross-entropy, backward) and an inference forward pass, once with
the networks' own pooling (:class:`cnnscope.models.networks.MaxPool2d`) and once with each pooling
layer swapped for ``nn.MaxPool2d``; the two alternate ``--repeats`` times and each keeps its fastest.
The weights' gradients are compared bit for bit. The process uses the allocator setting every stage
uses (:func:`cnnscope.runtime.keep_freed_memory`).

    python benchmarks/max_pool_layout.py

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
from torch import nn

from cnnscope.models import LayeredCNN
from cnnscope.models.networks import MaxPool2d
from cnnscope.runtime import keep_freed_memory
from networks import mnist_cnn


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128, help="images per step (trainer.batch_size)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timed runs of each side")
    return parser.parse_args()


def network(plain_pooling: bool) -> LayeredCNN:
    model = mnist_cnn(mean=0.13, std=0.31)
    if plain_pooling:
        for name, module in model.named_children():
            if isinstance(module, MaxPool2d):
                setattr(model, name, nn.MaxPool2d(module.kernel_size))
    return model


def fastest(run: Callable[[], object], steps: int) -> float:
    begin = time.perf_counter()
    for _ in range(steps):
        run()
    return (time.perf_counter() - begin) / steps


def main() -> None:
    args = parse_args()
    keep_freed_memory()
    torch.set_num_threads(1)
    images, labels = torch.randn(args.batch, 1, 28, 28), torch.randint(0, 10, (args.batch,))
    models = {"ours": network(False), "nn.MaxPool2d": network(True)}

    def train_step(model: LayeredCNN) -> list[torch.Tensor]:
        model.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        return [p.grad for p in model.parameters() if p.grad is not None]

    def forward(model: LayeredCNN) -> torch.Tensor:
        with torch.no_grad():
            return model(images)

    timings: dict[str, dict[str, list[float]]] = {name: {"train_step": [], "forward": []} for name in models}
    for model in models.values():
        train_step(model), forward(model)  # warm-up
    for _ in range(args.repeats):
        for name, model in models.items():
            timings[name]["train_step"].append(fastest(lambda m=model: train_step(m), args.steps))
            timings[name]["forward"].append(fastest(lambda m=model: forward(m), args.steps))
    grads = {name: train_step(model) for name, model in models.items()}
    best = {name: {k: min(v) for k, v in t.items()} for name, t in timings.items()}
    print(
        json.dumps(
            {
                "benchmark": "max_pool_layout",
                "cpu": platform.processor() or platform.machine(),
                "batch": args.batch,
                "seconds_per_step": best,
                "speedup_train_step": best["nn.MaxPool2d"]["train_step"] / best["ours"]["train_step"],
                "speedup_forward": best["nn.MaxPool2d"]["forward"] / best["ours"]["forward"],
                "identical_gradients": all(
                    torch.equal(a, b) for a, b in zip(grads["ours"], grads["nn.MaxPool2d"], strict=True)
                ),
                "load_average_1min": round(os.getloadavg()[0], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
