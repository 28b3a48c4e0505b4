"""Run stages the one way the tests do, as DVC would (:func:`run_stage_as_dvc`): the command
``python pipelines/<name>.py <args>`` in the study's folder, with the environment of a user's shell
(:func:`clean_env`), through the script's own ``__main__`` block — in-process, so torch and the
library are imported once per test session, not once per stage; and a whole tiny pipeline in order,
as ``dvc repro`` would, for end-to-end tests (:func:`run_pipeline`). ``dvc`` itself:
:func:`dvc` / :func:`dvc_result`.

Only what needs a real process starts one itself: Lightning's DDP launcher (it re-executes
``sys.argv``), a Ctrl-C, and the checks of what a fresh interpreter imports.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

from cnnscope.compose import compose_params
from cnnscope.runner.dag import STAGE_FOLDERS

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
    "trainer.checkpoint_steps=4",  # 4 log-spaced steps plus the shared 1-2-5 ones: 6-8 checkpoints, not 12
    "trajectory.eval_samples=200",
    "trajectory.oip_steps=3",
]


def run_stage_as_dvc(
    name: str, argv: Sequence[str] = (), cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> int:
    """Run ``python pipelines/<name>.py <argv>`` as a DVC stage's ``cmd`` runs: in ``cwd`` (default:
    the current folder), with :func:`clean_env` plus ``env`` (e.g. the ``DVC_EXP_NAME`` that
    ``dvc exp run`` sets), through the script's ``__main__`` block. Returns its exit code (0, or 2
    with one line on stderr for a user error); a bug propagates its exception."""
    script = REPO / "pipelines" / f"{name}.py"
    environment = clean_env() | dict(env or {})
    with (
        contextlib.chdir(cwd or Path.cwd()),
        mock.patch.dict(os.environ, environment, clear=True),
        mock.patch.object(sys, "argv", [str(script), *argv]),
    ):
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as exit_:
            assert exit_.code is None or isinstance(exit_.code, int), exit_.code
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
        assert run_stage_as_dvc(stage, argv, workdir) == 0, f"{stage} {argv} failed (its error is on stderr above)"
    assert (workdir / params["atlas"]["out_dir"] / params["study"]["name"] / "index.html").is_file()
    return params


def clean_env() -> dict[str, str]:
    """The environment of a command a user types: no inherited MLflow/DVC settings, the venv first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"  # stage commands call `python`
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a test's server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: The environment of a test's ``mlflow server``: without MLflow 3's job runner, which starts seven
#: ``huey`` consumer processes for GenAI jobs this project never submits (its cost: benchmarks/README.md).
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def dask_worker(scheduler_file: Path) -> list[str]:
    """The command of one single-thread Dask worker of the scheduler that wrote ``scheduler_file``."""
    return [str(BIN / "dask"), "worker", "--nthreads", "1", "--no-dashboard", "--scheduler-file", str(scheduler_file)]


#: Left out of :func:`copy_of_repo`: the published default study's record (``dvc.lock`` and
#: ``stages/<kind>/dvc.lock``), an entry for each of its stages. A copy runs a study of its own, and
#: DVC re-reads and rewrites a stage's whole lock file for every stage it runs (a round-trip YAML
#: parse and dump under its repository lock; what that costs: benchmarks/README.md, "a copy's stage
#: under DVC"), so a copy would pay at every stage for entries that are not its own.
def not_copied(name: str) -> bool:
    return Path(name).name == "dvc.lock"


def dvc_target(stage: str) -> str:
    """DVC's name for ``stage`` (``train@benchmark-0`` → ``stages/train/dvc.yaml:train@benchmark-0``):
    each per-network kind has its own ``dvc.yaml`` (dvc.yaml's header says why)."""
    path = f"{STAGE_FOLDERS}/{stage.split('@', 1)[0]}/dvc.yaml"
    return f"{path}:{stage}" if (REPO / path).is_file() else stage


def copy_of_repo(target: Path) -> Path:
    """This working tree's files (tracked, and new ones git does not ignore) as a fresh git
    repository: what a clone of the next commit would hold, without the default study's
    lock files (:func:`not_copied`); the copy's own study writes its own."""
    listed = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    files = subprocess.run(listed, cwd=REPO, capture_output=True, text=True, check=True)
    for name in filter(None, files.stdout.split("\0")):
        if (REPO / name).is_file() and not not_copied(name):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    for command in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=target, check=True, env=clean_env() | {"GIT_AUTHOR_NAME": "t",
                       "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})  # fmt: skip
    return target


def dvc_result(repo: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``dvc <args>`` in ``repo`` with :func:`clean_env` plus ``env``, whatever its exit status."""
    environment = clean_env() | dict(env or {})
    return subprocess.run([str(BIN / "dvc"), *args], cwd=repo, env=environment, capture_output=True, text=True)


def dvc(repo: Path, *args: str) -> str:
    """``dvc <args>`` in ``repo``; its stdout (the test fails with DVC's output on an error)."""
    result = dvc_result(repo, *args)
    assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result.stdout
