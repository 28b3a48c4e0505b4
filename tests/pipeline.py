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
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import yaml

from cnnscope.compose import compose_params
from cnnscope.errors import run_stage

REPO = Path(__file__).resolve().parents[1]

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
    commands.append(("compare", []))
    oip_seeds = params["study"]["oip_seeds"]
    commands += [("oip", ["--variant", v, "--seed", str(s)]) for v, s in jobs if s in oip_seeds]
    commands += [("exemplars", ["--variant", v, "--seed", str(s)]) for v, s in jobs]
    commands.append(("atlas", []))
    commands.append(("report", []))
    for stage, argv in commands:
        assert run_stage_main(stage, argv, workdir) == 0, f"{stage} {argv} failed (its error is on stderr above)"
    assert (workdir / params["atlas"]["out_dir"] / params["study"]["name"] / "index.html").is_file()
    return params
