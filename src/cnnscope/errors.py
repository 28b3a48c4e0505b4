"""Errors a user can fix, and the way stage scripts report them.

Anything raised as :class:`CnnscopeError` (or a missing file) is the user's to fix: stage scripts
print its message — which names the key or file and says how to fix it — and exit non-zero,
instead of a traceback. Ctrl-C ends a stage with one line too: every output is written atomically
(:mod:`cnnscope.io`), so an interrupted stage has written nothing. Everything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from cnnscope.quiet import quiet_third_party
from cnnscope.runtime import keep_freed_memory

#: Exit status of a stage stopped by Ctrl-C (128 + SIGINT, what shells report).
INTERRUPTED = 130


class CnnscopeError(Exception):
    """A problem with the user's input or configuration; the message says how to fix it."""


def run_stage(main: Callable[[], object]) -> None:
    """Run a stage's ``main``; turn user errors into one line on stderr and exit status 2.

    Also applies the process-wide CPU allocator setting every stage benefits from
    (:func:`cnnscope.runtime.keep_freed_memory`) and drops known third-party noise from its log
    (:func:`cnnscope.quiet.quiet_third_party`).
    """
    keep_freed_memory()
    quiet_third_party()
    try:
        main()
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
