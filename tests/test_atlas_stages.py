"""The exemplars and atlas stage scripts on a tiny study, and their bad-input messages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from atlas_study import write_oip_outputs
from cnnscope.config import load_params
from cnnscope.data.prepared import PreparedData
from cnnscope.layout import AGAINST_DATA, BEST_CKPT, EXEMPLARS, metrics_path, run_dir, stage_metrics
from cnnscope.models import save_checkpoint
from cnnscope.report.assemble import Report
from cnnscope.report.atlas import atlas_section
from conftest import REPO_ROOT, random_model
from pipeline import run_stage_as_dvc

VARIANTS = ["benchmark", "untrained"]


def _stage(name: str, *argv: str) -> None:
    """Run ``pipelines/<name>.py argv…`` as DVC would; it must succeed."""
    assert run_stage_as_dvc(name, argv) == 0, f"{name} {argv} failed (its error is on stderr above)"


def _refused(name: str, argv: list[str], match: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The stage exits 2 with one ``cnnscope: error:`` line matching ``match``."""
    capsys.readouterr()
    assert run_stage_as_dvc(name, argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cnnscope: error: ") and re.search(match, err), err


@pytest.fixture
def study(tmp_path: Path, prepared: PreparedData, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Prepared data, two checkpoints and their OIP outputs (maps 0-3), params.yaml; cwd = tmp."""
    monkeypatch.chdir(tmp_path)
    prepared.save(tmp_path / "data/prepared")
    for i, variant in enumerate(VARIANTS):
        model = random_model(prepared, seed=i)
        save_checkpoint(model, tmp_path / "models" / variant / "seed0" / BEST_CKPT)
        write_oip_outputs(model.eval(), tmp_path / "oip" / variant / "seed0", [0, 1, 2, 3])
    _params(tmp_path)
    return tmp_path


def _params(root: Path, seeds: tuple[int, ...] = (0,), **exemplars: Any) -> None:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    study = {"variants": VARIANTS, "seeds": list(seeds), "oip_seeds": [0], "contrasts": [["benchmark", "untrained"]]}
    params["study"].update(study)
    params["exemplars"].update({"k": 4, "median_images": 2, "batch_size": 16, **exemplars})
    params["tracking"]["uri"] = f"sqlite:///{root / 'mlflow.db'}"  # the study's own store (atlas attaches to it)
    (root / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.mark.slow
def test_exemplars_then_atlas(study: Path) -> None:
    for variant in VARIANTS:
        _stage("exemplars", "--variant", variant, "--seed", "0")
    out = study / "exemplars" / "benchmark" / "seed0"
    assert {p.name for p in out.iterdir()} == {
        EXEMPLARS, "pool1.csv", "pool2.csv", "relu3.csv", AGAINST_DATA, "index.json",
    }  # fmt: skip
    against = pd.read_csv(out / AGAINST_DATA)
    assert against["map"].tolist() == [0, 1, 2, 3] and "path_oip_pool2" in against
    assert (metrics_path("exemplars", "untrained", 0, study)).is_file()
    maps = list(range(128))  # relu3 of the compare stage's matching: maps 3 and 5 swapped, the rest same index
    matched = pd.DataFrame({"map_a": maps, "map_b": [{3: 5, 5: 3}.get(m, m) for m in maps], "matched_corr": 0.87})
    ids = {"layer": "relu3", "variant_a": "benchmark", "seed_a": 0, "variant_b": "untrained", "seed_b": 0}
    (study / "compare" / "tables").mkdir(parents=True)
    matched.assign(**ids).to_csv(study / "compare" / "tables" / "matching.csv", index=False)
    _stage("atlas")
    page = (study / "atlas" / "default" / "maps" / "relu3" / "3.html").read_text()
    assert 'untrained seed0</a><br>map 5<br><span class="lab">matched, r = 0.87</span>' in page
    pool = (study / "atlas" / "default" / "maps" / "pool2" / "3.html").read_text()  # max-pool keeps relu2's maps
    assert 'untrained seed0</a><br>map 3<br><span class="lab">same index</span>' in pool  # relu2 not matched
    relu3_only = matched.assign(**ids)
    relu2 = relu3_only.assign(layer="relu2", map_b=[{7: 9, 9: 7}.get(m, m) for m in maps], matched_corr=0.5)
    pd.concat([relu3_only, relu2[relu2["map_a"] < 64]]).to_csv(study / "compare/tables/matching.csv", index=False)
    _stage("atlas")
    pool = (study / "atlas" / "default" / "maps" / "pool2" / "7.html").read_text()
    assert 'untrained seed0</a><br>map 9<br><span class="lab">matched via relu2, r = 0.50</span>' in pool
    index = study / "atlas" / "default" / "index.html"
    assert index.is_file() and (study / "atlas/default/overview.html").is_file()
    assert (study / stage_metrics("atlas")).is_file()
    report = Report(study / "report_tmp")
    atlas_section(report, load_params(), study, study / "reports")
    text = "\n".join(report.lines)
    assert "## 4. OIPs held against the data" in text and "median_normalised_activation" in text
    # the atlas is git-ignored: named as a path, never a link that a clone cannot follow (issue 25)
    assert "`../atlas/default/index.html`" in text and "](../atlas/" not in text
    assert "figures/atlas/oip_beside_exemplars.png" in text
    # drawn by the report itself (it does not wait for the atlas), the atlas's own figure byte for byte
    drawn = (study / "report_tmp/figures/atlas/oip_beside_exemplars.png").read_bytes()
    assert drawn == (study / "atlas/default/overview.png").read_bytes()


@pytest.mark.slow
def test_seeds_without_oips_get_exemplars_only(study: Path, prepared: PreparedData) -> None:
    """``study.oip_seeds=[0]`` of seeds 0 and 1: seed 1 gets exemplars and its silent maps, no OIP
    comparison, and the atlas and report section read OIP numbers from seed 0 only."""
    for i, variant in enumerate(VARIANTS):
        save_checkpoint(random_model(prepared, seed=10 + i), study / "models" / variant / "seed1" / BEST_CKPT)
    _params(study, seeds=(0, 1))
    for variant in VARIANTS:
        for seed in ("0", "1"):
            _stage("exemplars", "--variant", variant, "--seed", seed)
    assert not (run_dir(study / "exemplars", "benchmark", 1) / AGAINST_DATA).exists()
    assert (study / "exemplars/benchmark/seed1/relu3.csv").is_file()
    metrics = json.loads((metrics_path("exemplars", "benchmark", 1, study)).read_text())
    assert set(metrics) == {"maps", "silent_on_data"} and metrics["maps"] == 128
    _stage("atlas")
    assert json.loads((study / stage_metrics("atlas")).read_text())["networks"] == 12  # 2 variants × 2 seeds × 3 layers
    report = Report(study / "report_tmp")
    atlas_section(report, load_params(), study, study / "reports")
    text = "\n".join(report.lines)
    assert "seeds with OIPs ([0], `study.oip_seeds`)" in text and "| benchmark |" in text


@pytest.mark.slow
def test_network_without_maps_is_recorded_and_left_out(study: Path, prepared: PreparedData) -> None:
    """The pixel ``mlp`` has no feature maps: its oip and exemplars stages say so (and count zero
    maps) instead of failing the study, and the atlas shows the networks that have maps."""
    save_checkpoint(random_model(prepared, "mlp"), study / "models" / "mlp" / "seed0" / BEST_CKPT)
    params = yaml.safe_load((study / "params.yaml").read_text())
    params["study"]["variants"] = [*VARIANTS, "mlp"]
    params["study"]["variant_specs"]["mlp"] = {"train_subset": None, "train": True, "model": {"name": "mlp"}}
    (study / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in ("oip", "exemplars"):
        _stage(stage, "--variant", "mlp", "--seed", "0")
        index = json.loads((study / stage / "mlp" / "seed0" / "index.json").read_text())
        assert index["note"].startswith("no feature maps")
        assert json.loads((study / "metrics" / stage / "mlp_seed0.json").read_text()) == {"maps": 0}
    for variant in VARIANTS:
        _stage("exemplars", "--variant", variant, "--seed", "0")
    _stage("atlas")
    assert json.loads((study / stage_metrics("atlas")).read_text())["networks"] == 6  # 2 networks × 3 layers
    report = Report(study / "report_tmp")
    atlas_section(report, load_params(), study, study / "reports")
    text = "\n".join(report.lines)
    assert "Without exemplars: `mlp` (no convolution" in text and "| mlp " not in text


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"split": "tset"}, "the prepared data has no split 'tset'; choose one of"),
        # within the source's bound (checked at composition), beyond the prepared split: the stage's own check
        ({"k": 500}, r"exemplars\.k=500 images per map, but exemplars\.split='test' has \d+ images"),
        ({"median_images": 500}, r"exemplars\.median_images=500 .* has \d+ images .* set exemplars\.median_images ≤"),
        ({"layers": ["flatten"]}, "have no feature maps"),
        ({"layers": ["pool1"]}, r"oip.layer='relu3' is not among exemplars.layers=\['pool1'\]: add it there"),
    ],
)
def test_exemplars_bad_input_writes_nothing(
    study: Path, setting: dict[str, Any], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _params(study, **setting)
    _refused("exemplars", ["--variant", "benchmark", "--seed", "0"], message, capsys)
    assert not (study / "exemplars").exists() and not (study / "metrics").exists()


def test_exemplars_unknown_variant(study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _refused("exemplars", ["--variant", "sdg", "--seed", "0"], "unknown variant 'sdg'", capsys)


def test_atlas_folder_that_is_a_file(study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for variant in VARIANTS:
        _stage("exemplars", "--variant", variant, "--seed", "0")
    (study / "atlas").mkdir()
    (study / "atlas" / "default").write_text("not a folder")
    _refused("atlas", [], "atlas/default exists and is a file: remove it", capsys)
    assert (study / "atlas" / "default").read_text() == "not a folder"
    assert not (study / "metrics" / "atlas.json").exists()


def test_atlas_of_a_study_without_feature_maps_is_a_clear_error(
    study: Path, prepared: PreparedData, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only a pixel MLP: the exemplars stage records "no feature maps" and the atlas stage says it has
    nothing to draw (it raised IndexError on ``records[0]``)."""
    save_checkpoint(random_model(prepared, "mlp"), study / "models" / "mlp" / "seed0" / BEST_CKPT)
    params = yaml.safe_load((study / "params.yaml").read_text())
    params["study"].update(variants=["mlp"], contrasts=[])
    params["study"]["variant_specs"]["mlp"] = {"train_subset": None, "train": True, "model": {"name": "mlp"}}
    (study / "params.yaml").write_text(yaml.safe_dump(params))
    _stage("exemplars", "--variant", "mlp", "--seed", "0")
    _refused("atlas", [], r"no network of study 'default' has feature maps \(study.variants: mlp\)", capsys)
    assert not (study / "atlas").exists() and not (study / "metrics" / "atlas.json").exists()
