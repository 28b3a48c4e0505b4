"""How a network is trained and evaluated: the Trainer, its callbacks, fit, test on the best model.

One function per use: :func:`fit_and_test` trains (resuming from a checkpoint when given one) and
tests the best checkpoint; :func:`test_only` evaluates the untrained null model through the same
test loop, so its numbers are comparable. Precision and determinism follow the device: bf16-mixed
on a GPU and 32-bit deterministic on a CPU unless the config says otherwise. Checkpoints are read
back (resume, test on the best) with ``weights_only=True`` explicitly: a checkpoint never runs code.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    RichProgressBar,
)
from lightning.pytorch.loggers import Logger

from cnnscope.config import ConfigError, TrainerConfig
from cnnscope.layout import BEST_CKPT, LAST_CKPT
from cnnscope.training.datamodule import PreparedDataModule
from cnnscope.training.module import CNNModule

#: ModelCheckpoint's file stems (Lightning adds ``.ckpt``).
BEST, LAST = Path(BEST_CKPT).stem, Path(LAST_CKPT).stem
#: Columns of the per-epoch history (the stage's ``plots/train/*.csv``).
HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_acc", "lr"]


class EpochHistory(Callback):
    """Records one row per finished epoch; its rows travel inside checkpoints, so a resumed run
    still reports the epochs trained before the interruption."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        row = {"epoch": float(trainer.current_epoch)}
        for key in ("train_loss", "val_loss", "val_acc"):
            row[key] = float(metrics[key]) if key in metrics else float("nan")
        row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        self.rows.append(row)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state_dict["rows"]]


class PortableCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose saved state holds paths relative to its folder, not absolute ones.

    Why: Lightning writes ``dirpath`` and every checkpoint path into each checkpoint it saves, so
    the bytes of ``best.ckpt`` (and DVC's hash of ``models/``) would change with the clone's path
    and two clones would never agree. Loading maps them back onto this run's folder, so a resumed
    run keeps its best-k bookkeeping even after the folder moved.
    """

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        rel = self._relative
        state["dirpath"] = "."
        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            state[key] = rel(state[key])
        state["best_k_models"] = {rel(k): v for k, v in state["best_k_models"].items()}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        absolute = self._absolute
        state = dict(state_dict)
        if state.get("dirpath") == ".":
            state["dirpath"] = self.dirpath
            for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
                if key in state:
                    state[key] = absolute(state[key])
            state["best_k_models"] = {absolute(k): v for k, v in state.get("best_k_models", {}).items()}
        super().load_state_dict(state)

    def _relative(self, path: str) -> str:
        return os.path.relpath(path, self.dirpath) if path and self.dirpath else path

    def _absolute(self, path: str) -> str:
        return os.path.join(self.dirpath, path) if path and self.dirpath else path


@dataclass
class TrainResult:
    test_acc: float
    test_loss: float
    #: Test confusion matrix, rows = true class.
    confusion: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    epochs: int = 0
    best_val_loss: float | None = None
    best_val_acc: float | None = None
    #: Epoch (0-based) of the weights in ``best.ckpt``, the ones tested; ``epochs`` counts every epoch trained.
    best_epoch: int | None = None
    resumed_from: Path | None = None


def _on_gpu(cfg: TrainerConfig) -> bool:
    return cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def check_accelerator(cfg: TrainerConfig) -> None:
    """Fail before any work, naming the fix, when ``trainer.accelerator`` asks for hardware this
    machine lacks (Lightning would say so only with a traceback, after the run has started)."""
    from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator, XLAAccelerator

    present = {
        "gpu": CUDAAccelerator.is_available() or MPSAccelerator.is_available(),
        "cuda": CUDAAccelerator.is_available(),
        "mps": MPSAccelerator.is_available(),
        "tpu": XLAAccelerator.is_available(),
    }
    if not present.get(cfg.accelerator, True):
        raise ConfigError(
            f"trainer.accelerator={cfg.accelerator} but this machine has no such device: "
            "set trainer.accelerator=auto (uses one when present) or cpu"
        )


def _devices(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def make_trainer(
    cfg: TrainerConfig,
    out_dir: Path,
    logger: Logger | bool = False,
    train: bool = True,
    progress: bool = True,
    max_steps: int | None = None,
    extra: Sequence[Callback] = (),
) -> L.Trainer:
    """A Trainer writing ``best.ckpt``/``last.ckpt`` to ``out_dir``, early-stopping on ``val_loss``.

    With ``max_steps`` (a step-matched control) it trains exactly that many gradient steps: no early
    stopping and no choice by validation loss, so ``best.ckpt`` holds the final weights. ``extra``:
    more callbacks (the weights along training, :class:`cnnscope.training.checkpoints.StepCheckpoints`).
    """
    gpu = _on_gpu(cfg)
    precision = cfg.precision or ("bf16-mixed" if gpu else "32-true")
    # CUDA max-pool backward has no deterministic kernel: on a GPU determinism can only warn.
    deterministic: bool | str = ("warn" if cfg.deterministic else False) if gpu else cfg.deterministic
    # the bar goes to stderr, like every progress bar: stdout stays for results (benchmark JSON)
    callbacks: list[Callback] = [RichProgressBar(console_kwargs={"stderr": True})] if progress else []
    if train:
        callbacks += [
            PortableCheckpoint(
                dirpath=out_dir,
                filename=BEST,
                monitor=None if max_steps else "val_loss",
                mode="min",
                save_top_k=1,
                # Lightning ≥ 2.6 rewrites last.ckpt only in an epoch that also saved best.ckpt: with a
                # monitor, last.ckpt is written by its own callback below, every epoch
                save_last=bool(max_steps),
                auto_insert_metric_name=False,
                enable_version_counter=False,
            ),
            *([] if max_steps else [_last_checkpoint(out_dir)]),
            *([] if max_steps else [EarlyStopping("val_loss", mode="min", patience=cfg.patience, check_finite=True)]),
            EpochHistory(),
            *extra,
        ]
        if logger:
            callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    try:
        return _trainer(cfg, out_dir, logger, callbacks, precision, deterministic, progress, max_steps)
    except MisconfigurationException as err:  # devices/strategy/precision this machine cannot serve
        raise ConfigError(f"trainer settings cannot run here: {err} (see trainer.* in params.yaml)") from None


def _last_checkpoint(out_dir: Path) -> ModelCheckpoint:
    """``last.ckpt``: the weights and training state after every epoch, whatever its validation loss
    (what an interrupted run resumes from; ``save_last`` no longer guarantees it)."""
    return PortableCheckpoint(
        dirpath=out_dir,
        filename=LAST,
        monitor=None,
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )


def _trainer(
    cfg: TrainerConfig,
    out_dir: Path,
    logger: Logger | bool,
    callbacks: list[Callback],
    precision: str,
    deterministic: bool | str,
    progress: bool,
    max_steps: int | None = None,
) -> L.Trainer:
    return L.Trainer(
        accelerator=cfg.accelerator,
        devices=_devices(cfg.devices),
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=precision,  # type: ignore[arg-type]
        deterministic=deterministic,  # type: ignore[arg-type]
        max_epochs=-1 if max_steps else cfg.max_epochs,
        max_steps=max_steps or -1,
        log_every_n_steps=cfg.log_every_n_steps,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=out_dir,
        enable_progress_bar=progress,
        enable_model_summary=False,
    )


@contextlib.contextmanager
def _ctrl_c(trainer: L.Trainer) -> Iterator[None]:
    """Lightning turns Ctrl-C into ``sys.exit(1)`` after its graceful shutdown; give it back to the
    caller as the interruption it was (the stage then says so, and the run is marked KILLED)."""
    try:
        yield
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise


def _test(trainer: L.Trainer, module: CNNModule, data: PreparedDataModule, ckpt: str | None) -> TrainResult:
    with _ctrl_c(trainer):
        (metrics,) = trainer.test(module, datamodule=data, ckpt_path=ckpt, verbose=False, weights_only=True)
    assert module.confusion is not None  # set by CNNModule.on_test_epoch_end
    return TrainResult(
        test_acc=float(metrics["test_acc"]), test_loss=float(metrics["test_loss"]), confusion=module.confusion
    )


def fit_and_test(
    module: CNNModule,
    data: PreparedDataModule,
    cfg: TrainerConfig,
    out_dir: Path,
    logger: Logger | bool = False,
    resume_from: Path | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    extra: Sequence[Callback] = (),
) -> TrainResult:
    """Train (continuing from ``resume_from`` if given), then test the best checkpoint (the final
    weights with ``max_steps``: see :func:`make_trainer`)."""
    trainer = make_trainer(cfg, out_dir, logger, train=True, progress=progress, max_steps=max_steps, extra=extra)
    with _ctrl_c(trainer):
        trainer.fit(module, datamodule=data, ckpt_path=resume_from, weights_only=True)
    # the epochs trained, read before the test: testing on best.ckpt restores every callback's state
    # from it, the history included, which would cut it back to the best epoch
    history = list(next(c for c in trainer.callbacks if isinstance(c, EpochHistory)).rows)  # type: ignore[attr-defined]
    result = _test(trainer, module, data, ckpt="best")
    result.history, result.epochs, result.resumed_from = history, len(history), resume_from
    finite = [r for r in history if r["val_loss"] == r["val_loss"]]
    if finite:
        best = min(finite, key=lambda r: r["val_loss"])  # the first of equals, as ModelCheckpoint keeps it
        result.best_val_loss, result.best_val_acc = best["val_loss"], best["val_acc"]
        result.best_epoch = int(history[-1]["epoch"] if max_steps else best["epoch"])
    return result


def test_only(
    module: CNNModule,
    data: PreparedDataModule,
    cfg: TrainerConfig,
    out_dir: Path,
    logger: Logger | bool = False,
    progress: bool = True,
) -> TrainResult:
    """Evaluate ``module`` as it is (the untrained null model) through the same test loop."""
    trainer = make_trainer(cfg, out_dir, logger, train=False, progress=progress)
    return _test(trainer, module, data, ckpt=None)
