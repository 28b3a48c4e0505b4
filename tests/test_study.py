"""The study comparison on tiny synthetic activation sets: tables against direct formulas, roles
from the config, and the same study under other variant names giving the same tables and report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from cnnscope.activations import ActivationSet
from cnnscope.analysis import Roles, StudyResults, compare_study, entropy, js_divergence, smoothed
from cnnscope.analysis.claims import UNTRAINED_CONTROL
from cnnscope.analysis.patterns import common_active
from cnnscope.analysis.study import tables
from cnnscope.config import ConfigError, validate
from cnnscope.io import write_json
from cnnscope.layout import metrics_path
from cnnscope.models import build_model
from cnnscope.report.assemble import Report, _compare
from conftest import REPO_ROOT, knobs, measure_settings, synthetic_prepared

Sets = dict[tuple[str, int], ActivationSet]
ROLES = Roles(contrasts=[("benchmark", "dummy")], null_models=["untrained"])
RENAMED = {"benchmark": "big", "dummy": "small", "untrained": "random"}


def _compare_sets(sets: Sets, roles: Roles = ROLES) -> StudyResults:
    settings = measure_settings()
    return compare_study(sets, synthetic_prepared().images, roles, 16, 30, settings.confidence, settings.network())


@pytest.fixture(scope="module")
def results(study_sets: Sets) -> StudyResults:
    return _compare_sets(study_sets)


def test_roles_pair_contrasts_then_null_models() -> None:
    variants = ["benchmark", "dummy", "sgd", "untrained"]
    assert ROLES.pairs(variants) == [
        ("benchmark", "dummy"),
        ("benchmark", "untrained"),
        ("dummy", "untrained"),
        ("sgd", "untrained"),
    ]
    assert ROLES.pairs(["benchmark", "untrained"]) == [("benchmark", "untrained")]  # dummy absent
    assert ROLES.present(["benchmark", "untrained"]) == []
    assert Roles(contrasts=[], null_models=[]).pairs(variants) == []


def test_roles_from_config_and_bad_contrast_named() -> None:
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    roles = Roles.from_study(validate(raw).study)
    assert roles.contrasts == [("benchmark", "dummy"), ("benchmark", "dummy_steps")]
    assert roles.null_models == ["untrained"]
    raw["study"]["contrasts"] = [["benchmark", "nosuch"]]
    with pytest.raises(ConfigError, match=r"study.contrasts entry \['benchmark', 'nosuch'\]"):
        validate(raw)


def test_layer_stats_match_direct_formulas(study_sets: Sets, results: StudyResults) -> None:
    """Entropy of the pooled eval histogram on the shared edges, sparsity and mean, recomputed."""
    stats = results.tables["layer_stats"].set_index(["variant", "seed", "group", "layer"])
    for layer in ("relu1", results.deepest_map):
        x = np.asarray(study_sets["dummy", 1].array("eval", layer), dtype=np.float64)
        counts, _ = np.histogram(x, bins=results.edges[layer])
        row = stats.loc["dummy", 1, "eval", layer]
        assert row["entropy_bits"] == pytest.approx(entropy(counts.astype(float)), abs=1e-9)
        assert row["sparsity"] == pytest.approx((x == 0).mean())
        assert row["mean"] == pytest.approx(x.mean(), rel=1e-5)
        assert row["std"] == pytest.approx(x.std(), rel=1e-4)


def test_divergences_and_histograms_are_consistent(results: StudyResults) -> None:
    hist = results.tables["histograms"]
    probs = hist.groupby(["variant", "seed", "group", "layer"])["probability"].sum()
    np.testing.assert_allclose(probs.to_numpy(), 1.0)
    pick = hist[(hist["seed"] == 0) & (hist["group"] == "eval") & (hist["layer"] == "relu2")]
    p = pick[pick["variant"] == "benchmark"]["count"].to_numpy(float)
    q = pick[pick["variant"] == "untrained"]["count"].to_numpy(float)
    div = results.tables["divergences"]
    row = div[
        (div["variant"] == "benchmark")
        & (div["reference"] == "untrained")
        & (div["seed"] == 0)
        & (div["group"] == "eval")
        & (div["layer"] == "relu2")
    ]
    assert row["js_bits"].item() == pytest.approx(js_divergence(smoothed(p), smoothed(q)), abs=1e-12)


def test_differences_follow_the_roles(results: StudyResults) -> None:
    diffs = results.tables["differences"]
    assert list(dict.fromkeys(zip(diffs["variant"], diffs["reference"], strict=True))) == ROLES.pairs(results.variants)
    assert set(diffs["quantity"]) == set(tables.DIFFERENCE_QUANTITIES)


def test_deepest_map_is_the_models_last_feature_map(results: StudyResults) -> None:
    model = build_model(
        "mnist_cnn", in_channels=1, num_classes=10, image_size=28, mean=[0.0], std=[1.0], **knobs("mnist_cnn")
    )
    assert results.deepest_map == model.conv_layers[-1]
    assert results.feature_maps == [m for m in model.conv_layers if m in results.layers]


def test_fcp_table_matches_common_active(study_sets: Sets, results: StudyResults) -> None:
    fcp = results.tables["fcp"]
    assert len(results.fcp_groups) == 1 and results.fcp_groups[0]["names"] == ["p0", "p1"]
    maps = np.asarray(study_sets["untrained", 1].array("probe", results.deepest_map)[:2], dtype=np.float32)
    expected = common_active(maps)
    row = fcp[(fcp["variant"] == "untrained") & (fcp["seed"] == 1)].iloc[0]
    assert row["active_all"] == expected["active_all"] and row["jaccard"] == pytest.approx(expected["jaccard"])
    np.testing.assert_array_equal(
        results.fcp_groups[0]["mask"]["benchmark"],
        common_active(np.asarray(study_sets["benchmark", 0].array("probe", results.deepest_map)[:2], dtype=np.float32))[
            "mask"
        ],
    )


def test_sets_of_other_images_are_refused(study_sets: Sets, tmp_path: Path) -> None:
    from conftest import random_model, write_activation_set

    prepared = synthetic_prepared()
    test = prepared.splits["test"]
    other = write_activation_set(random_model(prepared), prepared, tmp_path / "x", test[1:41], test[:4])
    with pytest.raises(ValueError, match="other eval images"):
        _compare_sets({("benchmark", 0): study_sets["benchmark", 0], ("dummy", 0): other})


def _renamed(text: str) -> str:
    """``text`` with the variant names replaced; not the prose's "untrained network" and "untrained
    control", nor the claims' control column, which says ``untrained`` whatever the variant's name."""
    for old, new in RENAMED.items():
        text = re.sub(rf"(?<![a-z]){old}(?![a-z]| network| control)", new, text)
    return text.replace(f"| | {RENAMED['untrained']} |", f"| | {UNTRAINED_CONTROL} |")


def _report_section(res: StudyResults, root: Path, names: dict[str, str]) -> str:
    """The report's compare section built from ``res``'s tables (no figures), under ``names``."""
    folder = root / "compare"
    for name, table in res.tables.items():
        (folder / "tables").mkdir(parents=True, exist_ok=True)
        table.to_csv(folder / "tables" / f"{name}.csv", index=False, float_format="%.6g")
    index = {"figures": [], "feature_maps": res.feature_maps}
    (folder / "index.json").write_text(json.dumps(index))
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    study = raw["study"]
    study["variants"] = [names[v] for v in ("benchmark", "dummy", "untrained")]
    study["variant_specs"] = {names[v]: study["variant_specs"][v] for v in ("benchmark", "dummy", "untrained")}
    study["contrasts"] = [[names["benchmark"], names["dummy"]]]
    raw["compare"]["out_dir"] = "compare"
    params = validate(raw)
    for variant in params.study.variants:  # the report reads every network's OIP summary: here, one without maps
        for seed in params.study.oip_seeds:
            write_json(metrics_path("oip", variant, seed, root), {"maps": 0})
    report = Report(root / "report")
    _compare(report, params, root)
    return re.sub(r"-{3,}", "---", re.sub(r" +", " ", "\n".join(report.lines)))


def test_renamed_variants_give_the_same_tables_and_report(
    study_sets: Sets, results: StudyResults, tmp_path: Path
) -> None:
    renamed_sets = {(RENAMED[v], s): aset for (v, s), aset in study_sets.items()}
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())  # a whole params.yaml: conf/ holds the defaults
    raw["study"].update(
        variants=["big", "small", "random"],
        variant_specs={"big": {}, "small": {}, "random": {"train": False}},
        contrasts=[["big", "small"]],
    )
    params = validate(raw)
    roles = Roles.from_study(params.study)
    assert roles == Roles(contrasts=[("big", "small")], null_models=["random"])
    other = _compare_sets(renamed_sets, roles)
    assert set(other.tables) == set(results.tables)
    for name, table in results.tables.items():
        expected = table.replace({"variant": RENAMED, "reference": RENAMED})
        pd.testing.assert_frame_equal(other.tables[name], expected, check_exact=True)
    original = _report_section(results, tmp_path / "a", {v: v for v in RENAMED})
    # the contrast drives the report (its divergences; the claims table needs the compare stage's measures)
    assert "Divergence of benchmark from dummy" in original and "relu3" in original
    assert _report_section(other, tmp_path / "b", RENAMED) == _renamed(original)


def test_helpers_return_tables_without_touching_results(study_sets: Sets, results: StudyResults) -> None:
    before = {name: t.copy() for name, t in results.tables.items()}
    labels = np.asarray(study_sets["benchmark", 0].group("eval").labels)
    probe = tables.linear_probe_table(study_sets, ["relu1"], labels, 0.5)
    assert probe.shape[0] == len(study_sets) and probe["accuracy"].between(0, 1).all()
    for name, table in before.items():
        pd.testing.assert_frame_equal(results.tables[name], table)
    assert torch.is_tensor(torch.as_tensor(results.probe_images))
