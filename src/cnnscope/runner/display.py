"""Progress of a run: a live view (rich) on a terminal, one line per event otherwise, and the
summary table of every stage's wall time at the end."""

from __future__ import annotations

import csv
import io
import os
import sys
import time
from pathlib import Path
from statistics import mean

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cnnscope.runner.schedule import Listener, RunReport
from cnnscope.runner.task import StageOutcome


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}"


def _group(stage: str) -> str:
    return stage.split("@", 1)[0]


class Progress:
    """Stages done / running / waiting, each running stage's elapsed time and an ETA from the wall
    times of finished stages of the same kind."""

    def __init__(self, planned: list[str], workers: int, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live_view = self.console.is_terminal and not os.environ.get("CI") and not os.environ.get("CNNSCOPE_QUIET")
        self.planned, self.workers = planned, workers
        self.begin = time.monotonic()
        self.running: dict[str, float] = {}
        self.finished: dict[str, StageOutcome] = {}
        self.skipped: dict[str, str] = {}
        self._live = (
            Live(console=self.console, refresh_per_second=2, get_renderable=self.render) if self.live_view else None
        )

    def __enter__(self) -> Progress:
        if self._live:
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live:
            self._live.stop()

    def listener(self) -> Listener:
        return Listener(started=self.started, finished=self.done, blocked=self.blocked, lost=self.lost)

    def started(self, stage: str, at: float) -> None:
        self.running[stage] = at

    def done(self, outcome: StageOutcome) -> None:
        self.running.pop(outcome.stage, None)
        self.finished[outcome.stage] = outcome
        mark = "✓" if outcome.ok else "✗"
        self._line(
            f"{mark} {outcome.stage}  {outcome.seconds:.1f} s" + ("" if outcome.ok else f"  (log: {outcome.log})")
        )

    def blocked(self, stage: str, cause: str) -> None:
        self.skipped[stage] = f"not run: {cause} failed"
        self._line(f"- {stage}  not run: upstream {cause} failed")

    def lost(self, stage: str, why: str) -> None:
        self.running.pop(stage, None)
        self.skipped[stage] = f"worker lost: {why}"
        self._line(f"✗ {stage}  its worker died mid-stage ({why})")

    def _line(self, text: str) -> None:
        if self._live:
            self._live.console.print(text, highlight=False)
        else:
            done = len(self.finished) + len(self.skipped)
            print(f"[{done}/{len(self.planned)}] {text}", file=sys.stderr, flush=True)

    def eta(self) -> float | None:
        """Seconds left: each unfinished stage costs the mean wall time of its kind (or of all)
        so far, spread over the workers; None before any stage has finished."""
        times = [o.seconds for o in self.finished.values()]
        if not times:
            return None
        by_group: dict[str, list[float]] = {}
        for o in self.finished.values():
            by_group.setdefault(_group(o.stage), []).append(o.seconds)
        now, left = time.monotonic(), 0.0
        for stage in self.planned:
            if stage in self.finished or stage in self.skipped:
                continue
            estimate = mean(by_group.get(_group(stage), times))
            left += max(0.0, estimate - (now - self.running[stage])) if stage in self.running else estimate
        return left / max(1, self.workers)

    def render(self) -> Group:
        now = time.monotonic()
        waiting = len(self.planned) - len(self.finished) - len(self.skipped) - len(self.running)
        eta = self.eta()
        head = Text(
            f"stages: {len(self.finished)} done · {len(self.running)} running · {waiting} waiting"
            + (f" · {len(self.skipped)} not run" if self.skipped else "")
            + f" · elapsed {_clock(now - self.begin)} · ETA {_clock(eta) if eta is not None else '—'}"
        )
        table = Table(box=None, show_header=False, padding=(0, 2))
        for stage, since in sorted(self.running.items(), key=lambda kv: kv[1]):
            table.add_row(Text("▶ " + stage), Text(_clock(now - since), style="dim"))
        return Group(head, table)


def summary(planned: list[str], report: RunReport, wall: float, root: Path, log_dir: str) -> str:
    """The closing table (stage, status, wall time, log), also written to ``<log_dir>/summary.csv``
    (with the worker that ran each stage)."""
    rows = []
    for stage in planned:
        if stage in report.outcomes:
            o = report.outcomes[stage]
            status = "ok" if o.ok else f"failed (exit {o.returncode})"
            rows.append((stage, status, f"{o.seconds:.1f}", o.worker, o.log))
        elif stage in report.lost:
            rows.append((stage, "worker lost", "", "", f"{log_dir}/{stage}.log"))
        else:
            rows.append((stage, f"not run ({report.blocked.get(stage, 'cancelled')} failed)", "", "", ""))
    (root / log_dir).mkdir(parents=True, exist_ok=True)
    with (root / log_dir / "summary.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["stage", "status", "seconds", "worker", "log"])
        writer.writerows(rows)
    table = Table(title=f"cnnscope repro: {len(planned)} stages in {wall:.1f} s", title_justify="left")
    for column in ("stage", "status", "seconds", "log"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for stage, status, seconds, _, log in rows:
        table.add_row(stage, status, seconds, log)
    buffer = io.StringIO()
    Console(file=buffer, width=140, color_system=None).print(table)
    return buffer.getvalue()
