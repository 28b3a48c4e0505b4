"""Run the stage scripts in order in a scratch folder, as `dvc repro` would, for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from cnnscope.compose import compose_params

REPO = Path(__file__).resolve().parents[1]

#: Settings that keep a whole pipeline run to about a minute on 2 CPU cores.
TINY = [
    "study.variants=[benchmark,untrained]",
    "study.seeds=[0]",
    "trainer.max_epochs=1",
    "extract.eval_samples=200",
    "compare.bootstrap=50",
    "oip.maps=[0,1,2,3]",
    "oip.seeds=2",
    "oip.wavelengths=[1,4]",
    "oip.steps=3",
    "oip.snapshots=[0,3]",
]


def run_pipeline(workdir: Path, overrides: list[str]) -> dict[str, Any]:
    """Compose ``TINY + overrides`` into ``workdir/params.yaml`` and run every stage there."""
    params = compose_params(TINY + overrides)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    jobs = [(v, s) for v in params["study"]["variants"] for s in params["study"]["seeds"]]
    commands = [["prepare.py"]]
    commands += [["train.py", "--variant", v, "--seed", str(s), "--no-progress"] for v, s in jobs]
    commands += [["extract.py", "--variant", v, "--seed", str(s)] for v, s in jobs]
    commands.append(["compare.py"])
    commands += [["oip.py", "--variant", v, "--seed", str(s)] for v, s in jobs]
    commands += [["exemplars.py", "--variant", v, "--seed", str(s)] for v, s in jobs]
    commands.append(["atlas.py"])
    commands.append(["report.py"])
    for script, *args in commands:
        result = subprocess.run(
            [sys.executable, str(REPO / "pipelines" / script), *args],
            cwd=workdir, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"{script} {args} failed:\n{result.stderr[-3000:]}"
    assert (workdir / params["atlas"]["out_dir"] / params["study"]["name"] / "index.html").is_file()
    return params
