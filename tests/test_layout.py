"""The contract between stages lives in cnnscope.layout alone: no other module of src/ or pipelines/
spells a stage's file names or builds a metrics/plots path by hand."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cnnscope import layout

ROOT = Path(__file__).resolve().parents[1]
NAMES = [
    layout.MANIFEST,
    layout.BEST_CKPT,
    layout.INITIAL_CKPT,
    layout.LAST_CKPT,
    layout.PROVENANCE,
    layout.OIP_TABLE,
    layout.OIP_TENSORS,
    layout.EXEMPLARS,
    layout.AGAINST_DATA,
    layout.TRAJECTORY_TABLE,
]
PATHS = ("metrics/", "plots/train")


def _docstrings(tree: ast.AST) -> set[int]:
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    ids = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None) if isinstance(node, nodes) else None
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            ids.add(id(body[0].value))
    return ids


def literals(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module (f-string pieces included), docstrings left out."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
    ]


def offences(path: Path) -> list[str]:
    return [
        f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}: {text!r}"
        for line, text in literals(path)
        if any(name in text for name in (*NAMES, *PATHS))
    ]


def sources() -> list[Path]:
    """Every module of src/cnnscope and pipelines/ but cnnscope.layout."""
    files = [*(ROOT / "src" / "cnnscope").rglob("*.py"), *(ROOT / "pipelines").glob("*.py")]
    return sorted(p for p in files if p != Path(layout.__file__).resolve())


def test_no_stage_file_name_outside_layout() -> None:
    found = [hit for path in sources() for hit in offences(path)]
    assert not found, "spell these through cnnscope.layout:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "code",
    ['path = folder / "best.ckpt"', 'p = Path("metrics/oip") / name', 'f"{root}/plots/train/{name}.csv"'],
)
def test_the_check_finds_a_literal(tmp_path: Path, code: str) -> None:
    module = tmp_path / "stage.py"
    module.write_text(f'"""Docstrings may name ``best.ckpt``."""\n{code}\n')
    assert len(offences(module)) == 1


def test_paths() -> None:
    assert layout.metrics_path("oip", "benchmark", 2, "r") == Path("r/metrics/oip/benchmark_seed2.json")
    assert layout.history_path("dummy", 0) == Path("plots/train/dummy_seed0.csv")
    assert layout.best_checkpoint("models", "benchmark", 1) == Path("models/benchmark/seed1/best.ckpt")
    assert layout.stage_metrics("compare") == Path("metrics/compare.json")
