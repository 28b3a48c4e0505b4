"""Issue 25, item 9: the README's "What the published studies found" cannot drift from the data.

The section is generated from every ``reports/<study>/headline.json`` (``python -m
cnnscope.report.readme``); the README in the repository must be what the headlines give, and every
number a headline holds must reach the README.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cnnscope.report.evidence import BUDGET, check_shipped
from cnnscope.report.findings import headline
from cnnscope.report.readme import BEGIN, END, findings_section, main, with_section

REPO = Path(__file__).resolve().parents[1]


def test_the_readme_findings_are_what_the_published_headlines_say() -> None:
    text = (REPO / "README.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert with_section(text, findings_section(REPO / "reports")) == text, (
        "README.md's findings differ from reports/*/headline.json: run `python -m cnnscope.report.readme`. "
        "Right after a `make repro` on another CPU model, the regenerated study's last digits differ from the "
        "published ones (README, 'The same numbers, digit for digit')"
    )


def _study(reports: Path, name: str, difference: float) -> None:
    claims = pd.DataFrame(
        [{"claim": "a", "statement": "benchmark has a sparser deepest map (Hoyer) than dummy",
          "measure": "hoyer (benchmark − dummy)", "layer": "relu3", "control": "", "n_seeds": 3,
          "mean_difference": difference, "seed_ci_low": 0.06, "seed_ci_high": 0.142, "verdict": "holds"},
         {"claim": "c", "statement": "…more often than in the untrained network", "measure": "silent fraction",
          "layer": "relu3", "control": "untrained", "n_seeds": 1, "mean_difference": 0.12, "seed_ci_low": None,
          "seed_ci_high": None, "verdict": "too few seeds"}]
    )  # fmt: skip
    means, stds = pd.Series({"benchmark": 0.9621, "dummy": 0.807}), pd.Series({"benchmark": 0.003, "dummy": 0.011})
    record = headline(name, "dvc repro", means, claims, 3, "embedded, 3,600 training images", 0.95, stds, 0.1)
    (reports / name).mkdir(parents=True, exist_ok=True)
    (reports / name / "headline.json").write_text(json.dumps(record))


def test_every_number_of_a_headline_reaches_the_readme_and_a_changed_one_is_caught(tmp_path: Path) -> None:
    reports, readme = tmp_path / "reports", tmp_path / "README.md"
    _study(reports, "default", 0.101)
    readme.write_text(f"# title\n\n{BEGIN}\nhand-written\n{END}\n\n## next\n")
    args = ["--readme", str(readme), "--reports", str(reports)]
    assert main([*args, "--check"]) == 1  # the hand-written text is not what the headline says
    assert main(args) == 0 and main([*args, "--check"]) == 0
    text = readme.read_text()
    assert text.startswith("# title\n\n") and text.endswith("\n\n## next\n") and "hand-written" not in text
    for number in ("96.2 % ± 0.3", "80.7 % ± 1.1", "chance 10.0 %", "+0.101", "[+0.06, +0.142]", "+0.12"):
        assert number in text, number
    assert "**holds** (a)" in text and "**too few seeds** (c) *control: untrained*" in text
    assert "95% interval over 3 seeds" in text and "1 seed, no interval" in text
    (reports / "default" / "headline.json").unlink()
    _study(reports, "default", 0.099)  # the study re-published with another number
    assert main([*args, "--check"]) == 1


PUBLISHED = sorted(p.parent for p in (REPO / "reports").glob("*/tables/claims.csv"))


@pytest.mark.parametrize("tables", PUBLISHED, ids=[p.parent.name for p in PUBLISHED])
def test_every_verdict_of_a_published_report_is_recomputed_from_its_shipped_tables(tables: Path) -> None:
    """Issue 25, item 5, on the committed reports themselves: what a clone holds reproduces every
    verdict (reports published before the tables were shipped have no claims.csv and are not here)."""
    claims = pd.read_csv(tables / "claims.csv")
    assert list(check_shipped(tables)["verdict"]) == list(claims["verdict"])
    assert sum(p.stat().st_size for p in tables.glob("*.csv")) <= BUDGET
