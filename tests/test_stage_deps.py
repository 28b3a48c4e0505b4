"""dvc.yaml's deps cover every library file a stage imports, so "a change re-runs exactly what it
affects" holds: a code change a stage's script can reach re-runs that stage.

The import closure is computed from the source with :mod:`ast` (nothing is imported): a stage
script's ``cnnscope`` imports, then theirs, with every package ``__init__`` on the way (importing
``cnnscope.oip.generate`` runs ``cnnscope/oip/__init__.py``). Imports under ``if TYPE_CHECKING:``
are skipped: they never run.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from cnnscope.runner.dag import stage_definitions

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
STAGES = stage_definitions(REPO)


def module_file(name: str) -> Path | None:
    """The file of module ``name`` under src/, or None when it is not ours."""
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except the bodies of ``if TYPE_CHECKING:`` blocks."""
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def imported_modules(path: Path) -> set[str]:
    """The ``cnnscope`` modules ``path`` imports at run time (a ``from`` import of a submodule
    counts as that submodule)."""
    names: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}")}
    return {n for n in names if n == "cnnscope" or n.startswith("cnnscope.")}


def closure(script: Path) -> set[Path]:
    """Library files (under src/cnnscope) that running ``script`` imports."""
    seen: set[Path] = set()
    todo = sorted(imported_modules(script))
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # the packages on the way run their __init__ too
            path = module_file(".".join(parts[:i]))
            if path is not None and path not in seen:
                seen.add(path)
                todo += sorted(imported_modules(path))
    return seen


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO).as_posix()
    return any(rel == d.rstrip("/") or rel.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_its_imports(stage: str) -> None:
    spec = STAGES[stage]
    script = REPO / re.search(r"pipelines/\w+\.py", spec["cmd"]).group(0)  # type: ignore[union-attr]
    deps = [str(d) for d in spec["deps"]]
    assert covered(script, deps), f"{stage}: dvc.yaml does not list its script {script.name}"
    missing = sorted(p.relative_to(REPO).as_posix() for p in closure(script) if not covered(p, deps))
    assert not missing, f"stage {stage!r} imports {missing} but dvc.yaml's deps do not list them"


def test_closure_follows_packages_and_submodules() -> None:
    """The closure is what Python would run: the OIP stage reaches the models' networks through
    ``cnnscope.models`` and the allocator setting through ``cnnscope.errors``."""
    files = {p.relative_to(SRC).as_posix() for p in closure(REPO / "pipelines" / "oip.py")}
    assert {"cnnscope/__init__.py", "cnnscope/models/networks.py", "cnnscope/runtime.py"} <= files
    assert "cnnscope/viz/oip.py" in files  # `from cnnscope.viz import oip`: a submodule
    assert "cnnscope/training/module.py" not in files  # the OIP stage never reaches training/
