"""What a reader meets first: findings generated from the numbers, links that land on headings, a
model table with the true geometry, and an index of studies that never overwrites one with another."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from cnnscope.analysis.claim_family import COLUMNS
from cnnscope.models import build_model
from cnnscope.report.assemble import _per_wavelength
from cnnscope.report.findings import ClaimInputs, accuracy_sentence, claim_sentence, claims_frame, headline, slug
from cnnscope.report.index import HEADLINE_FILE, write_index
from cnnscope.report.model_table import model_table
from conftest import conf_section, knobs


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("1. Training", "1-training"),
        ("The seed articles' claims, one table", "the-seed-articles-claims-one-table"),
        ("Representation similarity (debiased linear CKA)", "representation-similarity-debiased-linear-cka"),
        ("Activation histograms on shared bins, input pixels first (Fig. 6/7)",
         "activation-histograms-on-shared-bins-input-pixels-first-fig-67"),
        ("`benchmark` (seed 0)", "benchmark-seed-0"),
    ],
)  # fmt: skip
def test_anchor_is_the_one_github_gives_the_heading(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_model_table_has_every_layer_its_shape_parameters_and_receptive_field() -> None:
    model = build_model(
        "mnist_cnn", in_channels=1, num_classes=10, image_size=28, mean=[0.1], std=[0.3], **knobs("mnist_cnn")
    )
    table = model_table(model).set_index("layer")
    assert list(table.index) == model.layer_names
    assert table.loc["conv1", "output"] == "32×26×26" and table.loc["pool2", "output"] == "64×5×5"
    assert table["parameters"].sum() == sum(p.numel() for p in model.parameters())
    # relu3 nodes see 18×18 pixels, 4 pixels apart: (3 + 1 + 2·(2 + 2·(2))) by hand, and by gradient support
    assert (table.loc["relu3", "receptive field"], table.loc["relu3", "stride"]) == ("18×18", "4")
    x = torch.zeros(1, 1, 28, 28, requires_grad=True)
    model.truncated("conv3")(x + torch.rand(1, 1, 28, 28))[0, 0, 1, 1].backward()  # pre-ReLU: never dead
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()  # type: ignore[union-attr]
    assert int(rows.max() - rows.min()) + 1 == 18
    assert table.loc["fc1", "receptive field"] == "whole image" and table.loc["fc1", "output"] == "64"


def _claim(verdict: str, low: float, high: float, n: int = 3) -> dict[str, object]:
    return dict.fromkeys(COLUMNS, 0.0) | {
        "claim": "a", "statement": "benchmark has a sparser deepest map (Hoyer) than dummy", "layer": "relu3",
        "measure": "hoyer (benchmark − dummy)", "variant": "benchmark", "reference": "dummy", "n_seeds": n,
        "mean_difference": 0.108, "seed_ci_low": low, "seed_ci_high": high, "verdict": verdict,
    }  # fmt: skip


def test_claim_sentence_states_verdict_effect_interval_seeds_and_links_its_evidence() -> None:
    text = claim_sentence(_claim("holds", 0.014, 0.2), 0.95, {"Scale-free layer statistics"})
    assert text.startswith("- **holds** (a) benchmark has a sparser deepest map")
    assert "+0.108 on `relu3`" in text and "95% interval over 3 training seeds [+0.014, +0.2]" in text
    assert text.endswith("[evidence](#scale-free-layer-statistics)")
    # a section the report lacks: the link falls back to the claims table
    assert claim_sentence(_claim("holds", 0.01, 0.2), 0.95, set()).endswith("(#the-seed-articles-claims-one-table)")
    assert "from 1 training seed, no interval" in claim_sentence(_claim("too few seeds", 0, 0, n=1), 0.95, set())


def test_accuracy_sentence_puts_chance_beside_the_variants() -> None:
    means = pd.Series({"benchmark": 0.9643, "untrained": 0.104})
    stds = pd.Series({"benchmark": 0.0036, "untrained": 0.0})
    text = accuracy_sentence(means, stds, 0.1, 3)
    assert "`benchmark` 96.4 % ± 0.4" in text and "`untrained` 10.4 %" in text and "chance 10.0 %" in text


def test_claims_frame_joins_compare_and_oip_claims_and_skips_an_empty_table(tmp_path: Path) -> None:
    (tmp_path / "claims.csv").write_text("\n")  # written without columns: no claim testable
    run = {"layer": "relu3", "same_map_similarity": 0.5, "silent_start_fraction_wl1": 0.5}
    runs = {("benchmark", s): run | {"cross_map_similarity": 0.1 + s / 100, "silent_start_fraction_wl4": 0.1 * s}
            for s in range(3)}  # fmt: skip
    compare = conf_section("compare")
    inputs = ClaimInputs(
        runs, [["benchmark", "dummy"]], compare["confidence"], compare["sesoi"], compare["min_converged"], [], None
    )
    frame = claims_frame(tmp_path, inputs)
    assert list(frame["claim"]) == ["c", "d"]
    pd.DataFrame([_claim("holds", 0.01, 0.2)]).to_csv(tmp_path / "claims.csv", index=False)
    assert list(claims_frame(tmp_path, inputs)["claim"]) == ["a", "c", "d"]


def _publish(reports: Path, study: str, acc: float, claims: pd.DataFrame) -> None:
    folder = reports / study
    folder.mkdir(parents=True)
    (folder / "README.md").write_text(f"# {study}\n")
    command, means = f"dvc exp run -S experiment={study}", pd.Series({"benchmark": acc})
    record = headline(study, command, means, claims, 3, "mnist", conf_section("compare")["confidence"])
    (folder / HEADLINE_FILE).write_text(json.dumps(record))


def test_index_lists_every_published_study_with_its_headline(tmp_path: Path) -> None:
    claims = pd.DataFrame([_claim("holds", 0.01, 0.2), _claim("inconclusive", -0.1, 0.2)])
    _publish(tmp_path, "mnist_oip", 0.993, claims)
    _publish(tmp_path, "cifar10_frog", 0.689, claims.iloc[:1])
    text = write_index(tmp_path).read_text()
    rows = [line for line in text.splitlines() if line.startswith("| [")]
    assert [r.split("]")[0] for r in rows] == ["| [cifar10_frog", "| [mnist_oip"]
    assert "(mnist_oip/README.md)" in rows[1] and "benchmark 99.3 %" in rows[1]
    assert "1 holds, 1 inconclusive" in rows[1] and "`dvc exp run -S experiment=mnist_oip`" in rows[1]
    assert (tmp_path / "cifar10_frog" / "README.md").read_text() == "# cifar10_frog\n"  # untouched


def test_oip_wavelength_table_has_a_row_per_wavelength_and_means_over_seeds() -> None:
    runs = pd.DataFrame(
        [
            {"variant": "b", "seed": 0, "silent_start_fraction_wl1": 0.5, "best_at_wl1_fraction": 0.25,
             "silent_start_fraction_wl14": 0.0, "best_at_wl14_fraction": 0.75},
            {"variant": "b", "seed": 1, "silent_start_fraction_wl1": 0.3, "best_at_wl1_fraction": 0.25,
             "silent_start_fraction_wl14": 0.1, "best_at_wl14_fraction": 0.75},
        ]
    )  # fmt: skip
    table = _per_wavelength(runs, ["a", "b"])
    assert table["λ (px)"].tolist() == [1, 14] and list(table.columns) == ["λ (px)", "b"]
    assert table["b"].tolist() == ["silent 0.40 · best 0.25", "silent 0.05 · best 0.75"]


def test_claim_d_gate_takes_its_threshold_from_the_config(tmp_path: Path) -> None:
    """``compare.min_converged`` reaches claim (d) through the report's claim inputs: the same OIP
    summaries (40 % of the live maps converged) read *not converged* under conf/'s threshold and
    get a tested verdict once the threshold is overridden below them."""
    from cnnscope.compose import compose_params
    from cnnscope.config import validate
    from cnnscope.layout import metrics_path
    from cnnscope.report.assemble import _claim_inputs

    assert conf_section("compare")["min_converged"] > 0.4
    study = ["study.variants=[benchmark,dummy]", "study.contrasts=[[benchmark,dummy]]", "study.oip_seeds=[0,1,2]"]
    for variant, seed in [(v, s) for v in ("benchmark", "dummy") for s in range(3)]:
        path = metrics_path("oip", variant, seed, tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "maps": 12, "dead_maps": 2, "converged_fraction": 4 / 12, "layer": "relu3",
            "same_map_similarity": 0.1 + 0.01 * seed, "cross_map_similarity": 0.6,
            "silent_start_fraction_wl1": 0.5, "silent_start_fraction_wl4": 0.1 * seed,
        }))  # fmt: skip
    verdicts = {}
    for override in ([], ["compare.min_converged=0.4"]):
        params = validate(compose_params([*study, *override]))
        inputs = _claim_inputs(params, tmp_path)
        assert inputs.min_converged == params.compare.min_converged
        frame = claims_frame(tmp_path / "none", inputs).set_index("claim")
        verdicts[inputs.min_converged] = frame.loc["d", "verdict"]
        assert frame.loc["c", "verdict"] != "not converged"
    assert verdicts == {conf_section("compare")["min_converged"]: "not converged", 0.4: "contradicted"}
