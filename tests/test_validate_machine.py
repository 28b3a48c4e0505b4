"""The validate stage checks what a setting asks of this machine (the accelerator, the MLflow store,
``data.root``): found by ``benchmarks/hostile_cases.py``, where under DVC these cost the stage's
outputs (issue 24, item 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cnnscope.compose import compose_params
from pipeline import TINY

try:  # the stage runner of tests/pipeline.py, under its new name or its old one
    from pipeline import run_stage_as_dvc as run_stage_main
except ImportError:  # pragma: no cover
    from pipeline import run_stage_main  # type: ignore[attr-defined,no-redef]


# ---------------------------------------------------------------- what a setting asks of the machine, at validate


@pytest.mark.parametrize(
    ("section", "values", "env", "needle"),
    [
        ("data", {"name": "imagefolder", "root": "/no/such/folder", "image_size": 32}, {}, "data.root=/no/such/folder"),
        ("tracking", {"uri": "sqlite:////no/such/dir/mlflow.db"}, {}, "/no/such/dir does not exist"),
        ("tracking", {"uri": None}, {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, "does not answer"),
    ],
    ids=["data-root", "store-folder", "server"],
)
def test_the_validate_stage_checks_what_a_setting_asks_of_this_machine(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    section: str,
    values: dict[str, Any],
    env: dict[str, str],
    needle: str,
) -> None:
    """A setting that only a stage's work would have found (hostile_cases.py: under DVC these cost
    the stage's outputs) stops the validate stage, before DVC touches any other stage."""
    raw = compose_params(TINY)
    raw[section].update(values)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    capsys.readouterr()
    assert run_stage_main("validate", [], tmp_path, env) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cnnscope: error: ") and needle in err[-1], err
    assert not (tmp_path / ".validated").exists() and not Path("/no/such/dir").exists()


def test_the_validate_stage_rejects_an_accelerator_this_machine_lacks(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    raw = compose_params([*TINY, "trainer.accelerator=gpu"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    assert run_stage_main("validate", [], tmp_path) == 2
    assert not (tmp_path / ".validated").exists()


def test_the_hostile_cases_script_flags_what_it_must() -> None:
    """benchmarks/hostile_cases.py's verdict on recorded rows (the cases themselves take half an hour)."""
    import importlib.util
    import sys

    from conftest import REPO_ROOT

    spec = importlib.util.spec_from_file_location("hostile_cases", REPO_ROOT / "benchmarks/hostile_cases.py")
    assert spec is not None and spec.loader is not None
    hostile = importlib.util.module_from_spec(spec)
    sys.modules["hostile_cases"] = hostile  # its dataclass looks its module up there
    spec.loader.exec_module(hostile)
    case = next(c for c in hostile.cases() if c.name == "model-lr-negative")
    base = {"case": case.name, "leftovers": [], "new_files": [], "traceback": False}
    line = "cnnscope: error: model.lr=-0.001 is out of range: it must be > 0"
    clean = hostile.judge({**base, "way": "dvc", "exit": 255, "outputs": "kept", "tail": f"x\n{line}\nERROR: y"}, case)
    assert clean["clear"] and not clean["problem"]
    cost = hostile.judge({**base, "way": "dvc", "exit": 255, "outputs": "restorable", "tail": line}, case)
    assert cost["problem"] == "setting cost outputs"
    silent = hostile.judge({**base, "way": "direct", "exit": 0, "outputs": "kept", "tail": "trained"}, case)
    assert "silent wrong result" in silent["problem"]
    crash = {**base, "way": "direct", "exit": 1, "outputs": "LOST (1: x)", "traceback": True, "tail": "Traceback"}
    assert hostile.judge(crash, case)["problem"] == "traceback, outputs lost, unclear message"
