"""Start-up cost of the per-network stages (issue 22, item 7; issue 26's memory goal): each stage's
set of heavy packages is pinned.

Every per-network stage is a process of its own, run once per variant × seed, so a package it
imports but does not use costs its import time (0.2-1 s each) and its memory (tens of MB) in every
one of them. Each test runs one stage for real, in a fresh interpreter, on a copy of the tiny study
(``benchmark``, seed 0), and compares the heavy packages it ended up with to the set below: a
module-level import that brings back a package the stage does not use fails here, naming it
(``python -X importtime pipelines/<stage>.py …`` shows who imported it). A stage that starts using
a new package updates its row, with the reason. ``--help`` and the network-without-maps paths are
pinned in ``tests/test_startup.py``; the measured times are in benchmarks/README.md.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO_ROOT, TINY_STUDY_GROUP
from pipeline import clean_env
from test_startup import heavy_after, run_script

# slow: each stage runs for real on the tiny study; the xdist group: the worker that runs tiny_study once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(TINY_STUDY_GROUP)]

#: stage → (the heavy packages a run imports, why each is needed)
STAGE_IMPORTS: dict[str, tuple[list[str], str]] = {
    "train": (
        ["lightning", "matplotlib", "mlflow", "pandas", "scipy", "torch", "torchvision"],
        "Lightning trains, MLflow records, matplotlib draws confusion.png, pandas writes the history; "
        "Lightning's torchmetrics imports torchvision and SciPy itself (not avoidable from here)",
    ),
    "extract": (["torch"], "the forward pass only"),
    "measures": (
        ["pandas", "scipy", "torch"],
        "SciPy's L-BFGS-B fits the linear and spatial probes, pandas builds the tables",
    ),
    "histograms": (
        ["pandas", "torch"],
        "bins only: no SciPy (pandas still comes with cnnscope.analysis.measures and "
        "cnnscope.analysis.study, which it reads the sets through)",
    ),
    "oip": (
        ["matplotlib", "mlflow", "pandas", "scipy", "torch"],
        "MLflow records (it imports pandas and SciPy), matplotlib draws the OIP figures",
    ),
    "exemplars": (["pandas", "torch"], "pandas writes the exemplar and OIP-against-data tables"),
    "trajectory": (
        ["scipy", "torch"],
        "SciPy's L-BFGS-B fits the spatial probes after the pass; the tables are written with the csv "
        "module (pandas was ~60 MB on top of the stage's peak); no Lightning, MLflow, matplotlib or torchvision",
    ),
}


@pytest.fixture
def study_copy(tiny_study: tuple[Path, dict[str, Any]], tmp_path: Path) -> Path:
    """A copy of the tiny study to run stages in (the session's study is shared, read-only)."""
    workdir, _ = tiny_study
    target = tmp_path / "study"
    shutil.copytree(workdir, target, symlinks=True)
    return target


@pytest.mark.parametrize("stage", list(STAGE_IMPORTS))
def test_a_stage_imports_only_the_heavy_packages_it_uses(stage: str, study_copy: Path) -> None:
    argv = ["--variant", "benchmark", "--seed", "0"] + (["--no-progress"] if stage == "train" else [])
    code = run_script(REPO_ROOT / "pipelines" / f"{stage}.py", *argv)
    expected, why = STAGE_IMPORTS[stage]
    env = clean_env() | {"OMP_NUM_THREADS": "1", "CNNSCOPE_QUIET": "1"}
    assert sorted(heavy_after(code, study_copy, env)) == expected, why
