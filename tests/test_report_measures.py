"""The report sections of the measures, rendered from compare tables written as the stage writes them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cnnscope.analysis.claim_family import COLUMNS
from cnnscope.report.assemble import Report
from cnnscope.report.evidence import ship_tables
from cnnscope.report.findings import ClaimInputs
from cnnscope.report.measures import measures_sections
from conftest import conf_section


def test_sections_show_every_measure_and_the_claims(tmp_path: Path) -> None:
    tables = tmp_path / "compare" / "tables"
    tables.mkdir(parents=True)
    nets = [(v, s) for v in ("benchmark", "dummy") for s in (0, 1, 2)]
    pd.DataFrame(
        [{"variant": v, "seed": s, "layer": L, "scale": 1.0, "entropy_norm_bits": 2.0 + s, "hoyer": 0.5, "kurtosis": 3}
         for v, s in nets for L in ("relu1", "relu3")]
    ).to_csv(tables / "scale_free.csv", index=False)  # fmt: skip
    pd.DataFrame(
        [{"layer": "relu1", "comparison": c, "kind": k, "cka": 0.8, "pairs": 3}
         for c, k in (("benchmark vs dummy", "between"), ("benchmark seed vs seed", "seed-to-seed"))]
    ).to_csv(tables / "cka_overview.csv", index=False)  # fmt: skip
    pd.DataFrame(
        [{"variant": v, "seed": s, "layer": "relu3", "grid": 2, "features": 8, "accuracy": 0.9, "std_error": 0.01,
          "chance": 0.1, "train_images": 500, "test_images": 500} for v, s in nets]
    ).to_csv(tables / "spatial_probe.csv", index=False)  # fmt: skip
    pd.DataFrame(
        [{"variant": v, "seed": s, "classifier": c, "accuracy": 0.9, "pair_confusion": 0.02, "test_images": 500,
          "pair": "4↔9"} for v, s in nets for c in ("binary pattern", "network head")]
    ).to_csv(tables / "pattern_classification.csv", index=False)  # fmt: skip
    claim = dict.fromkeys(COLUMNS, 0.1) | {"claim": "a", "statement": "s", "measure": "m", "layer": "relu3",
                                           "variant": "benchmark", "reference": "dummy", "n_seeds": 3,
                                           "verdict": "holds"}  # fmt: skip
    pd.DataFrame([claim]).to_csv(tables / "claims.csv", index=False)
    run = {"maps": 8, "dead_maps": 0, "layer": "relu3", "same_map_similarity": 0.5}
    run |= {"silent_start_fraction_wl1": 0.5, "silent_start_fraction_wl4": 0.1}
    oip = {(v, s): run | {"cross_map_similarity": 0.1 + 0.01 * s} for v, s in nets}
    report = Report(tmp_path)  # the report's own builder: figures are copied into tmp_path/figures
    compare = conf_section("compare")
    inputs = ClaimInputs(
        oip, [["benchmark", "dummy"]], compare["confidence"], compare["sesoi"], compare["min_converged"], [], None
    )
    measures_sections(report, tmp_path / "compare", ["benchmark", "dummy"], [0, 1, 2], inputs)
    text = "\n".join(report.lines)
    for heading in ("Scale-free layer statistics", "debiased linear CKA", "Spatial linear probes",
                    "Classification by activation patterns", "claims, one table"):  # fmt: skip
        assert heading in text, heading
    assert "3.000 ± 1.000" in text  # normalised entropy of seeds 0, 1, 2: mean ± sd over seeds
    assert "0.900 (se 0.010, sd over seeds 0.000)" in text
    claims_block = text[text.index("claims, one table") :]
    assert "| a " in claims_block and "| c " in claims_block and "| d " in claims_block
    assert claims_block.index("| a ") < claims_block.index("| c ")


def test_activation_scale_is_shown_per_layer_and_variant_and_shipped(tmp_path: Path) -> None:
    """Issue 25, item 4: each layer's scale per variant beside the claims, a silent layer marked, and
    its CSV shipped in the report's ``tables/`` where the section's link points."""
    tables = tmp_path / "compare" / "tables"
    tables.mkdir(parents=True)
    rows = []
    for v in ("benchmark", "untrained"):
        for s in (0, 1, 2):
            for layer, rms in (("relu1", 0.5), ("relu3", 2.0 if v == "benchmark" else 0.01 * (s + 1))):
                silent = v == "untrained" and layer == "relu3" and s == 1
                rows.append({"variant": v, "seed": s, "layer": layer, "rms": rms, "active_fraction": 0.5,
                             "image_spread": 0.0 if silent else rms / 2, "silent": silent})  # fmt: skip
    pd.DataFrame(rows).to_csv(tables / "activation_scale.csv", index=False)
    folder = tmp_path / "report"
    report = Report(folder)
    compare = conf_section("compare")
    contrasts, nulls = [["benchmark", "untrained"]], ["untrained"]
    inputs = ClaimInputs({}, contrasts, compare["confidence"], compare["sesoi"], compare["min_converged"], nulls, None)
    measures_sections(report, tmp_path / "compare", ["benchmark", "untrained"], [0, 1, 2], inputs)
    text = "\n".join(report.lines)
    section = text[text.index("### Activation scale") :]
    table = [line for line in section.splitlines() if line.startswith("|")]
    assert [c.strip() for c in table[0].split("|")[1:4]] == ["layer", "benchmark", "untrained"]
    relu1, relu3 = table[2], table[3]
    assert relu1.startswith("| relu1") and "0.500 ± 0.000" in relu1 and "silent" not in relu1
    assert relu3.startswith("| relu3") and "2.000 ± 0.000" in relu3
    assert "0.020 ± 0.010 · **silent** in 1/3" in relu3  # the untrained control's deep layer
    assert "degenerate null" in section
    link = "tables/activation_scale.csv"
    assert f"]({link})" in section
    written = ship_tables(folder / "tables", tables, pd.DataFrame(columns=COLUMNS), {}, pd.DataFrame(), {})
    assert "activation_scale.csv" in written
    assert (folder / link).read_bytes() == (tables / "activation_scale.csv").read_bytes()


def test_a_not_converged_verdict_is_recomputed_from_the_shipped_tables(tmp_path: Path) -> None:
    """The shipped OIP summaries (6 digits) and the recipe's ``min_converged`` give back the gated
    (d) rows, statement and verdict; a recipe shipped before the gate recomputes them ungated."""
    import json

    from cnnscope.report.evidence import RECIPE, check_shipped, recompute_claims
    from cnnscope.report.findings import claims_frame

    compare = conf_section("compare")
    converged = {"benchmark": 7 / 15, "dummy": 6 / 15}  # of 14 live maps: 50 %, 43 %
    oip = {(v, s): {"maps": 15, "dead_maps": 1, "dead_fraction": 1 / 15, "converged_fraction": converged[v],
                    "layer": "relu3", "same_map_similarity": 0.1 + 0.01 * s, "cross_map_similarity": 0.6,
                    "silent_start_fraction_wl1": 0.5, "silent_start_fraction_wl4": 0.1 * s}
           for v in converged for s in (0, 1, 2)}  # fmt: skip
    inputs = ClaimInputs(oip, [["benchmark", "dummy"]], compare["confidence"], compare["sesoi"], 0.5, ["dummy"], None)
    claims = claims_frame(tmp_path / "compare", inputs)
    d = claims[claims["claim"] == "d"].set_index("control")
    assert d.loc["", "verdict"] != "not converged"  # 7 of 14 live maps: exactly at the threshold
    assert d.loc["untrained", "verdict"] == "not converged"
    assert "50 %, 50 %, 50 % of benchmark's and 43 %, 43 %, 43 % of dummy's" in d.loc["untrained", "statement"]
    recipe = {"variants": ["benchmark", "dummy"], "contrasts": [["benchmark", "dummy"]], "null_models": ["dummy"],
              "confidence": compare["confidence"], "sesoi": compare["sesoi"], "min_converged": 0.5,
              "first_map": None, "deepest_map": None}  # fmt: skip
    folder = tmp_path / "tables"
    ship_tables(folder, tmp_path / "compare", claims, oip, pd.DataFrame(), recipe)
    again = check_shipped(folder)
    assert list(again["statement"]) == list(claims["statement"])
    del recipe["min_converged"]
    (folder / RECIPE).write_text(json.dumps(recipe))
    assert "not converged" not in set(recompute_claims(folder)["verdict"])
