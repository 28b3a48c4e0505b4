"""``python -m cnnscope.runner.shim -- <command>``: run a stage's command tied to its worker.

Why a process of its own: a Dask worker killed with SIGKILL runs no code, so nothing in it could stop
the stage it started, which would then run on unattended (and race a re-run for DVC's locks). The
shim asks the kernel to send it SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), starts the
command in a process group of its own, and turns SIGTERM or SIGINT into one SIGINT for that whole
group: the stage stops the way Ctrl-C stops it (nothing written, its MLflow run KILLED), DVC releases
its locks, and the shim exits with the command's status.

Under ``cnnscope repro`` (not ``--cold``) the shim hands its ``dvc`` command to the worker's warm server
(:mod:`.warm`), which has imported DVC already (≈ 0.2 s of every stage otherwise): the command runs in a
forked copy that leads a process group of its own, with the shim's folder, environment and output, and
the signals above go to that group instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType

from cnnscope import handoff

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
    handoff.die_with_parent(signal.SIGTERM)
    if os.getppid() == 1:  # the worker died before prctl took effect
        return 130
    groups: list[int] = []  # the command's process group

    def signal_group(signum: int) -> None:
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signum)

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
    copy = _warm_dvc(command)
    if copy is not None:
        groups.append(copy.group)
        code = copy.wait()
    else:
        child = subprocess.Popen(command, start_new_session=True, preexec_fn=keep_niceness)
        groups.append(child.pid)
        code = child.wait()
    os._exit(code)  # without waiting for a pending kill timer


def _warm_dvc(command: list[str]) -> handoff.Copy | None:
    """``dvc …`` run by the worker's warm server (:mod:`.warm`), which has imported DVC already, when
    there is one and ``dvc`` is this Python's own (the one the server would run); else ``None``."""
    if command[:1] != ["dvc"] or not os.environ.get(handoff.ENV):
        return None
    found = shutil.which("dvc")
    if found is None or Path(found).resolve() != (Path(sys.executable).parent / "dvc").resolve():
        return None
    return handoff.start(command, module="dvc", pass_on=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
