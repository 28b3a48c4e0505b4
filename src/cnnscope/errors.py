"""Errors a user can fix, and the way stage scripts run and report them.

Anything raised as :class:`CnnscopeError` (or a missing file) is the user's to fix: stage scripts
print its message — which names the key or file and says how to fix it — and exit non-zero,
instead of a traceback. Ctrl-C ends a stage with one line too: every output is written atomically
(:mod:`cnnscope.io`), so an interrupted stage has written nothing. Everything else is a bug and
keeps its traceback.

A stage's log shows progress and results: :func:`quiet_third_party` drops the known third-party
messages that say nothing about the run, each by its own text, so that any new warning still
shows (a warning from a dependency can be the first sign of a real problem: a changed default, a
numerical issue).
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from cnnscope.handoff import delegate
from cnnscope.runtime import keep_freed_memory

#: Exit status of a stage stopped by Ctrl-C (128 + SIGINT, what shells report).
INTERRUPTED = 130


class CnnscopeError(Exception):
    """A problem with the user's input or configuration; the message says how to fix it."""


def run_stage(main: Callable[[], object]) -> None:
    """Run a stage's ``main``; turn user errors into one line on stderr and exit status 2.

    Also applies the process-wide CPU allocator setting every stage benefits from
    (:func:`cnnscope.runtime.keep_freed_memory`) and drops known third-party noise from its log
    (:func:`quiet_third_party`). A stage that succeeded in a process of its own ends without the
    interpreter's teardown (:func:`_exit_now`). Under ``cnnscope repro`` that process first offers
    the stage to its worker's warm server, which runs it with torch already imported
    (:mod:`cnnscope.handoff`).
    """
    as_script = _started_as_script(main)
    try:
        if as_script and (code := delegate()) is not None:  # Ctrl-C while it connects: caught below
            finish_process(code)
        keep_freed_memory()
        quiet_third_party()
        main()
        if as_script:
            _exit_now()
    except (CnnscopeError, FileNotFoundError) as err:
        print(f"cnnscope: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(
            "cnnscope: interrupted: nothing written, earlier outputs are unchanged; "
            "re-run the stage to continue (training resumes from its last checkpoint)",
            file=sys.stderr,
        )
        sys.exit(INTERRUPTED)


def _started_as_script(main: Callable[[], object]) -> bool:
    """Whether ``main`` is the program this interpreter was started to run (``python <script>``), not
    a stage run inside another program: the tests (``runpy``), a profiler or coverage (``-m``)."""
    argv = list(getattr(sys, "orig_argv", []))
    script = sys.argv[0] if sys.argv else ""
    if script not in argv[1:]:
        return False
    before = argv[1 : argv.index(script, 1)]
    same = Path(script).resolve() == Path(main.__code__.co_filename).resolve()
    return same and "-m" not in before and "-c" not in before


def _exit_now() -> None:
    """End a finished stage's process without the interpreter's teardown.

    Why: unloading torch's libraries at exit takes about half a second and touches about 140 MB, so
    the teardown, not the work, was the peak memory of a small stage (benchmarks/README.md, "Stage
    exit"). Every output is already written and closed (atomically, :mod:`cnnscope.io`); the
    ``atexit`` handlers (MLflow ending a run, temporary folders removed), logging and the standard
    streams are finished first. A non-daemon thread still running gets the ordinary exit, which
    waits for it."""
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        return
    finish_process(0)


def finish_process(code: int, last: Callable[[int], object] | None = None) -> NoReturn:
    """End this process with ``code`` after its ``atexit`` handlers, logging and standard streams,
    without the interpreter's teardown (:func:`_exit_now` says why). ``last`` gets the exit status
    the process will have, once all of that is done and just before the kernel takes the process
    down (a warm copy tells its server: :mod:`cnnscope.runner.warm`)."""
    import atexit
    import os

    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    if last is not None:
        last(code & 0xFF)  # what the kernel keeps of the status
    os._exit(code)


#: Where Lightning logs its info lines (``rank_zero_info``), the "💡 Tip" adverts among them.
LIGHTNING_INFO_LOGGER = "lightning.pytorch.utilities.rank_zero"

#: ``(category, message regex, module regex)`` of expected warnings, none of which asks anything
#: of a user of this project.
KNOWN_WARNINGS: list[tuple[type[Warning], str, str]] = [
    # Lightning's own pytree helper uses the LeafSpec that torch deprecates; nothing to change on our side
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch\."),
    # the train stage writes initial.ckpt into its run folder before Lightning saves there
    (UserWarning, r"Checkpoint directory .* exists and is not empty", r"lightning\.pytorch\."),
    # the training loss is logged per epoch (on_epoch only), so step logging never applies
    (UserWarning, r"The number of training batches \(\d+\) is smaller than the logging interval", r"lightning\."),
]


class _NoCloudTips(logging.Filter):
    """Drops Lightning's adverts for its cloud products (litlogger, litmodels), printed by every Trainer."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("💡 Tip")


def quiet_third_party() -> None:
    """Install the filters for this process; calling it again changes nothing."""
    for category, message, module in KNOWN_WARNINGS:
        # filterwarnings replaces an identical earlier entry rather than adding a second one
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    lightning = logging.getLogger(LIGHTNING_INFO_LOGGER)
    if not any(isinstance(f, _NoCloudTips) for f in lightning.filters):
        lightning.addFilter(_NoCloudTips())
