"""The seed studies' presets run end to end — on real data, at a reduced size that fits CI.

The full presets are GPU-sized (see README); these runs keep every stage and figure but cut the
training set, epochs and OIP steps (``pipeline.TINY``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipeline import run_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def figures(index: Path) -> set[str]:
    return {Path(e["path"]).name for e in json.loads(index.read_text())["figures"] if "path" in e}  # not sentences


def check_results(root: Path, params: dict[str, Any]) -> str:
    """What every preset must produce, whatever the data: an accuracy for each variant, trained ones
    above chance and above the untrained null model; every probe named through to the report; the
    OIP table filled for every variant. Returns the report."""
    manifest = json.loads((root / "data/prepared/manifest.json").read_text())
    chance = 1 / len(manifest["classes"])
    specs = params["study"]["variant_specs"]
    variants = params["study"]["variants"]
    acc = {v: json.loads((root / f"metrics/train/{v}_seed0.json").read_text())["test_acc"] for v in variants}
    assert all(0 <= a <= 1 for a in acc.values()), acc
    trained = [v for v in variants if specs[v]["train"]]
    nulls = [v for v in variants if not specs[v]["train"]]
    assert trained and nulls, params["study"]
    for v in trained:
        assert acc[v] > chance + 0.05, f"{v} is at chance: {acc}"
        assert all(acc[v] > acc[n] for n in nulls), acc

    # the pixel mlp joins the accuracies and the pattern-classification table, not the per-map sections
    variants = [v for v in variants if specs[v]["model"].get("name") != "mlp"]
    probes = [p["name"] for p in params["data"]["probes"]]
    assert [p["name"] for p in manifest["probes"]] == probes
    assert {f"softmax_{p}.png" for p in probes} <= figures(root / "compare/index.json")
    folder = root / "reports" / params["study"]["name"]
    report = (folder / "README.md").read_text()
    certainty = pd.read_csv(folder / "tables/probe_softmax.csv")
    assert set(certainty["sample"]) == set(probes) and set(certainty["variant"]) == set(variants)
    compact = report.split("**Softmax certainty")[-1]
    for v in variants:
        assert re.search(rf"^\| {v} +\| +{len(probes)} \|", compact, re.M), f"no probe summary for {v}"

    maps = params["oip"]["maps"]
    oip_section = report.split("## 3.")[1].split("###")[0]
    for v in variants:
        table = pd.read_csv(root / f"oip/{v}/seed0/maps.csv")
        assert table["map"].tolist() == maps and table["best_activation"].notna().all()
        assert json.loads((root / f"metrics/oip/{v}_seed0.json").read_text())["maps"] == len(maps)
        assert re.search(rf"^\| {v} +\|.*\d", oip_section, re.M), f"no OIP row for {v} in the report"
    return report


def test_cifar10_frog(tmp_path: Path, shared_data: Path) -> None:
    overrides = ["experiment=cifar10_frog", f"data.root={shared_data / 'cifar10-jpeg.tar.gz'}"]
    # 2,000 images for 1 epoch left both networks at chance (11.5 %, 10.1 %): train enough to learn
    overrides += ["data.train_size=4000", "data.subsets=[2000]", "study.variant_specs.dummy.train_subset=2000"]
    overrides += ["trainer.max_epochs=3", "study.seeds=[0]", "extract.eval_samples=500"]
    overrides += ["study.variants=[benchmark,dummy,untrained]", "study.contrasts=[[benchmark,dummy]]"]
    params = run_pipeline(tmp_path, overrides)
    report = check_results(tmp_path, params)
    assert params["data"]["probes"][0]["label"] == "frog"
    shown = figures(tmp_path / "compare/index.json")
    assert {"feature_maps_relu1.png", "feature_maps_relu6.png"} <= shown
    assert "benchmark − dummy" in report


def test_mnist_oip(tmp_path: Path, shared_data: Path) -> None:
    overrides = ["experiment=mnist_oip", f"data.root={shared_data}", "data.train_size=3000", "study.seeds=[0]"]
    overrides += ["extract.eval_samples=500"]
    overrides += ["study.variants=[benchmark,dummy,untrained,mlp]", "study.contrasts=[[benchmark,dummy]]"]
    params = run_pipeline(tmp_path, overrides)
    report = check_results(tmp_path, params)
    assert "Without OIPs: `mlp` (no convolution" in report and "Without exemplars: `mlp`" in report
    assert re.search(r"^\| mlp +\| network head +\| +0\.\d+", report, re.M), "no pixel-MLP row"
    assert {"oip_grid.png", "evolution.png", "wavelengths.png"} <= figures(tmp_path / "oip/benchmark/seed0/index.json")
    assert "fcp_benchmark_class4.png" in figures(tmp_path / "compare/index.json")


def test_edge_filters(tmp_path: Path) -> None:
    params = run_pipeline(tmp_path, ["experiment=edge_filters"])
    assert {"edge_filters.png", "pixel_values.png"} <= figures(tmp_path / "compare/index.json")
    assert "edge_filters.png" in check_results(tmp_path, params)
