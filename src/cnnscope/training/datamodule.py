"""A LightningDataModule that serves the prepared uint8 tensors straight from memory.

The images of a study fit in memory many times over (full MNIST is 47 MB as uint8), so there is
nothing to decode or load per sample: the tensors are moved to the training device once, in
``setup``, and each step is one index-select on that device. No ``DataLoader``, no worker
processes, no per-sample Python; the LightningModule converts the uint8 batch to float and
standardises it on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import lightning as L
import torch

from cnnscope.data.prepared import PreparedData


class TensorBatches:
    """Batches of ``(uint8 images, labels)`` drawn from tensors that already live on the device.

    ``shuffle`` draws a new permutation per epoch from ``seed`` and the epoch number (not from a
    running generator), so a run resumed at epoch *e* sees exactly the batches an uninterrupted run
    would. Under data parallelism each of ``world_size`` ranks takes every ``world_size``-th sample:
    for training the index list is first cut to a multiple of ``world_size`` so all ranks run the
    same number of steps (gradient all-reduce needs that); evaluation keeps every sample once.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        epoch: Callable[[], int] = lambda: 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, epoch
        self.rank, self.world_size = rank, world_size

    def _indices(self) -> torch.Tensor:
        n = len(self.labels)
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch())
            order = torch.randperm(n, generator=gen)
            order = order[: n - n % self.world_size]
        else:
            order = torch.arange(n)
        return order[self.rank :: self.world_size].to(self.labels.device)

    def __len__(self) -> int:
        n = len(self.labels)
        per_rank = n // self.world_size if self.shuffle else len(range(self.rank, n, self.world_size))
        return -(-per_rank // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._indices()
        for batch in order.split(self.batch_size):
            yield self.images[batch], self.labels[batch]


class PreparedDataModule(L.LightningDataModule):
    """Train/val/test batches of a :class:`PreparedData`; ``train_split`` picks the full training
    split (``"train"``) or a nested subset key (``"0.2"``, ``"10000"``)."""

    def __init__(self, prepared: PreparedData, train_split: str, batch_size: int, seed: int) -> None:
        super().__init__()
        prepared.split(train_split)  # fails now, naming the valid splits, if the key is wrong
        self.prepared, self.train_split = prepared, train_split
        self.batch_size, self.seed = batch_size, seed
        self._data: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def train_size(self) -> int:
        return len(self.prepared.split(self.train_split)[1])

    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        for name in (self.train_split, "val", "test"):
            if name not in self._data:
                images, labels = self.prepared.split(name)
                self._data[name] = (images.to(device), labels.to(device))

    def _batches(self, name: str, shuffle: bool) -> TensorBatches:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        epoch = (lambda: trainer.current_epoch) if trainer is not None else (lambda: 0)
        images, labels = self._data[name]
        return TensorBatches(images, labels, self.batch_size, shuffle, self.seed, epoch, rank, world)

    def train_dataloader(self) -> TensorBatches:
        return self._batches(self.train_split, shuffle=True)

    def val_dataloader(self) -> TensorBatches:
        return self._batches("val", shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test", shuffle=False)
