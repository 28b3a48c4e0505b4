"""OIPs ("original input patterns"): inputs found by gradient ascent that drive a map, or one node
of a map, of a trained network as strongly as possible.

Split as in Lucent: :mod:`~cnnscope.oip.param` (noise at spatial wavelengths),
:mod:`~cnnscope.oip.spectral` and :mod:`~cnnscope.oip.color` (the Fourier parameterisation and the
data's decorrelated colour space, for colour images), :mod:`~cnnscope.oip.objectives` (map mean,
node), :mod:`~cnnscope.oip.transforms` (high-frequency suppression, jitter, zoom and rotation),
:mod:`~cnnscope.oip.ascent` (the loop), :mod:`~cnnscope.oip.metrics` (per-map numbers);
:mod:`~cnnscope.oip.generate` batches all candidates of a layer.
"""

from cnnscope.oip.errors import OIPError
from cnnscope.oip.generate import (
    NodeOIPResult,
    OIPResult,
    OIPSettings,
    default_layer,
    generate_node_oips,
    generate_oips,
)
from cnnscope.oip.metrics import (
    cross_map_similarity,
    map_table,
    pick_maps,
    robustness,
    shared_start_similarity,
    summary,
)

__all__ = [
    "NodeOIPResult",
    "OIPError",
    "OIPResult",
    "OIPSettings",
    "cross_map_similarity",
    "default_layer",
    "generate_node_oips",
    "generate_oips",
    "map_table",
    "pick_maps",
    "robustness",
    "shared_start_similarity",
    "summary",
]
