"""The benchmark scripts keep working as the library changes: each parses its arguments, and the OIP
recipe benchmark runs end to end on a small checkpoint (it once called stage helpers that had moved)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cnnscope.data.prepared import PreparedData
from cnnscope.models import save_checkpoint
from conftest import REPO_ROOT, random_model

#: Each test starts a Python process (torch's import alone is seconds).
pytestmark = pytest.mark.slow

SCRIPTS = sorted(p for p in (REPO_ROOT / "benchmarks").glob("*.py") if "__main__" in p.read_text())


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_benchmark_parses_its_arguments(script: Path, tmp_path: Path) -> None:
    done = _run([str(script), "--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_oip_parameterization_runs_on_a_checkpoint(tmp_path: Path, prepared: PreparedData) -> None:
    prepared.save(tmp_path / "data/prepared")
    save_checkpoint(random_model(prepared), tmp_path / "models/benchmark/seed0/best.ckpt")
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["oip"].update(maps=[0, 1], steps=3, snapshots=[0, 3], restarts=2, wavelengths=[1, 4])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    script = REPO_ROOT / "benchmarks/oip_parameterization.py"
    done = _run([str(script), "--threads", "1", "--recipe", "faint=init_scale=0.03 parameterization=fourier"], tmp_path)
    assert done.returncode == 0, done.stderr
    recipes = json.loads(done.stdout)["recipes"]
    assert list(recipes) == ["pixel", "preset", "faint"]
    assert recipes["faint"]["oip"]["init_scale"] == 0.03 and recipes["preset"]["candidates"] == 2 * 4
    assert all(-1 <= r["median_robustness"] <= 1 and -1 <= r["cross_map_similarity"] <= 1 for r in recipes.values())


@pytest.mark.parametrize(
    ("name", "args"),
    [("extract_overhead", []), ("exemplars_overhead", []), ("train_throughput", ["--data", "no-such-folder"])],
)
def test_benchmark_without_the_shared_data_says_so(name: str, args: list[str], tmp_path: Path) -> None:
    """Run from a copy whose ``../shared/data`` does not exist: one error line, no traceback."""
    folder = tmp_path / "clone" / "benchmarks"
    folder.mkdir(parents=True)
    for script in (REPO_ROOT / "benchmarks").glob("*.py"):  # the scripts and the modules they share
        shutil.copy(script, folder)
    done = _run([str(folder / f"{name}.py"), *args], tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("cnnscope: error: ") and "MNIST" in line
