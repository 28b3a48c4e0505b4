"""What an OIP maximises, one value per batch element.

The batch of an OIP run mixes candidates for many maps (or nodes), so an objective carries one
target per batch element and returns a ``(B,)`` vector. Summing it and differentiating gives each
candidate exactly the gradient of its own objective: in eval mode the batch elements of a CNN do
not interact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MapMean:
    """Mean activation of map ``channels[b]`` for element ``b`` (a unit's value for a flat layer)."""

    channels: torch.Tensor  # (B,) int64

    def __call__(self, activations: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(activations.shape[0], device=activations.device)
        picked = activations[rows, self.channels]
        return picked.flatten(1).mean(dim=1) if picked.dim() > 1 else picked

    def rows(self, rows: slice) -> MapMean:
        """The objective of batch elements ``rows`` only (one pass of a batch run in several)."""
        return MapMean(self.channels[rows])


@dataclass(frozen=True)
class Node:
    """Activation of node ``(ys[b], xs[b])`` of map ``channels[b]`` for element ``b``."""

    channels: torch.Tensor  # (B,) int64
    ys: torch.Tensor
    xs: torch.Tensor

    def __call__(self, activations: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(activations.shape[0], device=activations.device)
        return activations[rows, self.channels, self.ys, self.xs]

    def rows(self, rows: slice) -> Node:
        """The objective of batch elements ``rows`` only (one pass of a batch run in several)."""
        return Node(self.channels[rows], self.ys[rows], self.xs[rows])


#: An objective with one target per batch element, which a batch run in passes can split.
TargetObjective = MapMean | Node
