"""Start-up cost (issue 22, item 7): the light import paths stay light.

Every DVC stage is a process of its own, so what a stage imports before it knows whether it has work
is paid once per stage. Lightning, MLflow, matplotlib, scikit-learn, pandas, SciPy and torchvision are
imported only where they are used; reading the configuration and a stage's ``--help`` import none of
them (nor torch), and the OIP and exemplar stages of a network without feature maps decide that with
torch alone. Each check starts a fresh interpreter and lists the heavy packages it ended up with, so a
module-level import added anywhere on the way fails here, naming the package (``python -X importtime``
shows who imported it). The measured times are in benchmarks/README.md ("Stage start-up").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cnnscope.compose import compose_params
from cnnscope.data.prepared import PreparedData
from cnnscope.models import save_checkpoint
from conftest import REPO_ROOT, random_model

HEAVY = ("torch", "torchvision", "lightning", "mlflow", "matplotlib", "sklearn", "pandas", "scipy")


def heavy_after(
    code: str, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None, packages: tuple[str, ...] = HEAVY
) -> list[str]:
    """The ``packages`` (default :data:`HEAVY`) that a fresh interpreter has imported after running ``code``."""
    report = f"import json, sys\nprint(json.dumps([m for m in {packages!r} if m in sys.modules]))"
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def run_script(script: Path, *args: str) -> str:
    """Code that runs ``script`` as ``python script args`` would, in this interpreter, and returns
    normally when it succeeded (``--help`` exits with status 0)."""
    return (
        "import runpy, sys\n"
        f"sys.argv = [{str(script)!r}, *{list(args)!r}]\n"
        "try:\n"
        f"    runpy.run_path({str(script)!r}, run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code"
    )


def test_the_configuration_and_the_stage_helpers_import_no_heavy_package() -> None:
    code = "import cnnscope.config, cnnscope.errors, cnnscope.io, cnnscope.network_stage, cnnscope.stage_args"
    code += ", cnnscope.tracking"
    assert heavy_after(code) == []


@pytest.mark.parametrize("stage", sorted(p.stem for p in (REPO_ROOT / "pipelines").glob("*.py")))
def test_a_stage_help_imports_no_heavy_package(stage: str) -> None:
    """Nor does a stage script before its ``main`` runs: under ``cnnscope repro`` that is where the
    process DVC started hands the stage to the worker's warm server (README "Scaling out")."""
    assert heavy_after(run_script(REPO_ROOT / "pipelines" / f"{stage}.py", "--help")) == []


@pytest.mark.parametrize("stage", sorted(p.stem for p in (REPO_ROOT / "pipelines").glob("*.py")))
def test_a_stage_script_hands_off_before_numpy_or_the_configuration_library(stage: str) -> None:
    """What a stage script imports at its top runs in the process DVC starts, before ``run_stage``
    hands the stage to a warm server, once per stage: not even NumPy, OmegaConf or PyYAML are among it
    (the warm server has them; benchmarks/README.md, "Max-pool layout and OIP passes")."""
    script = REPO_ROOT / "pipelines" / f"{stage}.py"
    code = f"import runpy\nrunpy.run_path({str(script)!r}, run_name='the stage process')"  # not __main__
    assert heavy_after(code, packages=(*HEAVY, "numpy", "omegaconf", "yaml")) == []


@pytest.mark.parametrize("stage", ["oip", "exemplars"])
def test_a_network_without_maps_is_decided_with_torch_alone(stage: str, tmp_path: Path, prepared: PreparedData) -> None:
    """The pixel MLP has no map to optimise or rank images for: the stage writes its "no feature
    maps" outputs without importing the OIP code's torchvision, MLflow or matplotlib."""
    params = compose_params(["study.variants=[mlp]", "study.contrasts=[]", "study.seeds=[0]"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    prepared.save(tmp_path / params["data"]["out_dir"])
    save_checkpoint(random_model(prepared, "mlp"), tmp_path / params["trainer"]["models_dir"] / "mlp/seed0/best.ckpt")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    code = run_script(REPO_ROOT / "pipelines" / f"{stage}.py", "--variant", "mlp", "--seed", "0")
    assert heavy_after(code, tmp_path, env) == ["torch"]
    out = params["oip" if stage == "oip" else "exemplars"]["out_dir"]
    assert "no feature maps" in json.loads((tmp_path / out / "mlp/seed0/index.json").read_text())["note"]
