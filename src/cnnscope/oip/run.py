"""One network's OIPs as the ``oip`` stage makes them, as named steps: every map of the layer as
one batch, the per-map table, the maps the figures follow, every node of the focus map, the
summary metrics and the saved tables (``maps.csv``, ``oips.pt``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from cnnscope.io import atomic_write
from cnnscope.layout import OIP_TABLE, OIP_TENSORS
from cnnscope.models import LayeredCNN
from cnnscope.oip.generate import NodeOIPResult, OIPResult, OIPSettings, generate_node_oips, generate_oips, layer_shape
from cnnscope.oip.metrics import cross_map_similarity, map_table, pick_maps, shared_start_similarity, summary

if TYPE_CHECKING:  # the type only: the OIP code runs without the config (and omegaconf)
    from cnnscope.config import OIPConfig

#: Maps followed step by step in ``evolution.png`` unless ``oip.evolution_maps`` names them.
EVOLUTION_MAPS = 4
#: The files :meth:`OIPRun.save` writes, as listed in the stage's ``index.json``.
TABLES = {OIP_TABLE: "per-map OIP numbers", OIP_TENSORS: "OIP tensors, histories, snapshots"}


@dataclass
class OIPRun:
    """The OIPs of one layer, their per-map table, the maps the figures follow, and the node OIPs
    of the focus map (None for a dense layer, which has no nodes)."""

    result: OIPResult
    table: pd.DataFrame
    focus: int
    evolution_maps: list[int]
    nodes: NodeOIPResult | None

    def metrics(self) -> dict[str, Any]:
        """The stage's metrics: :func:`~cnnscope.oip.metrics.summary` against the cross-map null
        (and the shared-start check), the layer and the focus map."""
        live = ~torch.tensor(self.table["dead"].to_numpy(dtype=bool))
        cross = cross_map_similarity(self.result.images, live)
        shared = shared_start_similarity(self.result.images, live)
        return {**summary(self.table, cross, shared), "layer": self.result.layer, "focus_map": self.focus}

    def save(self, folder: str | Path) -> None:
        """Write :data:`TABLES` into ``folder``."""
        with atomic_write(Path(folder) / OIP_TABLE) as fh:
            self.table.to_csv(fh, index=False, float_format="%.6g")
        with atomic_write(Path(folder) / OIP_TENSORS, binary=True) as fh:
            torch.save(self.result.tensors(self.nodes), fh)


def run_oips(model: LayeredCNN, cfg: OIPConfig, colour_sqrt: tuple[tuple[float, ...], ...] | None = None) -> OIPRun:
    """The ``oip`` section's OIPs of ``model``; ``colour_sqrt``: the decorrelated colour space
    (:func:`cnnscope.oip.color.colour_sqrt`) when ``oip.decorrelate`` is on."""
    settings = OIPSettings.from_config(cfg, colour_sqrt)
    result = generate_oips(model, cfg.layer, cfg.maps or None, settings, cfg.snapshots)
    table = map_table(result, cfg.convergence_tol)
    focus = pick_maps(table, [] if cfg.focus_map is None else [cfg.focus_map], 1, "focus_map")[0]
    evolution_maps = pick_maps(table, cfg.evolution_maps, EVOLUTION_MAPS, "evolution_maps")
    spatial = len(layer_shape(model, result.layer)) >= 3  # a dense layer has no nodes to map
    nodes = generate_node_oips(model, focus, result.layer, settings) if spatial else None
    return OIPRun(result, table, focus, evolution_maps, nodes)
