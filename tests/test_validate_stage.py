"""Under DVC a rejected setting stops at the root ``validate`` stage, before DVC removes any other
stage's outputs (issue 24, item 1), and ``params.yaml`` comes back with one git command."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
import yaml

from cnnscope.runner.dag import parse_dot
from pipeline import REPO, copy_of_repo, dvc, dvc_result

GIT_ID = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return dvc_result(repo, *args, env=GIT_ID)  # `dvc exp run` commits


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")}


def test_every_stage_runs_after_validate() -> None:
    """prepare depends on validate's output, and every other stage on an output of prepare's."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert stages["validate"]["params"] == [{"params.yaml": None}], "validate must track every key"
    assert ".validated" in stages["validate"]["outs"] and ".validated" in stages["prepare"]["deps"]
    graph = parse_dot(dvc(REPO, "dag", "--dot"))
    for name in graph.stages:  # every stage of the study, matrix items included, runs after validate
        assert "validate" in graph.ancestors([name]), f"{name} does not follow validate"


@pytest.mark.slow
def test_a_rejected_setting_under_dvc_keeps_the_earlier_outputs(tmp_path: Path) -> None:
    repo = copy_of_repo(tmp_path / "repo")
    first = _dvc(repo, "repro", "prepare")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    prepared = repo / "data/prepared"
    before, committed = _hashes(prepared), (repo / "params.yaml").read_text()
    assert before and (repo / ".validated").is_file()
    # without the validate stage DVC deletes data/prepared before prepare.py rejects the value
    run = _dvc(repo, "exp", "run", "-S", "data.val_fraction=2", "prepare")
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert "cnnscope: error: data.val_fraction=2.0 must be in [0, 1)" in output and "Traceback" not in output
    assert _hashes(prepared) == before
    # params.yaml keeps the rejected value; DVC's autostage stages it when a stage ran before the failure
    # (simulated here), and then `git checkout -- params.yaml` would restore the staged copy.
    # `git checkout HEAD -- params.yaml` gives the committed one back in either case.
    git = lambda *args: subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)  # noqa: E731
    assert (repo / "params.yaml").read_text() != committed
    git("add", "params.yaml")
    git("checkout", "HEAD", "--", "params.yaml")
    assert (repo / "params.yaml").read_text() == committed and not git("status", "--porcelain", "params.yaml").stdout
    again = _dvc(repo, "repro", "prepare")  # validate runs again and writes the same bytes: prepare is not re-run
    assert again.returncode == 0 and "Running stage 'prepare'" not in again.stdout, again.stdout + again.stderr
    assert _hashes(prepared) == before
