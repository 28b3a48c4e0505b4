"""A stage process handing its work to its runner worker's warm server (:mod:`cnnscope.runner.warm`).

DVC starts ``python pipelines/<stage>.py …`` for every stage; under ``cnnscope repro`` that process
finds the server's socket in :data:`ENV` and, instead of importing torch and the rest itself, asks the
server — which has imported them already — to run the same script with the same arguments, folder,
environment and ``sys.path`` in a forked copy that writes to this process's own stdout and stderr.
This process waits, passes Ctrl-C on, and exits with the copy's status, so to DVC it is the stage.
Without the variable, or when the server cannot take the stage, the stage runs here as always.
The runner's shim hands over the ``dvc repro`` that runs each stage the same way (:func:`start`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from typing import TextIO

#: The variable that tells a stage process where its worker's warm server listens.
ENV = "CNNSCOPE_WARM_SOCKET"
_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int) -> None:
    """Have the kernel send this process ``signum`` when its parent dies (Linux; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)


class Copy:
    """A command running in the warm server's forked copy: its process group, and its exit status."""

    def __init__(self, conn: socket.socket, reply: TextIO, group: int) -> None:
        self.conn, self.reply, self.group = conn, reply, group

    def wait(self) -> int:
        """Block until the copy ends; its exit status (1, with a message, if the server ended first)."""
        try:
            words = self.reply.readline().split()  # a signal handler run meanwhile resumes the read
        except OSError:
            words = []
        self.conn.close()
        if words[:1] != ["exit"]:  # the server ended mid-stage, and the copy with it
            ended = "cnnscope: error: the runner's warm server ended while it ran this stage; run it again"
            print(ended, file=sys.stderr)
            return 1
        return int(words[1])


def start(argv: list[str], module: str | None = None, pass_on: bool = False) -> Copy | None:
    """Ask the warm server named by :data:`ENV` to run ``argv`` in a copy with this process's folder,
    environment, ``sys.path``, stdout and stderr: the script ``argv[0]``, or ``python -m module`` with
    ``argv[1:]``. ``pass_on``: the copy's environment keeps :data:`ENV`, so the processes it starts
    hand off in turn (DVC's stage commands); a stage script's copy must not hand off again.
    ``None`` when there is no server to use (no variable, nothing listening, or it refused)."""
    path = os.environ.get(ENV)
    if not path:
        return None
    request = {
        "argv": argv,
        "module": module,
        "cwd": os.getcwd(),
        "env": {k: v for k, v in os.environ.items() if pass_on or k != ENV},
        "path": sys.path,
        "executable": sys.executable,
    }
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
        socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [1, 2])
        reply = conn.makefile("r")
        first = reply.readline().split()
    except OSError:
        return None
    if first[:1] != ["pid"]:  # refused (another Python, CUDA in the server): run here
        conn.close()
        return None
    return Copy(conn, reply, int(first[1]))  # the copy leads a process group of its own


def delegate() -> int | None:
    """Run this process's stage (its ``sys.argv``) in the warm server and return its exit status,
    passing Ctrl-C and SIGTERM on to it; ``None`` when there is no server to use, and the caller runs
    the stage itself."""
    copy = start(sys.argv)
    if copy is None:
        return None

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(copy.group, signal.SIGINT)  # the way Ctrl-C stops a stage: nothing written

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    return copy.wait()
