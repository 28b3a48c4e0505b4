"""The stage graph of the project's ``dvc.yaml`` files and the stages a run must execute, read
through DVC's CLI."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cnnscope.errors import CnnscopeError

#: The folder of the per-network stage kinds' ``dvc.yaml`` files (``stages/<kind>/dvc.yaml``).
STAGE_FOLDERS = "stages"


def pipeline_files(root: Path) -> list[Path]:
    """The project's ``dvc.yaml`` files: the root one, then ``stages/<kind>/dvc.yaml`` (dvc.yaml's
    header says why the kinds have files of their own)."""
    return [root / "dvc.yaml", *sorted((root / STAGE_FOLDERS).glob("*/dvc.yaml"))]


def read_stages(path: Path) -> dict[str, dict]:
    """The stages (or matrix groups) of one ``dvc.yaml`` as written, before DVC interpolates them."""
    return (yaml.safe_load(path.read_text()) or {}).get("stages", {})


def stage_definitions(root: Path) -> dict[str, dict]:
    """Each stage (or matrix group) of every ``dvc.yaml`` of the project, as written."""
    definitions: dict[str, dict] = {}
    for path in pipeline_files(root):
        for name, spec in read_stages(path).items():
            if name in definitions:
                raise CnnscopeError(f"stage {name!r} is defined twice ({path.relative_to(root)} and another dvc.yaml)")
            definitions[name] = spec
    return definitions


@dataclass
class StageGraph:
    """Stages in ``dvc dag`` order (upstream first) with their direct upstream stages.

    A stage's name is the one a user types, ``train@benchmark-0``; DVC addresses a stage of a
    ``dvc.yaml`` below the root by its file too (``stages/train/dvc.yaml:train@benchmark-0``), which
    ``address`` keeps for the stages that have one.
    """

    stages: list[str]
    upstream: dict[str, set[str]] = field(default_factory=dict)
    address: dict[str, str] = field(default_factory=dict)

    def target(self, stage: str) -> str:
        """How DVC's command line names ``stage``."""
        return self.address.get(stage, stage)

    def dvcfile(self, stage: str) -> str:
        """The ``dvc.yaml`` that defines ``stage``, relative to the repository root."""
        target = self.target(stage)
        return target.rsplit(":", 1)[0] if ":" in target else "dvc.yaml"

    def downstream(self) -> dict[str, set[str]]:
        children: dict[str, set[str]] = {s: set() for s in self.stages}
        for stage, parents in self.upstream.items():
            for parent in parents:
                children[parent].add(stage)
        return children

    def ancestors(self, names: Iterable[str]) -> set[str]:
        """``names`` and every stage they depend on, transitively."""
        seen: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self.upstream.get(name, ()))
        return seen

    def descendants(self, names: Iterable[str]) -> set[str]:
        """``names`` and every stage that depends on them, transitively."""
        children, seen, todo = self.downstream(), set(), list(names)
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(children[name])
        return seen

    def order(self, names: Iterable[str]) -> list[str]:
        """``names`` topologically sorted (upstream first); ties keep ``dvc.yaml``'s order."""
        wanted, done, out = set(names), set[str](), list[str]()
        position = {s: i for i, s in enumerate(self.stages)}
        while len(out) < len(wanted):
            ready = [s for s in wanted - done if not (self.upstream.get(s, set()) & wanted) - done]
            if not ready:
                raise CnnscopeError(f"dvc.yaml has a cycle among: {', '.join(sorted(wanted - done))}")
            ready.sort(key=position.__getitem__)
            out.extend(ready)
            done.update(ready)
        return out


def _short_names(addresses: list[str]) -> dict[str, str]:
    """DVC address → the stage's own name (``stages/train/dvc.yaml:train@benchmark-0`` →
    ``train@benchmark-0``), unless two files define that name: those keep their address."""
    short = {a: a.rsplit(":", 1)[-1] for a in addresses}
    uses = Counter(short.values())
    return {a: s if uses[s] == 1 else a for a, s in short.items()}


def parse_dot(dot: str) -> StageGraph:
    """The graph of ``dvc dag --dot``'s output: ``"a";`` declares a stage, ``"a" -> "b";`` says b needs a."""
    stages: list[str] = []
    edges: list[tuple[str, str]] = []
    for line in dot.splitlines():
        line = line.strip().rstrip(";")
        if "->" in line:
            parent, child = (part.strip().strip('"') for part in line.split("->"))
            edges.append((parent, child))
        elif line.startswith('"'):
            stages.append(line.strip('"'))
    name = _short_names(stages)
    upstream: dict[str, set[str]] = {name[s]: set() for s in stages}
    for parent, child in edges:
        upstream[name[child]].add(name[parent])
    address = {short: full for full, short in name.items() if short != full}
    return StageGraph([name[s] for s in stages], upstream, address)


def _names(stage: str, address: str) -> set[str]:
    """What a user may type for ``stage``: its name, its group, and the same as DVC addresses them."""
    return {stage, stage.split("@", 1)[0], address, address.split("@", 1)[0]}


def resolve_targets(graph: StageGraph, targets: list[str]) -> set[str]:
    """Stage names for ``targets``: a stage (``train@benchmark-0``) or a matrix group (``train``), by
    name or by DVC's address (``stages/train/dvc.yaml:train@benchmark-0``, ``stages/train/dvc.yaml:train``)."""
    names: set[str] = set()
    for target in targets:
        matches = [s for s in graph.stages if target in _names(s, graph.target(s))]
        if not matches:
            groups = sorted({s.split("@", 1)[0] for s in graph.stages})
            raise CnnscopeError(
                f"unknown target {target!r}: name a stage of dvc.yaml ({', '.join(groups)}, or one item such as "
                f"{next((s for s in graph.stages if '@' in s), graph.stages[0])}); `dvc dag` lists them all"
            )
        names.update(matches)
    return names


def _dvc(root: Path, *args: str) -> str:
    done = subprocess.run(["dvc", *args], cwd=root, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        said = " / ".join(lines[:2]) if lines else f"exit status {done.returncode}"
        raise CnnscopeError(f"`dvc {' '.join(args)}` failed: {said} (run it to see DVC's whole message)")
    return done.stdout


def read_state(root: Path) -> tuple[StageGraph, set[str]]:
    """The stage graph and the stages ``dvc status`` reports as changed, from two DVC processes
    run side by side (each takes about a second to start)."""
    with ThreadPoolExecutor(2) as pool:
        dot = pool.submit(_dvc, root, "dag", "--dot")
        status = pool.submit(_dvc, root, "status", "--json")
        graph, changed = parse_dot(dot.result()), json.loads(status.result() or "{}")
    name = {graph.target(s): s for s in graph.stages}
    return graph, {name[address] for address in changed if address in name}


def outputs_missing(root: Path) -> bool:
    """Whether the project has a ``dvc.yaml`` without a ``dvc.lock``, or an output its lock files
    record is absent (a fresh clone, a new study, a deleted folder): read without DVC, a cheap sign
    that a run has stages to execute. Only a hint for starting the workers early: what runs is still
    what ``dvc status`` says."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the lock files are large; C when there
    for pipeline in pipeline_files(root):
        lock = pipeline.with_suffix(".lock")
        if not lock.exists():
            return True
        for stage in (yaml.load(lock.read_text(), Loader=loader) or {}).get("stages", {}).values():
            if any(not (root / out["path"]).exists() for out in stage.get("outs", [])):
                return True
    return False


def plan(graph: StageGraph, changed: set[str], targets: set[str] | None = None, force: bool = False) -> list[str]:
    """What ``dvc repro [targets]`` would consider running, upstream first: every changed stage and
    every stage downstream of one (DVC checks those again once their upstream has run), within the
    targets and what they depend on. ``force`` takes every stage there."""
    scope = graph.ancestors(targets) if targets else set(graph.stages)
    todo = scope if force else graph.descendants(changed & scope) & scope
    return graph.order(todo)
