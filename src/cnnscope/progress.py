"""Progress of long stages (OIP ascent, extraction, comparison, exemplar pass) on the terminal.

Training shows Lightning's progress bar; the other long stages used to run for minutes without a
word. :func:`track` gives them the same: a rich bar with steps done, an optional live number (the
batch's mean objective of an ascent) and the time left. It draws only on an interactive terminal:
under CI, ``dvc repro`` piped to a log, or pytest, it stays silent, so logs hold results, not
thousands of redrawn bars.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

#: Environment variables that mean "no interactive terminal", whatever ``isatty`` says.
QUIET_ENV = ("CI", "CNNSCOPE_QUIET")


class Advance(Protocol):
    """Report ``steps`` more steps done, optionally with the current value of the live number."""

    def __call__(self, steps: int = 1, value: float | None = None) -> None: ...


def interactive() -> bool:
    """Whether progress should be drawn: stderr is a terminal and no CI/quiet variable is set."""
    if any(os.environ.get(name) for name in QUIET_ENV):
        return False
    return sys.stderr.isatty()


@contextlib.contextmanager
def track(description: str, total: int, value_label: str | None = None) -> Iterator[Advance]:
    """A progress bar for ``total`` steps; yields the function that advances it.

    ``value_label`` names the live number shown beside the bar (e.g. ``mean objective``). When
    :func:`interactive` is False nothing is drawn and advancing costs a function call.
    """
    if not interactive():

        def silent(steps: int = 1, value: float | None = None) -> None:
            return None

        yield silent
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if value_label is not None:
        columns.append(TextColumn(f"{value_label} {{task.fields[value]}}"))
    columns.append(TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total, value="–")

        def advance(steps: int = 1, value: float | None = None) -> None:
            if value is None:
                bar.advance(task, steps)
            else:
                bar.update(task, advance=steps, value=f"{value:.4g}")

        yield advance
