"""Training throughput: the project's Lightning path vs a minimal raw PyTorch loop, in one run.

Both train ``mnist_cnn`` for one epoch on the same preloaded uint8 MNIST tensors (read from the
IDX files in ``../shared/data/MNIST/raw``), same batches, same optimiser, same device and
precision; the Lightning side runs exactly what the train stage runs (``CNNModule``,
``PreparedDataModule``, ``make_trainer`` with its checkpointing, early stopping and progress
bar), timed from the first to the last training step of the epoch (validation excluded). Prints
JSON with both throughputs (images/s) and their ratio (goal: ≥ 0.9), from wall time and from the
process's CPU time — on a machine shared with other jobs the wall ratio moves with their load, the
CPU-time ratio much less. ``--steps`` times that many steps instead of a full epoch, ``--repeats``
alternates the two paths and keeps each one's fastest run. The process uses the stages' allocator
setting (:func:`cnnscope.runtime.keep_freed_memory`).

    python benchmarks/train_throughput.py [--data ../shared/data] [--batch-size 128] [--steps N] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from cnnscope.config import TrainerConfig, load_params
from cnnscope.data.idx import read_idx
from cnnscope.data.prepared import PreparedData
from cnnscope.runtime import keep_freed_memory
from cnnscope.training import CNNModule, PreparedDataModule, TensorBatches, make_trainer

OPTIM = {"optimizer": "adam", "lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0, "lr_schedule": "none",
         "lr_step_size": 5, "lr_gamma": 0.5, "max_epochs": 1}  # fmt: skip


def load_mnist(root: Path) -> PreparedData:
    raw = root / "MNIST" / "raw"
    if not (raw / "t10k-images-idx3-ubyte.gz").is_file():  # a clear line, not a traceback
        print(
            f"cnnscope: error: no MNIST IDX files (*.gz) in {raw}: pass --data <folder holding MNIST/raw/>",
            file=sys.stderr,
        )
        raise SystemExit(2)
    parts = {s: (read_idx(raw / f"{p}-images-idx3-ubyte.gz"), read_idx(raw / f"{p}-labels-idx1-ubyte.gz"))
             for s, p in (("train", "train"), ("test", "t10k"))}  # fmt: skip
    images = torch.cat([torch.from_numpy(parts[s][0].copy()) for s in parts]).unsqueeze(1)
    labels = torch.cat([torch.from_numpy(parts[s][1].astype("int64")) for s in parts])
    n_train = len(parts["train"][1])
    scaled = images[:n_train].float() / 255
    test = torch.arange(n_train, len(labels))
    return PreparedData(
        images=images, labels=labels, classes=[str(k) for k in range(10)],
        mean=[float(scaled.mean())], std=[float(scaled.std())],
        splits={"train": torch.arange(n_train), "val": test, "test": test, "probe": test[:1]},
    )  # fmt: skip


def arch(data: PreparedData) -> dict[str, object]:
    shape = {"in_channels": 1, "num_classes": 10, "image_size": 28, "mean": data.mean, "std": data.std}
    knobs = {"width": 1.0, "hidden": 64, "batch_norm": False, "dropout": 0.0, "init": "kaiming"}
    return {"name": "mnist_cnn", **shape, **knobs}


def _clock() -> tuple[float, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter(), time.process_time()


class TrainTimer(Callback):
    """Wall and CPU time of the training steps of the first epoch (stops when validation starts)."""

    def __init__(self) -> None:
        self.start = (0.0, 0.0)
        self.seconds: tuple[float, float] | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = _clock()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and self.seconds is None:
            wall, cpu = _clock()
            self.seconds = (wall - self.start[0], cpu - self.start[1])


def lightning_epoch(data: PreparedData, cfg: TrainerConfig, seed: int, steps: int | None) -> tuple[float, float]:
    L.seed_everything(seed, verbose=False)
    module = CNNModule(arch(data), OPTIM, check_every=cfg.log_every_n_steps)
    timer = TrainTimer()
    with tempfile.TemporaryDirectory() as out:
        trainer = make_trainer(cfg, Path(out), logger=False, train=True, progress=True)
        trainer.callbacks.append(timer)
        if steps:
            trainer.limit_train_batches = steps
        trainer.fit(module, datamodule=PreparedDataModule(data, "train", cfg.batch_size, seed))
    assert timer.seconds is not None
    return timer.seconds


def raw_epoch(data: PreparedData, cfg: TrainerConfig, seed: int, steps: int | None) -> tuple[float, float]:
    L.seed_everything(seed, verbose=False)
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.accelerator != "cpu" else "cpu")
    model = CNNModule(arch(data), OPTIM).model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=OPTIM["lr"])  # type: ignore[arg-type]
    images, labels = (t.to(device) for t in data.split("train"))
    batches = TensorBatches(images, labels, cfg.batch_size, shuffle=True, seed=seed)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    start = _clock()
    for step, (x, y) in enumerate(batches):
        if step == steps:
            break
        with autocast:
            loss = F.cross_entropy(model(model.standardize(x.float().div_(255))), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=None, help="time this many steps (default: one epoch)")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs of each path; best is kept")
    parser.add_argument("--accelerator", default="auto")
    args = parser.parse_args()
    keep_freed_memory()  # as every stage does
    data = load_mnist(args.data)
    trainer = load_params(Path(__file__).resolve().parents[1] / "params.yaml").trainer  # the configured trainer
    cfg = replace(trainer, max_epochs=1, batch_size=args.batch_size, accelerator=args.accelerator, devices="1")
    n_train = len(data.splits["train"])
    n = min(n_train, args.steps * args.batch_size) if args.steps else n_train
    raw, lightning = [], []
    for rep in range(args.repeats):  # alternate so load changes on a shared machine hit both paths
        raw.append(raw_epoch(data, cfg, rep, args.steps))
        lightning.append(lightning_epoch(data, cfg, rep, args.steps))
    wall = {"raw": n / min(t[0] for t in raw), "lightning": n / min(t[0] for t in lightning)}
    cpu = {"raw": n / min(t[1] for t in raw), "lightning": n / min(t[1] for t in lightning)}
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() and args.accelerator != "cpu" else None
    print(json.dumps({
        "benchmark": "train_throughput", "model": "mnist_cnn", "images_timed": n, "train_images": n_train,
        "batch_size": args.batch_size, "device": gpu or f"cpu ({torch.get_num_threads()} threads)",
        "repeats": args.repeats, "raw_seconds_wall_cpu": raw, "lightning_seconds_wall_cpu": lightning,
        "raw_images_per_s": round(wall["raw"], 1), "lightning_images_per_s": round(wall["lightning"], 1),
        "ratio_lightning_over_raw": round(wall["lightning"] / wall["raw"], 3),
        "raw_images_per_cpu_s": round(cpu["raw"], 1), "lightning_images_per_cpu_s": round(cpu["lightning"], 1),
        "ratio_cpu_time": round(cpu["lightning"] / cpu["raw"], 3),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
