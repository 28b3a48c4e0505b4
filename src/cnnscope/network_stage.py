"""What the per-network stage scripts (``oip``, ``exemplars``: one run per variant × seed) share
besides their command line (:mod:`cnnscope.stage_args`): the trained network they read, checked
against the configuration, and what they write for a network without feature maps."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cnnscope.config import Params, variant_model_config
from cnnscope.io import atomic_dir, write_json
from cnnscope.layout import best_checkpoint

if TYPE_CHECKING:  # torch is imported by load_network, not by --help
    from cnnscope.models import LayeredCNN


def load_network(
    params: Params, variant: str, seed: int, data_shape: tuple[int, int, int] | None = None
) -> tuple[LayeredCNN, Path]:
    """The trained network of ``variant`` × ``seed`` (``best.ckpt``, on the best device) and its
    checkpoint path; a checkpoint of another architecture or data shape (``(channels, image size,
    classes)``) is refused with the command that rebuilds it."""
    from cnnscope.models import best_device, load_for_config

    checkpoint = best_checkpoint(params.trainer.models_dir, variant, seed)
    expected = variant_model_config(params, variant).name.value
    rerun = f"cnnscope repro train@{variant}-{seed}"
    return load_for_config(checkpoint, expected, rerun, data_shape, map_location=best_device()), checkpoint


#: What the per-map stages record for a network without feature maps (the pixel ``mlp``).
NO_MAPS = "no feature maps: the network has no convolution, so there is no map to optimise or rank images for"


def write_no_maps(out_dir: Path, metrics_path: Path, index: dict[str, object]) -> None:
    """The outputs of a per-map stage for a network without feature maps: ``index.json`` saying
    so (``index`` plus the note) and a metrics file counting zero maps — so the pipeline's other
    variants go on, and the report can say why this one has no OIPs or exemplars."""
    with atomic_dir(out_dir) as tmp:
        write_json(tmp / "index.json", {**index, "note": NO_MAPS})
    write_json(metrics_path, {"maps": 0})
    print(f"{out_dir}: {NO_MAPS}")
