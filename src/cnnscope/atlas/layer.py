"""What the unit atlas is built from: one :class:`NetworkLayer` per layer of each trained network
(tables, crops, OIPs, matching), filled by :mod:`cnnscope.atlas.collect` and written as pages by
:mod:`cnnscope.atlas.site`; and its error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cnnscope.errors import CnnscopeError


class AtlasError(CnnscopeError, ValueError):
    """The atlas cannot be written where asked, or its inputs do not fit together."""


@dataclass
class NetworkLayer:
    """Everything the atlas shows for one layer of one trained network (variant, seed).

    Arrays are indexed by map first; any of them may be None when that stage did not produce it
    (OIPs exist for the OIP stage's layer only).
    """

    variant: str
    seed: int
    layer: str
    #: One row per map with a ``map`` column and any of the :data:`cnnscope.atlas.page.STATS` columns (and
    #: ``path_oip_<layer>``/``path_natural_<layer>`` pairs).
    table: pd.DataFrame
    #: ``(M, k, C, r, r)`` uint8 top exemplars' receptive-field crops.
    crops: np.ndarray | None = None
    #: ``(M, m, C, r, r)`` uint8 crops of images at the median activation.
    median_crops: np.ndarray | None = None
    #: ``(M, C, H, W)`` the maps' OIPs (any scale; shown stretched per image).
    oips: np.ndarray | None = None
    #: The maps that have an OIP (the OIP stage may optimise a subset); None: all.
    oip_maps: list[int] | None = None
    #: ``(M, S, C, H, W)`` the OIP at steps :attr:`evolution_steps`.
    evolution: np.ndarray | None = None
    evolution_steps: list[int] = field(default_factory=list)
    #: ``(M, V, C, H, W)`` final OIPs of every start (restart × wavelength), labelled :attr:`start_labels`.
    starts: np.ndarray | None = None
    start_labels: list[str] = field(default_factory=list)
    #: Per-node OIPs of one map: ``(map, images (Hn, Wn, C, H, W))``.
    nodes: tuple[int, np.ndarray] | None = None
    #: ``matches[i]``: this network's map matched to map ``i`` of the reference (first) network;
    #: None means the same index (networks share their initialisation per seed).
    matches: list[int] | None = None
    #: ``match_corr[i]``: correlation of map ``matches[i]`` with map ``i`` of the reference.
    match_corr: list[float] | None = None
    #: The layer whose matching these maps inherit (a pooling layer keeps its ReLU's channels);
    #: None when the matching is this layer's own.
    match_via: str | None = None
    #: The maps the trajectory stage followed over training in this layer (the most active at the end
    #: of training), in its order; empty when it followed none here.
    training_maps: list[int] = field(default_factory=list)
    #: The gradient steps of the checkpoints it measured.
    training_steps: list[int] = field(default_factory=list)
    #: ``(len(training_maps), S, C, H, W)``: each followed map's OIP at every checkpoint (same noise each time).
    training: np.ndarray | None = None
    #: ``training_classes[i][j]``: the class of followed map ``i``'s top image at checkpoint ``j``.
    training_classes: list[list[str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.variant} seed{self.seed}"

    def has_oip(self, m: int) -> bool:
        return self.oips is not None and (self.oip_maps is None or m in self.oip_maps)

    @property
    def n_maps(self) -> int:
        return len(self.table)
