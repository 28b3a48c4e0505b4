"""``constraints.txt`` pins every dependency that cnnscope declares, each within the declared bounds, so
installing with it reproduces the package set the published reports came from (a partial pin set would
let the missing packages float; a pin below a lower bound would make the install fail)."""

from __future__ import annotations

from importlib.metadata import requires

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO_ROOT


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt line {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def test_constraints_pin_every_declared_dependency_within_its_bounds() -> None:
    pins = _pins()
    declared = [Requirement(r) for r in requires("cnnscope") or []]  # the installed metadata, extras included
    assert declared, "cnnscope is not installed: run make setup"
    missing = sorted({canonicalize_name(r.name) for r in declared} - set(pins))
    assert not missing, f"constraints.txt lacks {missing}: regenerate it with pip freeze --exclude-editable"
    outside = [f"{r.name}=={pins[canonicalize_name(r.name)]} vs {r.specifier}" for r in declared
               if not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)]  # fmt: skip
    assert not outside, f"pins outside pyproject.toml's bounds: {outside}"
    assert "cnnscope" not in pins  # the project itself is installed editable, never pinned
