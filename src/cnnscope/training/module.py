"""The LightningModule: one :class:`~cnnscope.models.LayeredCNN` and how it is optimised.

``save_hyperparameters`` stores ``model`` (the architecture arguments, including ``name``) and
``optim`` as plain dicts, which makes every Lightning checkpoint readable by
:func:`cnnscope.models.load_model` with ``weights_only=True`` — downstream stages never import
this module. Metrics are torchmetrics objects so that under DDP they are reduced over all ranks
exactly (accuracy, mean loss, confusion matrix), and nothing calls ``.item()`` per step.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from cnnscope.errors import CnnscopeError
from cnnscope.models import build_model


class NonFiniteLossError(CnnscopeError, RuntimeError):
    """The training loss became NaN or infinite; training cannot recover from that."""


class CNNModule(L.LightningModule):
    """Classifier training for a LayeredCNN.

    ``model``: architecture arguments for :func:`cnnscope.models.build_model` (with ``name``).
    ``optim``: ``optimizer`` (adam|sgd), ``lr``, ``momentum``, ``weight_decay``, ``lr_schedule``
    (none|step|cosine), ``lr_step_size``, ``lr_gamma``, ``max_epochs`` (for cosine).
    The loss is checked for finiteness every ``check_every`` steps (a device flag accumulates in
    between) so a diverging run stops with a clear error without a host sync on every step.
    """

    def __init__(self, model: dict[str, Any], optim: dict[str, Any], check_every: int = 10) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.optim = dict(optim)
        arch = dict(model)
        self.model = build_model(arch.pop("name"), **arch)
        num_classes = int(model["num_classes"])
        self.train_loss = MeanMetric()
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        #: The test confusion matrix (rows: true class) after ``trainer.test``.
        self.confusion: torch.Tensor | None = None
        self.check_every = check_every
        self._nonfinite = torch.zeros((), dtype=torch.bool)

    def forward(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """Logits for a uint8 batch: scaling and standardisation happen here, on its device."""
        return self.model(self.model.standardize(images_uint8.float().div_(255)))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = F.cross_entropy(self(images), labels)
        self._nonfinite = self._nonfinite.to(loss.device) | ~torch.isfinite(loss.detach())
        if batch_idx % self.check_every == 0:
            self._raise_if_nonfinite()
        self.train_loss(loss.detach(), len(labels))
        self.log("train_loss", self.train_loss, on_step=False, on_epoch=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self._raise_if_nonfinite()

    def _raise_if_nonfinite(self) -> None:
        if bool(self._nonfinite):
            raise NonFiniteLossError(
                f"training loss became NaN/inf in epoch {self.current_epoch} (step {self.global_step}) "
                f"with optimizer={self.optim['optimizer']} lr={self.optim['lr']}: lower model.lr, "
                f"add weight decay or set model.batch_norm=true"
            )

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        images, labels = batch
        logits = self(images)
        loss, acc = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_acc")
        loss(F.cross_entropy(logits, labels), len(labels))
        acc(logits, labels)
        self.log(f"{stage}_loss", loss, prog_bar=True)
        self.log(f"{stage}_acc", acc, prog_bar=True)
        if stage == "test":
            self.test_confusion(logits, labels)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.confusion = self.test_confusion.compute().cpu()
        self.test_confusion.reset()

    def configure_optimizers(self) -> Any:
        opt = self.optim
        params = [p for p in self.parameters() if p.requires_grad]  # frozen edge kernels stay out
        optimizer: torch.optim.Optimizer
        if opt["optimizer"] == "sgd":
            optimizer = torch.optim.SGD(
                params, lr=opt["lr"], momentum=opt["momentum"], weight_decay=opt["weight_decay"]
            )
        else:
            optimizer = torch.optim.Adam(params, lr=opt["lr"], weight_decay=opt["weight_decay"])
        # a step-matched control follows its reference's schedule step for step: its own epochs are shorter
        per = int(opt.get("steps_per_epoch", 1))
        scheduler: torch.optim.lr_scheduler.LRScheduler
        if opt["lr_schedule"] == "step":
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, opt["lr_step_size"] * per, opt["lr_gamma"])
        elif opt["lr_schedule"] == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, opt["max_epochs"] * per))
        else:
            return optimizer
        interval = "step" if "steps_per_epoch" in opt else "epoch"
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}
