"""The seed studies' presets run end to end — on real data, at a reduced size that fits CI.

The full presets are GPU-sized (see README); these runs keep every stage and figure but cut the
training set, epochs and OIP steps (``pipeline.TINY``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import run_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def figures(index: Path) -> set[str]:
    return {Path(e["path"]).name for e in json.loads(index.read_text())["figures"]}


def test_cifar10_frog(tmp_path: Path, shared_data: Path) -> None:
    overrides = ["experiment=cifar10_frog", f"data.root={shared_data / 'cifar10-jpeg.tar.gz'}"]
    overrides += ["data.train_size=2000", "data.subsets=[400]", "study.variant_specs.dummy.train_subset=400"]
    overrides += ["study.variants=[benchmark,dummy,untrained]", "study.contrasts=[[benchmark,dummy]]"]
    run_pipeline(tmp_path, overrides)
    manifest = json.loads((tmp_path / "data/prepared/manifest.json").read_text())
    assert manifest["probes"][0] == {**manifest["probes"][0], "name": "frog", "label": "frog"}
    shown = figures(tmp_path / "compare/index.json")
    assert {"feature_maps_frog_relu1.png", "feature_maps_frog_relu6.png", "softmax_frog.png"} <= shown
    report = (tmp_path / "reports/README.md").read_text()
    assert "study `cifar10_frog`" in report and "benchmark − dummy" in report


def test_mnist_oip(tmp_path: Path, shared_data: Path) -> None:
    overrides = ["experiment=mnist_oip", f"data.root={shared_data}", "data.train_size=3000"]
    overrides += ["study.variants=[benchmark,dummy,untrained]", "study.contrasts=[[benchmark,dummy]]"]
    run_pipeline(tmp_path, overrides)
    assert {"oip_grid.png", "evolution.png", "wavelengths.png"} <= figures(tmp_path / "oip/benchmark/seed0/index.json")
    assert "fcp_benchmark_class4.png" in figures(tmp_path / "compare/index.json")


def test_edge_filters(tmp_path: Path) -> None:
    run_pipeline(tmp_path, ["experiment=edge_filters"])
    assert {"edge_filters.png", "pixel_values.png"} <= figures(tmp_path / "compare/index.json")
    assert "edge_filters" in (tmp_path / "reports/README.md").read_text()
