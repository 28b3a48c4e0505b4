"""Dataset exemplars: the real images that drive each feature map most, found in one streaming pass.

An OIP alone does not tell whether its pattern is what the map detects in real images; shown beside
the images that drive the map most it can be read (Olah, Mordvintsev & Schubert, "Feature
Visualization", Distill 2017), and people predict a unit's behaviour better from such natural
exemplars than from synthetic images (Borowski et al., ICLR 2021). For every map of the chosen
layers this module keeps, over a whole split:

* the top ``k`` images ranked by the map's maximum over positions (the node that fires most), with
  that value and the arg-max node — a running k-best merged with each batch by a stable sort (ties
  go to the earliest image, so the result does not depend on the batch size);
* a few images at the median of the same statistic, for contrast. The median is taken over a fixed
  uniform random sample of the split (``median_sample`` images, the same for every map), so the
  memory stays flat in the split size; below that size it is the exact median;
* per-map mean activation and exact-zero fraction (sparsity after the ReLU) over the same sample,
  and whether the map was ever positive on the whole split (``silent`` on data: never);
* the crop of each exemplar's receptive field (:mod:`cnnscope.models.receptive_field`) around the
  arg-max node, padded with 0 where the window reaches into the network's padding.

Memory is O(k·maps + batch) per layer, independent of the split size; the pass costs one forward
pass to the deepest requested layer plus a max and a sort of the maps that improve per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from cnnscope.activations.capture import capture
from cnnscope.data.prepared import PreparedData
from cnnscope.errors import CnnscopeError
from cnnscope.io import atomic_write
from cnnscope.models import LayeredCNN
from cnnscope.models.receptive_field import LayerGeometry, model_receptive_fields
from cnnscope.progress import track

if TYPE_CHECKING:  # imported by LayerExemplars.table, the one use
    import pandas as pd


class ExemplarError(CnnscopeError, ValueError):
    """An exemplar request that cannot be met; the message names the fix."""


@dataclass
class LayerExemplars:
    """Exemplars of every map of one layer; ``(M, …)`` tensors are indexed by map first."""

    layer: str
    #: Receptive-field side in input pixels (the crops' side).
    rf_size: int
    #: ``(M, k)`` the map's maximum over positions for each top image, descending.
    values: torch.Tensor
    #: ``(M, k)`` ids of those images in the prepared data (``PreparedData.images``).
    image_ids: torch.Tensor
    #: ``(M, k, 2)`` ``(y, x)`` of the arg-max node (``(0, 0)`` for a layer without positions).
    nodes: torch.Tensor
    #: ``(M, k, C, r, r)`` uint8 receptive-field crops around the arg-max nodes.
    crops: torch.Tensor
    #: ``(M, m)``/``(M, m, 2)``/``(M, m, C, r, r)``: the same for the images at the median.
    median_values: torch.Tensor
    median_ids: torch.Tensor
    median_nodes: torch.Tensor
    median_crops: torch.Tensor
    #: ``(M,)`` mean activation over the median sample's images and all positions.
    mean_activation: torch.Tensor
    #: ``(M,)`` fraction of exactly-zero activations over the median sample's images and positions.
    zero_fraction: torch.Tensor

    @property
    def silent(self) -> torch.Tensor:
        """``(M,)``: the map was never positive on any image of the split."""
        return self.values[:, 0] <= 0

    def table(self) -> pd.DataFrame:
        """One row per map: top and median activation, mean, sparsity, silent flag, top image."""
        import pandas as pd

        return pd.DataFrame(
            {
                "map": range(len(self.values)),
                "top_activation": self.values[:, 0].tolist(),
                "median_activation": self.median_values.median(dim=1).values.tolist(),
                "mean_activation": self.mean_activation.tolist(),
                "zero_fraction": self.zero_fraction.tolist(),
                "silent_on_data": self.silent.tolist(),
                "top_image": self.image_ids[:, 0].tolist(),
            }
        )


def default_layers(model: LayeredCNN) -> list[str]:
    """The last layer of each block (every pooling layer) and the deepest feature map, in order;
    none for a network without feature maps (the pixel ``mlp``), which has no maps to show."""
    if not model.conv_layers:
        return []
    wanted = {name for name, m in model.named_children() if isinstance(m, nn.MaxPool2d | nn.AvgPool2d)}
    wanted.add(model.conv_layers[-1])
    return [name for name in model.layer_names if name in wanted]


def split_images(data: PreparedData, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, C, H, W)`` uint8 and their ids of ``split``, the probe images excluded."""
    if split not in data.splits and split not in data.subsets:
        choices = sorted(set(data.splits) | set(data.subsets))
        raise ExemplarError(f"the prepared data has no split {split!r}; choose one of: {', '.join(choices)}")
    ids = data.splits[split] if split in data.splits else data.subsets[split]
    probes = data.splits.get("probe")
    if probes is not None and split != "probe":
        ids = ids[~torch.isin(ids, probes)]
    return data.images[ids], ids


def _check(model: LayeredCNN, layers: Sequence[str], n: int, k: int, n_median: int) -> dict[str, LayerGeometry]:
    geometry = model_receptive_fields(model)
    unknown = [name for name in layers if name not in geometry]
    if unknown:
        raise ExemplarError(f"unknown layer(s) {unknown}; layers are: {', '.join(model.layer_names)}")
    if not layers:
        raise ExemplarError("no layers requested for exemplars")
    device = model.mean.device
    dummy = torch.zeros(1, model.in_channels, model.image_size, model.image_size, device=device)
    with torch.no_grad():
        shapes = {name: tuple(t.shape[1:]) for name, t in capture(model, dummy, layers).items()}
    flat = [f"{name} {list(shapes[name])}" for name in layers if len(shapes[name]) != 3 or shapes[name][0] == 0]
    if flat:
        maps = ", ".join(model.conv_layers)
        raise ExemplarError(
            f"layer(s) {'; '.join(flat)} have no feature maps (a map is a channel of a (C, H, W) output): "
            f"choose layers such as: {maps}"
        )
    if not 1 <= k <= n:
        raise ExemplarError(f"k={k} top exemplars requested, but the split has {n} images: use 1 ≤ k ≤ {n}")
    if not 0 <= n_median <= n:
        raise ExemplarError(f"{n_median} median images requested, but the split has {n} images")
    return geometry


@dataclass
class _Running:
    """The running state of one layer during the pass."""

    values: torch.Tensor  # (k', M) best values so far, descending
    ids: torch.Tensor  # (k', M) positions in the split
    nodes: torch.Tensor  # (k', M) flat node index
    total: torch.Tensor  # (M,) float64 sum of activations over the median sample
    zeros: torch.Tensor  # (M,) int64 count of exact zeros over the median sample
    sample_values: list[torch.Tensor]  # (b, M) per batch
    sample_nodes: list[torch.Tensor]


@torch.no_grad()
def find_exemplars(
    model: LayeredCNN,
    images: torch.Tensor,
    image_ids: torch.Tensor,
    layers: Sequence[str],
    k: int,
    n_median: int,
    median_sample: int,
    batch_size: int,
    seed: int = 0,
) -> dict[str, LayerExemplars]:
    """Top-``k`` and median exemplars of every map of ``layers`` over ``images`` (uint8, one pass).

    ``k``, ``n_median``, ``median_sample``, ``batch_size``: ``exemplars.k``, ``exemplars.median_images``,
    ``exemplars.median_sample``, ``exemplars.batch_size``; ``seed`` draws the median sample (not a
    setting: the sample is fixed so the stage's output is reproducible).

    ``image_ids`` are the images' ids in the prepared data (recorded, and used for nothing else).
    Images are standardised exactly as in training. Raises :class:`ExemplarError` for a layer
    without maps, ``k`` larger than the split or an unknown layer.
    """
    n = len(images)
    geometry = _check(model, layers, n, k, n_median)
    device = model.mean.device
    generator = torch.Generator().manual_seed(seed)
    in_sample = torch.zeros(n, dtype=torch.bool)
    in_sample[torch.randperm(n, generator=generator)[: min(median_sample, n)]] = True
    sample_positions = in_sample.nonzero().squeeze(1)
    state: dict[str, _Running] = {}
    model.eval()
    with track("exemplars", n + len(sample_positions)) as advance:
        for start in range(0, n, batch_size):
            batch = images[start : start + batch_size].to(device)
            outputs = capture(model, model.standardize(batch.float() / 255), layers)
            positions = torch.arange(start, start + len(batch), device=device)
            for name, out in outputs.items():
                _update(state, name, out.flatten(2), positions, k)
            advance(len(batch))
        # The median sample's statistics in a second, short pass over its images only: inside the
        # main pass they cost a few small ops per batch and layer, which dominated it on 2 threads
        for start in range(0, len(sample_positions), batch_size):
            batch = images[sample_positions[start : start + batch_size]].to(device)
            outputs = capture(model, model.standardize(batch.float() / 255), layers)
            for name, out in outputs.items():
                _add_sample(state[name], out.flatten(2))
            advance(len(batch))
    sides = _spatial(model, layers)
    return {
        name: _finish(state[name], geometry[name], sides[name], images, image_ids, sample_positions, n_median, k)
        for name in layers
    }


def _spatial(model: LayeredCNN, layers: Sequence[str]) -> dict[str, tuple[int, int]]:
    dummy = torch.zeros(1, model.in_channels, model.image_size, model.image_size, device=model.mean.device)
    with torch.no_grad():
        return {name: (int(t.shape[-2]), int(t.shape[-1])) for name, t in capture(model, dummy, layers).items()}


def _update(state: dict[str, _Running], name: str, flat: torch.Tensor, positions: torch.Tensor, k: int) -> None:
    """Merge one batch ``(B, M, P)`` of a layer into the running k-best.

    Only maps with an image above their current k-th best are re-sorted (after the first batches
    most maps have none), and the arg-max node is found only for entries that enter the k-best:
    ``amax`` over the batch is several times cheaper than ``max`` with indices.
    """
    peak = flat.amax(dim=2)  # (B, M)
    n_maps = peak.shape[1]
    if name not in state:
        state[name] = _Running(
            values=peak.new_empty(0, n_maps),
            ids=positions.new_empty(0, n_maps),
            nodes=positions.new_empty(0, n_maps),
            total=torch.zeros(n_maps, dtype=torch.float64, device=peak.device),
            zeros=torch.zeros(n_maps, dtype=torch.int64, device=peak.device),
            sample_values=[],
            sample_nodes=[],
        )
    run = state[name]
    before = len(run.values)
    # strictly above the k-th best: an equal value from a later image never displaces an earlier one
    active = (peak > run.values[-1]).any(dim=0) if before == k else torch.ones(n_maps, dtype=torch.bool)
    if active.any():
        cols = active.nonzero().squeeze(1)
        values = torch.cat([run.values[:, cols], peak[:, cols]])
        # A stable sort, not topk: ties (a map that is 0 on many images) go to the earliest image,
        # so the result does not depend on the batch size. The running best come first and are earlier.
        keep = values.sort(dim=0, descending=True, stable=True).indices[:k]  # (k', A)
        new = keep >= before  # entries taken from this batch
        ids = torch.cat([run.ids[:, cols], positions.view(-1, 1).expand(-1, len(cols))]).gather(0, keep)
        nodes = torch.cat([run.nodes[:, cols], positions.new_zeros(len(peak), len(cols))]).gather(0, keep)
        rows = (keep[new] - before) * n_maps + cols.expand_as(keep)[new]  # into flat viewed (B·M, P)
        nodes[new] = flat.reshape(-1, flat.shape[2]).index_select(0, rows).argmax(dim=1)
        if len(cols) == n_maps:
            run.values, run.ids, run.nodes = values.gather(0, keep), ids, nodes
        else:
            run.values[:, cols], run.ids[:, cols], run.nodes[:, cols] = values.gather(0, keep), ids, nodes


def _add_sample(run: _Running, flat: torch.Tensor) -> None:
    """Add one batch ``(B, M, P)`` of the median sample's images: their peaks and arg-max nodes,
    and the sums behind the mean activation and the zero fraction (zeros counted as ``Σ|sign(x)|``,
    faster than ``count_nonzero``)."""
    peak, node = flat.max(dim=2)
    run.sample_values.append(peak.cpu())
    run.sample_nodes.append(node.cpu())
    run.total += flat.sum(dim=2).sum(dim=0, dtype=torch.float64)
    run.zeros += flat.shape[0] * flat.shape[2] - flat.sign().abs_().sum(dim=2).sum(dim=0, dtype=torch.float64).long()


def _finish(
    run: _Running,
    geometry: LayerGeometry,
    hw: tuple[int, int],
    images: torch.Tensor,
    image_ids: torch.Tensor,
    sample_positions: torch.Tensor,
    n_median: int,
    k: int,
) -> LayerExemplars:
    values = run.values.T.cpu()  # kept sorted: value descending, then split position
    top = run.ids.T.cpu()
    flat_nodes = run.nodes.T.cpu()
    width = hw[1]
    nodes = torch.stack([flat_nodes // width, flat_nodes % width], dim=-1)
    sample_values = torch.cat(run.sample_values)  # (S, M)
    sample_nodes = torch.cat(run.sample_nodes)
    median = sample_values.median(dim=0).values  # (M,)
    closest = (sample_values - median).abs().sort(dim=0, stable=True).indices[:n_median]  # (m, M)
    median_values = sample_values.gather(0, closest).T
    median_positions = sample_positions[closest].T
    median_flat = sample_nodes.gather(0, closest).T
    median_nodes = torch.stack([median_flat // width, median_flat % width], dim=-1)
    count = len(sample_positions) * hw[0] * hw[1]
    return LayerExemplars(
        layer=geometry.layer,
        rf_size=geometry.size if geometry.spatial else geometry.image_size,
        values=values,
        image_ids=image_ids[top],
        nodes=nodes,
        crops=crop_windows(images, top, nodes, geometry),
        median_values=median_values,
        median_ids=image_ids[median_positions],
        median_nodes=median_nodes,
        median_crops=crop_windows(images, median_positions, median_nodes, geometry),
        mean_activation=(run.total / count).float().cpu(),
        zero_fraction=(run.zeros.double() / count).float().cpu(),
    )


def crop_windows(
    images: torch.Tensor, positions: torch.Tensor, nodes: torch.Tensor, geometry: LayerGeometry
) -> torch.Tensor:
    """Receptive-field crops ``(*positions.shape, C, r, r)`` of ``images[positions]`` around ``nodes``.

    Parts of a window outside the image (the network's zero padding) are 0.
    """
    side = geometry.size if geometry.spatial else geometry.image_size
    pad = side
    padded = F.pad(images[positions.flatten()], (pad, pad, pad, pad))
    crops = []
    for image, (y, x) in zip(padded, nodes.reshape(-1, 2).tolist(), strict=True):
        top, left, _, _ = geometry.window(y, x)
        crops.append(image[:, top + pad : top + pad + side, left + pad : left + pad + side])
    stacked = torch.stack(crops) if crops else images.new_zeros(0, images.shape[1], side, side)
    return stacked.view(*positions.shape, images.shape[1], side, side)


def save_exemplars(exemplars: dict[str, LayerExemplars], path: str | Path) -> Path:
    """Write exemplars of all layers to one file (tensors and plain types only), atomically."""
    path = Path(path)
    payload = {name: {f.name: getattr(ex, f.name) for f in fields(ex)} for name, ex in exemplars.items()}
    with atomic_write(path, binary=True) as fh:
        torch.save(payload, fh)
    return path


def load_exemplars(path: str | Path) -> dict[str, LayerExemplars]:
    """Read what :func:`save_exemplars` wrote (``weights_only``: no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no exemplars at {path}: run the exemplars stage first (cnnscope repro exemplars)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return {name: LayerExemplars(**record) for name, record in payload.items()}
