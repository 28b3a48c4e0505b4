"""The stage graph of ``dvc.yaml`` and the stages a run must execute, read through DVC's CLI."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cnnscope.errors import CnnscopeError


@dataclass
class StageGraph:
    """Stages in ``dvc dag`` order (upstream first) with their direct upstream stages."""

    stages: list[str]
    upstream: dict[str, set[str]] = field(default_factory=dict)

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


def parse_dot(dot: str) -> StageGraph:
    """The graph of ``dvc dag --dot``'s output: ``"a";`` declares a stage, ``"a" -> "b";`` says b needs a."""
    stages: list[str] = []
    upstream: dict[str, set[str]] = {}
    for line in dot.splitlines():
        line = line.strip().rstrip(";")
        if "->" in line:
            parent, child = (part.strip().strip('"') for part in line.split("->"))
            upstream.setdefault(child, set()).add(parent)
        elif line.startswith('"'):
            name = line.strip('"')
            stages.append(name)
            upstream.setdefault(name, set())
    return StageGraph(stages, upstream)


def resolve_targets(graph: StageGraph, targets: list[str]) -> set[str]:
    """Stage names for ``targets``: a stage (``train@benchmark-0``) or a matrix group (``train``)."""
    names: set[str] = set()
    for target in targets:
        matches = [s for s in graph.stages if s == target or s.split("@", 1)[0] == target]
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
    return graph, {name for name in changed if name in graph.upstream}


def plan(graph: StageGraph, changed: set[str], targets: set[str] | None = None, force: bool = False) -> list[str]:
    """What ``dvc repro [targets]`` would consider running, upstream first: every changed stage and
    every stage downstream of one (DVC checks those again once their upstream has run), within the
    targets and what they depend on. ``force`` takes every stage there."""
    scope = graph.ancestors(targets) if targets else set(graph.stages)
    todo = scope if force else graph.descendants(changed & scope) & scope
    return graph.order(todo)
