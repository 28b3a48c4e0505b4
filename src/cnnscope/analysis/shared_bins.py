"""The bin edges every network of a study shares, from each network's own ranges, and one network's
histograms on them: the ``histograms@<variant>-<seed>`` stages.

Why a stage of its own: the histograms need every network's range before any can be binned (the
edges of a layer run from its smallest to its largest value in any network), so they cannot be
made in ``measures@`` (one network alone), and binning every layer of every network was the
largest part of what ``compare`` still did in one process. The ranges are small and already in
the ``measures@`` results; from them each network's histograms are made on their own, side by side.
The edges are computed by the same functions here and in ``compare`` (:func:`layer_edges`,
:func:`scale_free_edges`), so both see the same bins, and the counts are the integers
:func:`~cnnscope.analysis.histograms.image_histograms` gives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from cnnscope.activations import SOFTMAX, ActivationSet
from cnnscope.analysis.histograms import image_histograms, shared_edges
from cnnscope.analysis.network import PROBE, NetworkMeasures, write_arrays
from cnnscope.analysis.study.common import EVAL, PASS_THROUGH
from cnnscope.layout import HISTOGRAMS

Net = tuple[str, int]
GROUPS = (EVAL, PROBE)


def binned_layers(sets: Mapping[Net, ActivationSet]) -> list[str]:
    """The layers ``compare`` bins: those every network captured, less pass-through layers and the
    softmax (a distribution over classes, not a map)."""
    ref = next(iter(sets.values()))
    shared = [name for name in ref.layers if all(name in s.layers for s in sets.values())]
    return [name for name in shared if ref.kinds.get(name) not in PASS_THROUGH and name != SOFTMAX]


def layer_edges(networks: Mapping[Net, NetworkMeasures], layers: Iterable[str], bins: int) -> dict[str, np.ndarray]:
    """Per layer, ``bins`` equal-width edges over its range in every network and image group."""
    out = {}
    for layer in layers:
        moments = [networks[net].moments(g, layer) for net in networks for g in GROUPS]
        lows = [m.low.min() for m in moments if len(m.low)]
        highs = [m.high.max() for m in moments if len(m.high)]
        out[layer] = shared_edges(float(min(lows)), float(max(highs)), bins)
    return out


def scale_free_edges(networks: Mapping[Net, NetworkMeasures], layer: str, bins: int) -> np.ndarray:
    """The normalised edges of :func:`~cnnscope.analysis.scalefree.scale_free_from_passes`: over
    the range of ``x / s`` in every network (``s``: each network's robust scale)."""
    passes = {net: nm.scale_pass(layer) for net, nm in networks.items()}
    lows = [p[1][0] / p[0] for p in passes.values() if np.isfinite(p[1][0])]
    highs = [p[1][1] / p[0] for p in passes.values() if np.isfinite(p[1][1])]
    return shared_edges(min(lows, default=0.0), max(highs, default=1.0), bins)


def network_histograms(
    aset: ActivationSet, own: NetworkMeasures, networks: Mapping[Net, NetworkMeasures], layers: Sequence[str], bins: int
) -> dict[str, np.ndarray]:
    """One network's per-image counts ``(N, bins)`` on the study's shared edges: ``counts/<group>/<layer>``
    and, on its scale-free edges times its own scale, ``scalefree/<layer>`` (eval sample)."""
    edges = layer_edges(networks, layers, bins)
    out = {}
    for layer in layers:
        x = aset.array(EVAL, layer)
        out[f"counts/{EVAL}/{layer}"] = image_histograms(x, edges[layer])
        out[f"counts/{PROBE}/{layer}"] = image_histograms(aset.array(PROBE, layer), edges[layer])
        scale = own.scale_pass(layer)[0]
        out[f"scalefree/{layer}"] = image_histograms(x, scale_free_edges(networks, layer, bins) * scale)
        del x
    return out


def save(counts: Mapping[str, np.ndarray], directory: str | Path) -> None:
    """``counts`` as one ``.npz`` in ``directory`` (the caller makes it atomic)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_arrays(directory / HISTOGRAMS, counts)


def load(directory: str | Path) -> Mapping[str, np.ndarray]:
    """What :func:`save` wrote, read member by member when used."""
    return np.load(Path(directory) / HISTOGRAMS, allow_pickle=False)
