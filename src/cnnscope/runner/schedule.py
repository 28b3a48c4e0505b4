"""The scheduling loop: submit each stage once its upstream stages have succeeded, follow them,
stop a failed stage's descendants only, and cancel everything cleanly on Ctrl-C."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cnnscope.runner.dag import StageGraph
from cnnscope.runner.task import GRACE_AFTER_CANCEL, StageOutcome, run_stage

#: Seconds between two looks at the running stages (progress display, new workers).
TICK = 0.5


@dataclass
class RunReport:
    """Every stage of the plan, by how it ended."""

    outcomes: dict[str, StageOutcome] = field(default_factory=dict)
    #: stage → the failed stage upstream of it
    blocked: dict[str, str] = field(default_factory=dict)
    #: stage → why its worker could not report (a worker killed mid-stage)
    lost: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [s for s, o in self.outcomes.items() if not o.ok] + list(self.lost)


@dataclass
class Listener:
    """What the display is told; every callback is optional."""

    started: Callable[[str, float], None] = lambda stage, t: None
    finished: Callable[[StageOutcome], None] = lambda outcome: None
    blocked: Callable[[str, str], None] = lambda stage, cause: None
    lost: Callable[[str, str], None] = lambda stage, why: None


def chains(graph: StageGraph, todo: list[str], cost: Mapping[str, float] | None = None) -> dict[str, float]:
    """Per stage, the longest chain of work (``cost`` seconds, 1 per stage by default) from the
    stage to the end of the plan ``todo`` (upstream first); the largest is the critical path."""
    planned, children = set(todo), graph.downstream()
    chain: dict[str, float] = {}
    for stage in reversed(todo):
        after = [chain[c] for c in children.get(stage, ()) if c in planned]
        chain[stage] = (cost[stage] if cost else 1.0) + max(after, default=0.0)
    return chain


def priorities(graph: StageGraph, todo: list[str], cost: Mapping[str, float] | None = None) -> dict[str, int]:
    """A rank per stage, higher first: the longest chain of work from the stage to the end of the
    plan (:func:`chains`), so the critical path starts early; ties go to the stage more planned
    stages wait on. ``todo`` is upstream first."""
    planned, chain = set(todo), chains(graph, todo, cost)
    waiting = {s: len(graph.descendants([s]) & planned) for s in todo}
    order = sorted(todo, key=lambda s: (-chain[s], -waiting[s]))  # stable: full ties keep dvc.yaml's order
    return {stage: len(order) - i for i, stage in enumerate(order)}


def execute(
    client: Any,
    graph: StageGraph,
    todo: list[str],
    root: str,
    log_dir: str,
    listener: Listener | None = None,
    env: dict[str, str] | None = None,
    resources: Callable[[str], dict[str, float] | None] = lambda stage: None,
    force: bool = False,
    cost: Mapping[str, float] | None = None,
) -> RunReport:
    """Run the stages ``todo`` (upstream first) on ``client``'s workers; ``cost``: each stage's
    expected seconds (:mod:`.history`), which decides the order among ready stages."""
    from distributed import Event, wait

    listener = listener or Listener()
    report, planned = RunReport(), set(todo)
    upstream = {s: graph.upstream.get(s, set()) & planned for s in todo}
    priority = priorities(graph, todo, cost)
    waiting, succeeded = list(todo), set[str]()
    running: dict[Any, str] = {}
    cancel = Event(f"cnnscope-cancel-{uuid.uuid4().hex}", client=client)
    try:
        while waiting or running:
            for stage in [s for s in waiting if upstream[s] & (set(report.failed) | set(report.blocked))]:
                cause = next(iter(sorted(upstream[stage] & (set(report.failed) | set(report.blocked)))))
                report.blocked[stage] = report.blocked.get(cause, cause)
                waiting.remove(stage)
                listener.blocked(stage, report.blocked[stage])
            capacity = max(1, sum(client.nthreads().values()))
            ready = sorted((s for s in waiting if upstream[s] <= succeeded), key=lambda s: -priority[s])
            for stage in ready[: max(0, capacity - len(running))]:
                log = f"{log_dir}/{stage}.log"
                future = client.submit(
                    run_stage, stage, root, log, cancel.name, env, force, graph.target(stage),
                    key=f"stage-{stage}-{uuid.uuid4().hex[:8]}", pure=False,
                    priority=priority[stage], resources=resources(stage),
                )  # fmt: skip
                running[future] = stage
                waiting.remove(stage)
                listener.started(stage, time.monotonic())
            if not running:
                continue
            try:
                done, _ = wait(list(running), timeout=TICK, return_when="FIRST_COMPLETED")
            except TimeoutError:  # nothing finished within the tick: look again (new workers, display)
                continue
            for future in done:
                stage = running.pop(future)
                if future.status == "error":
                    error = future.exception()
                    killed = type(error).__name__ == "KilledWorker"
                    why = "the worker process died (killed, or out of memory)" if killed else f"{error!r}"
                    report.lost[stage] = why
                    listener.lost(stage, why)
                    continue
                outcome: StageOutcome = future.result()
                report.outcomes[stage] = outcome
                if outcome.ok:
                    succeeded.add(stage)
                listener.finished(outcome)
    except KeyboardInterrupt:
        cancel.set()
        with contextlib.suppress(TimeoutError):
            wait(list(running), timeout=GRACE_AFTER_CANCEL)
        raise
    return report
