"""A stage process handing its work to its runner worker's warm server (:mod:`cnnscope.runner.warm`).

DVC starts ``python pipelines/<stage>.py …`` for every stage; under ``cnnscope repro`` that process
finds the server's socket in :data:`ENV` and, instead of importing torch and the rest itself, asks the
server — which has imported them already — to run the same script with the same arguments, folder,
environment and ``sys.path`` in a forked copy that writes to this process's own stdout and stderr.
This process waits, passes Ctrl-C on, and exits with the copy's status, so to DVC it is the stage.
Without the variable, or when the server cannot take the stage, the stage runs here as always.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys

#: The variable that tells a stage process where its worker's warm server listens.
ENV = "CNNSCOPE_WARM_SOCKET"
_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int) -> None:
    """Have the kernel send this process ``signum`` when its parent dies (Linux; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)


def delegate() -> int | None:
    """Run this process's stage in the warm server named by :data:`ENV` and return its exit status;
    ``None`` when there is no server to use (no variable, nothing listening, or it refused), and the
    caller runs the stage itself."""
    path = os.environ.get(ENV)
    if not path:
        return None
    request = {
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "env": {k: v for k, v in os.environ.items() if k != ENV},  # the copy must not hand off again
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
    group = int(first[1])  # the copy leads a process group of its own

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGINT)  # the way Ctrl-C stops a stage: nothing written

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    try:
        words = reply.readline().split()  # blocks until the copy ends (a forwarded signal resumes the read)
    except OSError:
        words = []
    if words[:1] != ["exit"]:  # the server ended mid-stage, and the copy with it
        print("cnnscope: error: the runner's warm server ended while it ran this stage; run it again", file=sys.stderr)
        return 1
    return int(words[1])
