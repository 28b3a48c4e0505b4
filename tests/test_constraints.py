"""``constraints.txt`` pins every dependency that ``pyproject.toml`` names, so installing with it
reproduces the package set the published reports came from (a partial pin set would let the missing
packages float, and the published numbers would no longer regenerate digit for digit)."""

from __future__ import annotations

import re

import tomllib

from conftest import REPO_ROOT


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_constraints_pin_every_declared_dependency() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    declared |= {_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt line {line!r} is not an exact pin"
            pins[_name(name)] = version
    assert declared - set(pins) == set(), "constraints.txt lacks these dependencies: regenerate it with pip freeze"
    assert "cnnscope" not in pins  # the project itself is installed editable, never pinned
