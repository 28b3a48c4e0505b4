"""The contract between stages: where each stage writes its outputs, under which names, and how the
next stage, the report and the atlas read them back.

Per-network outputs live at ``<out_dir>/<variant>/seed<k>/`` (:func:`run_dir`), ``out_dir`` coming
from params.yaml (``trainer.models_dir``, ``extract.out_dir``, ``oip.out_dir``,
``exemplars.out_dir``, ``trajectory.out_dir``); each stage's per-network metrics at
``metrics/<stage>/<variant>_seed<k>.json`` (:func:`metrics_path`) and the training history at
``plots/train/<variant>_seed<k>.csv`` (:func:`history_path`), the paths dvc.yaml names.

This module is the only place in ``src/`` and ``pipelines/`` that spells these file names
(``tests/test_layout.py`` fails on a literal elsewhere), so a rename is one edit here and in
dvc.yaml. It imports nothing heavy: every stage imports it before parsing its command line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# prepare (``data.out_dir``) and extract (``extract.out_dir/<variant>/seed<k>``): what the folder holds
MANIFEST = "manifest.json"

# train: ``trainer.models_dir/<variant>/seed<k>/``
#: The weights the later stages use (lowest validation loss).
BEST_CKPT = "best.ckpt"
#: The weights before the first step (shared by the variants of one seed).
INITIAL_CKPT = "initial.ckpt"
#: The latest epoch's full training state, in the working folder (an interrupted run resumes it).
LAST_CKPT = "last.ckpt"
#: What produced the model (params, git commit, data checksum, fingerprint).
PROVENANCE = "provenance.json"
#: The test split's confusion matrix, as a table and a figure.
CONFUSION_TABLE, CONFUSION_FIGURE = "confusion.csv", "confusion.png"

# oip: ``oip.out_dir/<variant>/seed<k>/``; trajectory writes the same two for its tracked maps
#: One row per map (best restart and wavelength, convergence, robustness, …).
OIP_TABLE = "maps.csv"
#: The OIP tensors (``images``: maps × restarts × wavelengths × C × H × W), histories, snapshots.
OIP_TENSORS = "oips.pt"

# exemplars: ``exemplars.out_dir/<variant>/seed<k>/``
#: Each map's top images and the median image count (``LayerExemplars`` per layer).
EXEMPLARS = "exemplars.pt"
#: Each map's best OIP against its exemplars (only for networks with OIPs).
AGAINST_DATA = "against_data.csv"

# trajectory: ``trajectory.out_dir/<variant>/seed<k>/``
TRAJECTORY_TABLE = "trajectory.csv"

# measures: ``measures/<variant>/seed<k>/``, what compare computes from one network alone
MEASURES_ROOT = "measures"
#: The network's table rows (JSON: floats round-trip exactly) and its arrays (one ``.npz``).
MEASURES_ROWS, MEASURES_ARRAYS = "rows.json", "arrays.npz"
# histograms: ``histograms/<variant>/seed<k>/``, one network's counts on the study's shared bins
HISTOGRAMS_ROOT = "histograms"
HISTOGRAMS = "counts.npz"

METRICS_ROOT = "metrics"
TRAIN_HISTORY_ROOT = "plots/train"


def run_dir(root: str | Path, variant: str, seed: int) -> Path:
    """``<root>/<variant>/seed<k>``: the folder of one trained run's outputs in a stage's tree."""
    return Path(root) / variant / f"seed{seed}"


def run_name(variant: str, seed: int) -> str:
    """``<variant>_seed<k>``: the file stem of one run's metrics and plots."""
    return f"{variant}_seed{seed}"


def metrics_dir(stage: str, root: str | Path = "") -> Path:
    """``<root>/metrics/<stage>``: the per-network metrics of a matrix stage (train, oip, exemplars)."""
    return Path(root) / METRICS_ROOT / stage


def metrics_path(stage: str, variant: str, seed: int, root: str | Path = "") -> Path:
    """``<root>/metrics/<stage>/<variant>_seed<k>.json``: one network's metrics from ``stage``."""
    return metrics_dir(stage, root) / f"{run_name(variant, seed)}.json"


def stage_metrics(stage: str) -> Path:
    """``metrics/<stage>.json``: the metrics of a stage that runs once (compare, atlas)."""
    return Path(METRICS_ROOT) / f"{stage}.json"


def history_path(variant: str, seed: int, root: str | Path = "") -> Path:
    """``<root>/plots/train/<variant>_seed<k>.csv``: one run's per-epoch training history."""
    return Path(root) / TRAIN_HISTORY_ROOT / f"{run_name(variant, seed)}.csv"


def best_checkpoint(models_dir: str | Path, variant: str, seed: int) -> Path:
    """The trained network of ``variant`` × ``seed`` the later stages load."""
    return run_dir(models_dir, variant, seed) / BEST_CKPT


def initial_checkpoint(models_dir: str | Path, variant: str, seed: int) -> Path:
    """The weights of ``variant`` × ``seed`` before training."""
    return run_dir(models_dir, variant, seed) / INITIAL_CKPT


def read_run_metrics(
    stage: str, variants: Sequence[str], seeds: Sequence[int], root: str | Path = ""
) -> dict[tuple[str, int], dict[str, Any]]:
    """Every (variant, seed)'s ``metrics/<stage>/<variant>_seed<k>.json``, in that order.

    The one reader of per-network metrics: each run the study asks for must have its file (the
    report depends on the stage's whole metrics folder), and a missing one is an error naming it.
    """
    from cnnscope.errors import CnnscopeError

    out = {}
    for variant in variants:
        for seed in seeds:
            path = metrics_path(stage, variant, seed, root)
            if not path.is_file():
                raise CnnscopeError(f"{path} is missing: run the stage that writes it (dvc repro)")
            out[variant, seed] = json.loads(path.read_text())
    return out


def has_oips(folder: str | Path) -> bool:
    """Whether the OIP stage made OIPs in ``folder`` (a network without feature maps has none)."""
    return (Path(folder) / OIP_TENSORS).is_file()


def load_oips(folder: str | Path) -> dict[str, Any]:
    """The OIP tensors of one network (``layer``, ``maps``, ``restarts``, ``wavelengths``, ``images``, …)."""
    import torch

    tensors: dict[str, Any] = torch.load(Path(folder) / OIP_TENSORS, map_location="cpu", weights_only=True)
    return tensors


def read_oip_table(folder: str | Path) -> pd.DataFrame:
    """The OIP stage's per-map table of one network."""
    import pandas as pd

    return pd.read_csv(Path(folder) / OIP_TABLE)
