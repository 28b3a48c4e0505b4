"""Issue 25, item 5: a report ships the tables behind its verdicts, and they reproduce them.

One tiny study runs through every stage (three seeds, a contrast and the untrained control; the
session's ``tiny_study``, shared with the MLflow review), and its report's ``tables/`` alone must give
back every seed-level verdict of its claims table; every link of the report must resolve inside the
study's folder tree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cnnscope.report.evidence import BUDGET, TRAJECTORY, EvidenceError, check_shipped, ship_tables
from cnnscope.report.findings import slug
from conftest import TINY_STUDY_GROUP

# one 3-seed pipeline run for the session (about 90 s on 2 cores), shared with test_mlflow_review
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(TINY_STUDY_GROUP)]

LINK = re.compile(r"\]\(([^)\s]+)\)")


def unresolved_links(readme: Path, root: Path) -> list[str]:
    """Links of ``readme`` that point outside ``root`` or at nothing (anchors: at no heading)."""
    text = readme.read_text()
    anchors = {slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}
    bad = []
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://")):
            continue
        if target.startswith("#"):
            if target[1:] not in anchors:
                bad.append(target)
            continue
        path = (readme.parent / target.split("#")[0]).resolve()
        if not path.is_relative_to(root.resolve()) or not path.exists():
            bad.append(target)
    return bad


@pytest.fixture
def study(tiny_study: tuple[Path, dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    return tiny_study


def test_the_tests_of_the_tiny_study_share_one_worker(request: pytest.FixtureRequest) -> None:
    """``make test`` runs ``--dist loadgroup`` so that one worker builds the tiny study once. A pytest that
    pytest-xdist cannot tag (9.2 with xdist 3.8: node ids moved to ``_id``) spreads the group over the
    workers without a word, and each builds the study again (about 80 s)."""
    if request.config.getoption("loadgroup", default=False):
        assert request.node.nodeid.endswith(f"@{TINY_STUDY_GROUP}"), (
            f"--dist loadgroup did not group {request.node.nodeid} with pytest {pytest.__version__}: "
            "install the pinned test tools (`pip install -e '.[dev]'`: pytest<9.2)"
        )


def test_shipped_tables_recompute_every_verdict_of_the_report(study) -> None:  # type: ignore[no-untyped-def]
    workdir, params = study
    tables = workdir / "reports" / params["study"]["name"] / "tables"
    claims = pd.read_csv(tables / "claims.csv")
    assert len(claims) and set(claims["claim"]) >= {"a", "a′", "b", "c", "d", "e", "VI"}
    assert (claims["control"] == "untrained").sum() == 4  # (c), (d), (e), VI against the untrained network
    matched = claims["measure"].str.contains("at step")
    assert matched.sum() == 1 and claims.loc[matched, "claim"].item() == "a"  # the trajectories' matched-step row
    assert (tables / TRAJECTORY).is_file() and (tables / "pattern_confusion.csv").is_file()
    again = check_shipped(tables)
    assert list(again["verdict"]) == list(claims["verdict"])
    assert sum(p.stat().st_size for p in tables.glob("*.csv")) <= BUDGET


def _shipped_copy(study, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    """A copy of the report's shipped tables, to tamper with."""
    workdir, params = study
    tables = workdir / "reports" / params["study"]["name"] / "tables"
    copy = tmp_path / "tables"
    copy.mkdir()
    for path in tables.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    return copy


def test_shipped_tables_fail_loudly_when_they_do_not_reproduce_a_verdict(study, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    copy = _shipped_copy(study, tmp_path)
    scale_free = pd.read_csv(copy / "scale_free.csv")
    scale_free.loc[scale_free["variant"] == "benchmark", "hoyer"] += 0.5  # a table that disagrees with the claims
    scale_free.to_csv(copy / "scale_free.csv", index=False)
    with pytest.raises(EvidenceError, match="claim row 0"):
        check_shipped(copy)


def test_the_matched_step_claim_is_recomputed_from_the_shipped_trajectories(study, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    copy = _shipped_copy(study, tmp_path)
    row = int(pd.read_csv(copy / "claims.csv")["measure"].str.contains("at step").to_numpy().argmax())
    trajectories = pd.read_csv(copy / TRAJECTORY)
    trajectories.loc[trajectories["variant"] == "benchmark", "value"] += 0.5  # rows that disagree with the claim
    trajectories.to_csv(copy / TRAJECTORY, index=False)
    with pytest.raises(EvidenceError, match=f"claim row {row} column mean_difference"):
        check_shipped(copy)
    (copy / TRAJECTORY).unlink()  # without them, the shipped claims table holds a row nothing recomputes
    with pytest.raises(EvidenceError, match="shipped claims"):
        check_shipped(copy)


def test_every_link_of_the_report_resolves_inside_the_repository(study) -> None:  # type: ignore[no-untyped-def]
    workdir, params = study
    readme = workdir / "reports" / params["study"]["name"] / "README.md"
    assert unresolved_links(readme, workdir) == []
    assert "](tables/)" in readme.read_text()


def test_shipping_refuses_tables_over_the_budget(tmp_path: Path) -> None:
    compare = tmp_path / "compare"
    compare.mkdir()
    rows = BUDGET // len("x,0.123456\n") + 1  # one row more than the budget holds
    pd.DataFrame({"variant": ["x"] * rows, "value": 0.123456}).to_csv(compare / "cka.csv", index=False)
    with pytest.raises(EvidenceError, match="over the 3,000,000 budget"):
        ship_tables(tmp_path / "out", compare, pd.DataFrame(), {}, pd.DataFrame(), {})
