"""A Callback that keeps the network's weights at chosen gradient steps (the trajectory's inputs).

Why a callback of its own rather than Lightning's ModelCheckpoint: ModelCheckpoint writes full
training state (optimiser moments, loops, callbacks) every time, ~3× the weights, and cannot name
an irregular list of steps. Here each save is the model's state dict alone, in the layout
:func:`cnnscope.models.load_model` reads, written atomically into the run's working folder
(``checkpoints/step<k>.ckpt``, :mod:`cnnscope.models.steps`); a resumed run keeps the files saved
before the interruption and goes on from where it stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from cnnscope.models import save_checkpoint
from cnnscope.models.steps import step_file


class StepCheckpoints(Callback):
    """Save ``pl_module.model`` after each gradient step in ``steps`` (0: before the first), and
    the final weights when training ends wherever it ended (early stopping included)."""

    def __init__(self, folder: Path, steps: Sequence[int]) -> None:
        self.folder, self.steps = folder, frozenset(int(s) for s in steps)

    def _save(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        path = step_file(self.folder, step)
        if trainer.is_global_zero and not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(pl_module.model, path)  # type: ignore[arg-type]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 0 and 0 in self.steps:
            self._save(trainer, pl_module, 0)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step in self.steps:
            self._save(trainer, pl_module, trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer, pl_module, trainer.global_step)
