"""``python -m cnnscope.runner.shim -- <command>``: run a stage's command tied to its worker.

Why a process of its own: a Dask worker killed with SIGKILL runs no code, so nothing in it could stop
the stage it started, which would then run on unattended (and race a re-run for DVC's locks). The
shim asks the kernel to send it SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), starts the
command in a process group of its own, and turns SIGTERM or SIGINT into one SIGINT for that whole
group: the stage stops the way Ctrl-C stops it (nothing written, its MLflow run KILLED), DVC releases
its locks, and the shim exits with the command's status.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from types import FrameType

from cnnscope.handoff import die_with_parent

#: Seconds a stage gets to stop after SIGINT before its process group is killed.
GRACE = 30.0


def keep_niceness() -> None:
    """Give the new session the shim's niceness. On Linux each session is a scheduler autogroup,
    weighed against the others by the group's own nice value, not by its processes': a stage in a
    session of its own would otherwise compete at full weight with the user's shell, and ``nice
    cnnscope repro`` would lower nothing. Runs in the child between ``setsid`` and ``exec`` (a
    ``preexec_fn``), so the stage never runs un-niced; best effort: without autogroups it stays as
    it is."""
    niceness = os.nice(0)
    if niceness > 0:
        with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as fh:
            fh.write(str(niceness))


def main(argv: list[str]) -> int:
    command = argv[1:] if argv[:1] == ["--"] else argv
    die_with_parent(signal.SIGTERM)
    if os.getppid() == 1:  # the worker died before prctl took effect
        return 130
    children: list[subprocess.Popen[bytes]] = []

    def signal_group(signum: int) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signum)

    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        # Once only: a second SIGINT would interrupt DVC's own cleanup, and DVC rewrites its
        # `.dvc/tmp/rwlock` in place, so one landing mid-write leaves that file empty and every
        # later stage fails on it. The shim can be told twice (SIGTERM when its worker dies, and
        # whatever signals the worker's process group). No waiting in here: the main thread is
        # inside child.wait(), which a nested wait would block.
        if stopping.is_set():
            return
        stopping.set()
        signal_group(signal.SIGINT)
        threading.Timer(GRACE, signal_group, [signal.SIGKILL]).start()

    # Handlers before the child starts: it inherits a handled signal as the default (so Ctrl-C
    # reaches the stage), where it would inherit an ignored one (workers ignore SIGINT) as ignored.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children.append(subprocess.Popen(command, start_new_session=True, preexec_fn=keep_niceness))
    code = children[0].wait()
    os._exit(code)  # without waiting for a pending kill timer


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
