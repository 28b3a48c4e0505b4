"""One network's trajectory: its saved checkpoints → a tidy table, the tracked maps, their OIPs.

What the ``trajectory@<variant>-<seed>`` stage writes, computed from the weights kept along
training (``models/<variant>/seed<k>/checkpoints/``). The untrained null model has one point
(step 0); a network without feature maps (the pixel ``mlp``) gets its test accuracy and CKA-free
rows only.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnscope.activations.sampling import stratified_sample
from cnnscope.analysis.sample_order import sample_order
from cnnscope.config import Params
from cnnscope.data.prepared import PreparedData
from cnnscope.errors import CnnscopeError
from cnnscope.io import atomic_write
from cnnscope.layout import OIP_TABLE, OIP_TENSORS, TRAJECTORY_TABLE
from cnnscope.models import LayeredCNN, load_model
from cnnscope.models.steps import saved_steps
from cnnscope.trajectory.measures import PassSettings, measure_pass, most_active_maps
from cnnscope.trajectory.oips import oips_over_training, trajectory_settings

#: The two tables' columns, in file order.
TABLE_COLUMNS = ("step", "layer", "measure", "value")
MAP_COLUMNS = ("step", "map", "top_value", "top_class", "oip_objective")


class TrajectoryError(CnnscopeError):
    """A run has no weights along training to follow."""


@dataclass
class Trajectory:
    #: Tidy rows: ``step, layer, measure, value`` (``layer`` empty for the test accuracy), sorted.
    table: list[dict[str, Any]]
    #: Per step and tracked map: its top image's value and class, its OIP's objective.
    maps: list[dict[str, Any]]
    #: ``steps``, ``layer``, ``maps``, ``images`` ``(steps, maps, C, H, W)`` float16, ``mean``/``std``.
    tensors: dict[str, Any]

    def save(self, folder: Path) -> None:
        for name, rows, columns in ((TRAJECTORY_TABLE, self.table, TABLE_COLUMNS), (OIP_TABLE, self.maps, MAP_COLUMNS)):
            with atomic_write(folder / name) as fh:
                write_csv(fh, rows, columns)
        with atomic_write(folder / OIP_TENSORS, binary=True) as fh:
            torch.save(self.tensors, fh)


def _cell(value: object) -> object:
    """A value as ``DataFrame.to_csv(float_format="%.6g")`` writes it (NaN as an empty field)."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def write_csv(fh: Any, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """``rows`` as CSV, byte for byte what pandas wrote before: the stage no longer imports pandas,
    whose ~60 MB came on top of everything the stage held (peak memory, issue 26)."""
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_cell(row[c]) for c in columns] for row in rows)


class SavedNetworks(Mapping[int, LayeredCNN]):
    """Step → network, for every checkpoint saved along the run in ``run``, each read from disk when
    it is asked for. The pass holds one network at a time besides the initial and final ones, so
    its memory does not grow with the number of checkpoints (issue 26); a read takes milliseconds."""

    def __init__(self, run: Path, device: torch.device) -> None:
        self._paths = dict(saved_steps(run))
        if not self._paths:
            raise TrajectoryError(
                f"{run} holds no weights along training (checkpoints/step*.ckpt): re-run its train stage "
                "with this code (trainer.checkpoint_steps)"
            )
        self._device = device

    def __getitem__(self, step: int) -> LayeredCNN:
        return load_model(self._paths[step], self._device)

    def __iter__(self) -> Iterator[int]:
        return iter(self._paths)  # in step order

    def __len__(self) -> int:
        return len(self._paths)


def eval_images(data: PreparedData, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The class-stratified evaluation sample of the test split, in one seeded order."""
    ids = data.splits["test"]
    chosen = stratified_sample(ids, data.labels[ids], count)
    chosen = chosen[torch.from_numpy(sample_order(chosen.numpy(), seed))]
    return data.images[chosen], data.labels[chosen]


def run_trajectory(
    params: Params,
    models: Mapping[int, LayeredCNN],
    sample: tuple[torch.Tensor, torch.Tensor],
    classes: Sequence[str],
    colour_sqrt: Any = None,
) -> Trajectory:
    """Every measure of every checkpoint in ``models`` (step → network, in step order) on the
    evaluation ``sample`` (:func:`eval_images`; labels index ``classes``). It takes the sample, not
    the prepared data, so the stage can let the dataset go before the pass (peak memory, issue 26)."""
    cfg = params.trajectory
    steps = sorted(models)
    initial, final = models[steps[0]], models[steps[-1]]
    images, labels = sample
    layers = list(final.conv_layers)
    tracked = most_active_maps(final, images, layers[-1], cfg.maps, cfg.batch_size) if layers else []
    settings = PassSettings(cfg.batch_size, cfg.probe_samples, cfg.bins, cfg.entropy_range, params.compare.probe_grid)
    rows, best = measure_pass(models, initial, final, images, labels, layers, tracked, settings)
    tensors: dict[str, Any] = {"steps": steps, "layer": layers[-1] if layers else None, "maps": tracked}
    map_rows: list[dict[str, Any]] = []
    if tracked:
        oip_images, objective = oips_over_training(
            models, layers[-1], tracked, trajectory_settings(params.oip, cfg.oip_steps, colour_sqrt)
        )
        tensors |= {"images": oip_images, "mean": final.mean.cpu(), "std": final.std.cpu()}
        for i, step in enumerate(steps):
            values, top = best[step]
            for j, m in enumerate(tracked):
                map_rows.append(
                    {"step": step, "map": m, "top_value": float(values[j]), "top_class": classes[int(top[j])],
                     "oip_objective": float(objective[i, j])}
                )  # fmt: skip
    table = sorted(rows, key=lambda row: (row["step"], row["layer"], row["measure"]))  # stable
    return Trajectory(table, map_rows, tensors)
