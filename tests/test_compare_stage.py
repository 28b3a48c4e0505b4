"""The extract and compare stage scripts end to end on a tiny study, and their bad-input messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from cnnscope.data.prepared import PreparedData
from cnnscope.models import save_checkpoint
from conftest import REPO_ROOT, random_model, synthetic_prepared
from pipeline import run_stage_as_dvc

VARIANTS = ["benchmark", "dummy", "untrained"]


def _write_params(root: Path, **sections: dict[str, Any]) -> None:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["study"]["variants"] = VARIANTS
    params["study"]["contrasts"] = [c for c in params["study"]["contrasts"] if set(c) <= set(VARIANTS)]
    params["study"]["seeds"] = params["study"]["oip_seeds"] = [0]
    params["extract"].update(eval_samples=40, batch_size=16)
    params["compare"].update(bootstrap=50, max_maps=4)
    for key, values in sections.items():
        params[key].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture
def prepared() -> PreparedData:
    """Enough test images (75) that the 40-image evaluation sample has at least two of every class (the
    FCP chance level needs them)."""
    return synthetic_prepared(n_per_class=40)


@pytest.fixture
def workspace(tmp_path: Path, prepared: PreparedData, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository-like folder: prepared data, one checkpoint per variant, a tiny params.yaml."""
    monkeypatch.chdir(tmp_path)
    prepared.save(tmp_path / "data" / "prepared")
    for i, variant in enumerate(VARIANTS):
        save_checkpoint(random_model(prepared, seed=i), tmp_path / "models" / variant / "seed0" / "best.ckpt")
        if variant != "untrained":  # the train stage saves the weights before the first step
            save_checkpoint(random_model(prepared, seed=7), tmp_path / "models" / variant / "seed0" / "initial.ckpt")
    _write_params(tmp_path)
    return tmp_path


def _fails(stage: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert run_stage_as_dvc(stage, argv) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one clear line, no traceback
    return err


def _run(stage: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    assert run_stage_as_dvc(stage, argv, env=env) == 0


def _measure(variants: list[str] = VARIANTS, histograms: bool = True) -> None:
    """The measures@ stages compare reads (each network's own numbers), then the histograms@ stages
    (each network on the shared bins, which need every network's measures)."""
    for stage in ("measures", "histograms") if histograms else ("measures",):
        for variant in variants:
            _run(stage, ["--variant", variant, "--seed", "0"])


@pytest.mark.slow
def test_extract_and_compare_end_to_end(workspace: Path) -> None:
    from cnnscope import tracking

    _plant_tiny_probability(workspace / "models/benchmark/seed0/best.ckpt")
    for variant in VARIANTS:
        _run("extract", ["--variant", variant, "--seed", "0"])
    manifest = json.loads((workspace / "activations/benchmark/seed0/manifest.json").read_text())
    assert len(manifest["groups"]["eval"]["sample_ids"]) == 40
    assert manifest["groups"]["probe"]["names"] == [f"probe{i}" for i in range(5)]
    assert manifest["provenance"]["checkpoint_sha256"]
    first = (workspace / "activations/dummy/seed0/eval/conv3.npy").read_bytes()
    _run("extract", ["--variant", "dummy", "--seed", "0"])
    assert (workspace / "activations/dummy/seed0/eval/conv3.npy").read_bytes() == first  # deterministic

    _measure()
    _run("compare", [], env={"DVC_EXP_NAME": "exp-compare"})
    index = json.loads((workspace / "compare/index.json").read_text())
    kinds = {f["kind"] for f in index["figures"]}
    assert {"feature_maps", "histograms", "softmax", "kernels", "fcp", "edge_filters", "cka"} <= kinds
    for entry in index["figures"] + index["tables"]:
        assert (workspace / "compare" / entry["path"]).is_file(), entry
    assert all(f["caption"] for f in index["figures"])

    stats = pd.read_csv(workspace / "compare/tables/layer_stats.csv")
    assert set(stats["variant"]) == set(VARIANTS)
    assert "softmax" not in set(stats["layer"])  # a distribution over classes has no histogram rows
    softmax = pd.read_csv(workspace / "compare/tables/softmax.csv")
    planted = softmax[(softmax["variant"] == "benchmark") & (softmax["class"] == 1)]["probability"]
    np.testing.assert_allclose(planted, 1e-6, rtol=1e-3)  # float32 end to end, not float16's 0 or 1.013e-6
    for name in ("scale_free", "cka", "cka_overview", "spatial_probe", "matching", "overlap", "claims"):
        assert len(pd.read_csv(workspace / f"compare/tables/{name}.csv")), name
    relu = stats[stats["layer"] == "relu1"]
    assert ((relu["sparsity"] > 0) & (relu["sparsity"] < 1)).all()
    assert (stats["entropy_bits"] <= np.log2(64) + 1e-9).all()
    hist = pd.read_csv(workspace / "compare/tables/histograms.csv")
    edges = hist[(hist["group"] == "eval") & (hist["layer"] == "relu2")].groupby("variant")["left"].apply(tuple)
    assert edges.nunique() == 1  # shared bin edges across variants

    metrics = json.loads((workspace / "metrics/compare.json").read_text())
    assert set(metrics["variants"]) == set(VARIANTS) and metrics["eval_images"] == 40
    assert set(metrics["variants"]["dummy"]) == {
        "accuracy", "predictive_entropy_bits", "relu3_hoyer", "relu3_entropy_norm_bits", "relu3_spatial_probe_acc",
        "relu1_cka_to_input",
    }  # fmt: skip
    # numbers only, so `dvc metrics show` stays a table: one mean difference per claim, none holding
    assert metrics["claims"] and all(isinstance(v, float) for v in metrics["claims"].values())
    assert metrics["claims_holding"] == 0  # one seed: no verdict can hold
    # the execution is one MLflow run of its own, under the study run, with its params and figures
    client = tracking.client(f"sqlite:///{workspace / 'mlflow.db'}")
    (run,) = client.search_runs(["1"], filter_string="tags.`cnnscope.kind` = 'compare'")
    study = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert study.data.tags["cnnscope.kind"] == "study" and run.info.status == "FINISHED"
    assert run.data.params["compare/bins"] == "64" and run.data.tags["dvc_exp_name"] == "exp-compare"
    assert "dummy/relu3_hoyer" in run.data.metrics
    artifacts = {Path(f.path).name for f in client.list_artifacts(run.info.run_id)}
    assert {"compare.json", "kernel_changes.png", "feature_maps_relu1.png"} <= artifacts
    (kernels,) = [f for f in index["figures"] if f["kind"] == "kernels"]
    assert "left out: untrained" in kernels["caption"]
    diffs = pd.read_csv(workspace / "compare/tables/differences.csv")
    assert {("benchmark", "dummy"), ("benchmark", "untrained"), ("dummy", "untrained")} <= set(
        zip(diffs["variant"], diffs["reference"], strict=True)
    )


def test_compare_without_initial_weights_names_the_file(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for variant in VARIANTS:
        _run("extract", ["--variant", variant, "--seed", "0"])
    (workspace / "models/dummy/seed0/initial.ckpt").unlink()
    err = _fails("compare", [], capsys)
    assert "models/dummy/seed0/initial.ckpt" in err and "cnnscope repro train" in err
    assert not (workspace / "compare").exists()


def _plant_tiny_probability(checkpoint: Path) -> None:
    """Logits that give class 1 a probability of 1e-6 for every image (float16 cannot hold it)."""
    import torch

    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["state_dict"]["model.fc2.weight"].zero_()
    ckpt["state_dict"]["model.fc2.bias"].copy_(torch.tensor([0.0, float(np.log(1e-6))] + [-1e4] * 8))
    torch.save(ckpt, checkpoint)


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"compare": {"matching_layers": ["fc1"]}}, "have no feature maps"),
        ({"study": {"contrasts": [["benchmark", "wide"]]}}, "study.contrasts"),
        ({"extract": {"eval_samples": 10}}, "fewer than two images of class"),
    ],
)
def test_compare_bad_measure_input_writes_nothing(
    workspace: Path, capsys: pytest.CaptureFixture[str], sections: dict[str, Any], message: str
) -> None:
    _write_params(workspace, extract={"eval_samples": sections.get("extract", {}).get("eval_samples", 40)})
    for variant in VARIANTS:
        _run("extract", ["--variant", variant, "--seed", "0"])
        run_stage_as_dvc("measures", ["--variant", variant, "--seed", "0"])  # fails too on 10 images
    for variant in VARIANTS:
        run_stage_as_dvc("histograms", ["--variant", variant, "--seed", "0"])
    capsys.readouterr()  # those stages' own errors on 10 images
    _write_params(workspace, **sections)
    assert message in _fails("compare", [], capsys)
    assert not (workspace / "compare").exists() and not (workspace / "metrics/compare.json").exists()


def test_unknown_layer(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_params(workspace, extract={"layers": ["relu1", "conv7"]})
    err = _fails("extract", ["--variant", "benchmark", "--seed", "0"], capsys)
    assert "conv7" in err and "relu_fc1" in err
    assert not (workspace / "activations/benchmark/seed0").exists()  # no partial output


def test_empty_eval_sample(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_params(workspace, extract={"eval_samples": 0})
    assert "eval_samples" in _fails("extract", ["--variant", "benchmark", "--seed", "0"], capsys)
    assert not (workspace / "activations").exists()


def test_missing_checkpoint_lists_existing(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _fails("extract", ["--variant", "dummy", "--seed", "3"], capsys)
    assert "seed 3" in err and "benchmark/seed0" in err and "untrained/seed0" in err


def test_checkpoint_of_another_architecture(
    workspace: Path, prepared: PreparedData, capsys: pytest.CaptureFixture[str]
) -> None:
    save_checkpoint(random_model(prepared, "edge_filters"), workspace / "models/benchmark/seed0/best.ckpt")
    err = _fails("extract", ["--variant", "benchmark", "--seed", "0"], capsys)
    assert "edge_filters" in err and "mnist_cnn" in err


def test_compare_without_activations_lists_what_exists(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run("extract", ["--variant", "benchmark", "--seed", "0"])
    err = _fails("compare", [], capsys)
    assert "dummy/seed0" in err and "found: benchmark/seed0" in err
    assert not (workspace / "compare").exists()


def test_compare_without_measures_names_the_stage(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for variant in VARIANTS:
        _run("extract", ["--variant", variant, "--seed", "0"])
    _measure(["benchmark"], histograms=False)
    err = _fails("compare", [], capsys)
    assert "dummy/seed0" in err and "cnnscope repro measures" in err
    _measure(["dummy", "untrained"], histograms=False)
    err = _fails("compare", [], capsys)
    assert "benchmark/seed0" in err and "cnnscope repro histograms" in err
    assert not (workspace / "compare").exists()


@pytest.mark.slow
def test_split_stages_give_the_tables_of_one_process(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The measures@ and histograms@ stages + compare write the same bytes in every table as
    computing everything in one process (:func:`full_study` without the stages' results)."""
    from cnnscope.analysis import Roles
    from cnnscope.analysis.measures import split_reference_heads
    from cnnscope.analysis.study.stage import full_study, open_sets, write_tables
    from cnnscope.config import load_params

    for variant in VARIANTS:
        _run("extract", ["--variant", variant, "--seed", "0"])
    _measure()
    _run("compare", [])
    params = load_params("params.yaml")
    sets, heads = split_reference_heads(open_sets("activations", VARIANTS, [0]))
    images = PreparedData.load(workspace / "data/prepared").images
    res = full_study(sets, heads, images, Roles.from_study(params.study), params.compare)
    one = tmp_path_factory.mktemp("one_process")
    entries = write_tables(res.tables, one)
    split = sorted(p.name for p in (workspace / "compare/tables").glob("*.csv"))
    assert split == sorted(Path(e["path"]).name for e in entries)
    for name in split:
        assert (one / "tables" / name).read_bytes() == (workspace / "compare/tables" / name).read_bytes(), name
