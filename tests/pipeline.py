"""Start stage scripts the one way the tests do: ``pipelines/<name>.py``'s ``main(argv)`` in-process,
wrapped in ``run_stage`` exactly as its ``__main__`` is, in a given folder; and a whole tiny
pipeline in order, as ``dvc repro`` would, for end-to-end tests.

Only Lightning's DDP launcher needs a real process (it re-executes ``sys.argv``); that test starts
the script with ``subprocess`` itself.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import yaml

from cnnscope.compose import compose_params
from cnnscope.errors import run_stage

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: Settings that keep a whole pipeline run to about a minute on 2 CPU cores.
TINY = [
    "study.variants=[benchmark,untrained]",
    "study.contrasts=[]",
    "study.seeds=[0]",
    "trainer.max_epochs=1",
    "extract.eval_samples=200",
    "compare.bootstrap=50",
    "oip.maps=[0,1,2,3]",
    "oip.restarts=2",
    "oip.wavelengths=[1,4]",
    "oip.steps=3",
    "oip.snapshots=[0,3]",
    "trajectory.eval_samples=200",
    "trajectory.oip_steps=3",
]


@functools.cache
def load_stage(name: str) -> ModuleType:
    """The module ``pipelines/<name>.py`` (imported once per test session)."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "pipelines" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _outside_dvc_and_mlflow() -> Iterator[None]:
    """No inherited ``MLFLOW_*`` / ``DVC_*`` settings: a stage under test uses only its folder."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    with mock.patch.dict(os.environ, kept, clear=True):
        yield


def run_stage_main(name: str, argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> int:
    """Run stage ``name`` with ``argv`` in ``cwd`` (default: the current folder) and the extra
    environment ``env`` (e.g. the ``DVC_EXP_NAME`` that ``dvc exp run`` sets); its exit code
    (0, or 2 with one line on stderr for a user error; a bug propagates its exception)."""
    main = load_stage(name).main
    with contextlib.chdir(cwd or Path.cwd()), _outside_dvc_and_mlflow(), mock.patch.dict(os.environ, env or {}):
        try:
            run_stage(lambda: main(argv))
        except SystemExit as exit_:
            return int(exit_.code or 0)
    return 0


def run_pipeline(workdir: Path, overrides: list[str]) -> dict[str, Any]:
    """Compose ``TINY + overrides`` into ``workdir/params.yaml`` and run every stage there."""
    params = compose_params(TINY + overrides)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    jobs = [(v, s) for v in params["study"]["variants"] for s in params["study"]["seeds"]]
    commands: list[tuple[str, list[str]]] = [("prepare", [])]
    commands += [("train", ["--variant", v, "--seed", str(s), "--no-progress"]) for v, s in jobs]
    commands += [("extract", ["--variant", v, "--seed", str(s)]) for v, s in jobs]
    commands += [("measures", ["--variant", v, "--seed", str(s)]) for v, s in jobs]
    commands += [("histograms", ["--variant", v, "--seed", str(s)]) for v, s in jobs]
    commands.append(("compare", []))
    oip_seeds = params["study"]["oip_seeds"]
    commands += [("oip", ["--variant", v, "--seed", str(s)]) for v, s in jobs if s in oip_seeds]
    commands += [("exemplars", ["--variant", v, "--seed", str(s)]) for v, s in jobs]
    commands += [("trajectory", ["--variant", v, "--seed", str(s)]) for v, s in jobs]
    commands.append(("atlas", []))
    commands.append(("report", []))
    for stage, argv in commands:
        assert run_stage_main(stage, argv, workdir) == 0, f"{stage} {argv} failed (its error is on stderr above)"
    assert (workdir / params["atlas"]["out_dir"] / params["study"]["name"] / "index.html").is_file()
    return params


def clean_env() -> dict[str, str]:
    """The environment of a command a user types: no inherited MLflow/DVC settings, the venv first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"  # stage commands call `python`
    return env


def dask_worker(scheduler_file: Path) -> list[str]:
    """The command of one single-thread Dask worker of the scheduler that wrote ``scheduler_file``."""
    return [str(BIN / "dask"), "worker", "--nthreads", "1", "--no-dashboard", "--scheduler-file", str(scheduler_file)]


def copy_of_repo(target: Path) -> Path:
    """This working tree's files (tracked, and new ones git does not ignore) as a fresh git
    repository: what a clone of the next commit would hold."""
    listed = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    files = subprocess.run(listed, cwd=REPO, capture_output=True, text=True, check=True)
    for name in filter(None, files.stdout.split("\0")):
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    for command in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=target, check=True, env=clean_env() | {"GIT_AUTHOR_NAME": "t",
                       "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})  # fmt: skip
    return target


def dvc(repo: Path, *args: str) -> str:
    """``dvc <args>`` in ``repo``; its stdout (the test fails with DVC's output on an error)."""
    result = subprocess.run(
        [str(BIN / "dvc"), *args], cwd=repo, env=clean_env(), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result.stdout
