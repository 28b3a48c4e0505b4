"""Warm stage processes: a worker's stages start from a process that has already imported torch.

Why: every stage is a Python process of its own (DVC runs its command), and before it does any work
it imports torch, and Lightning, MLflow, pandas where it uses them: 1–4.5 s per stage, more than the
work of most per-network stages of a small study (benchmarks/README.md, "The work floor"). So each
runner worker starts one *warm server* (``python -m cnnscope.runner.warm SOCKET``) that imports those
packages once and then forks a copy of itself for each stage. The stage's command is unchanged: DVC
still runs ``python pipelines/<stage>.py …`` and records it exactly as before; that process (the
*client*, :mod:`cnnscope.handoff`, called first thing by :func:`cnnscope.errors.run_stage`) finds the
server in ``CNNSCOPE_WARM_SOCKET``, hands it its arguments, folder, environment, ``sys.path`` and its stdout and stderr
(the file descriptors themselves), and waits for the copy to finish, exiting with its status. A
stage run without the variable (plain ``dvc repro``, a user's shell) never looks for a server.
The ``dvc repro`` around each stage comes the same way, from the runner's shim
(:mod:`cnnscope.runner.shim`): it runs in a copy too, which keeps the variable for the stage it starts.

The copy runs the same script with the same code: the server imports no module of this project
(the script does, in the copy, from the client's ``sys.path``), so the stage's outputs are the same
bytes either way; the tests run studies both ways and compare. What the server refuses (another
Python, CUDA already initialised in it — a forked process cannot use CUDA then), the client runs
itself, as without a server.

Faults behave as in a process of its own: Ctrl-C (SIGINT or SIGTERM to the client) reaches the
copy as SIGINT; a client that dies (the shim's group killed) makes the server kill the copy; a copy
dies with its server (``PR_SET_PDEATHSIG``) and the server with its worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from typing import Any, NoReturn

from cnnscope.errors import finish_process
from cnnscope.handoff import die_with_parent
from cnnscope.runner.shim import GRACE

#: What the server imports, in this order, between taking stages: the heavy packages some stage
#: imports at start. DVC first: every stage begins with the `dvc repro` the shim hands over (``dvc.cli``
#: imports little itself). Neither matplotlib's pyplot (it picks a display backend on import) nor
#: anything of cnnscope.
PRELOAD = (
    "dvc.cli",
    "dvc.commands.repro",
    "dvc.repo.reproduce",
    "dvc.repo.index",
    "dvc.stage.cache",
    "dvc.dvcfile",
    "dvc.output",
    "omegaconf",  # every stage's configuration (the stage process hands off before importing it)
    "torch",
    "torchvision",
    "lightning.pytorch",
    "mlflow.store.tracking.sqlalchemy_store",  # mlflow itself, and the SQL store behind its client
    "pandas",
    "scipy.optimize",
    "scipy.stats",
    "matplotlib",
)
#: Seconds between two tries of DVC's repository lock in a copy running ``dvc --wait-for-lock``.
LOCK_POLL = 0.02
#: Seconds between the server's checks for copies gone without reporting their status (killed, or
#: crashed): such a copy's end reaches its client up to this much later. A copy that finishes writes
#: its status to the server, which passes it on at once (:meth:`_Server.copy_done`).
_TICK = 0.01


def _refusal(request: dict[str, Any]) -> str | None:
    if request.get("executable") != sys.executable:
        return f"another Python ({request.get('executable')}, not {sys.executable})"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "CUDA is initialised in the server; a forked process could not use it"
    return None


def _run_copy(request: dict[str, Any], fds: list[int], status_fd: int) -> NoReturn:
    """In the forked copy: become the client's stage process, run its script, exit with its status,
    which it writes to ``status_fd`` first (the server passes it on without waiting for the exit)."""
    import runpy
    import threading
    import traceback

    code = 0
    try:
        die_with_parent(signal.SIGKILL)
        os.setpgid(0, 0)  # the client signals the stage and whatever it started as one group
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        for target, fd in zip((1, 2), fds, strict=True):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[:] = request["path"]
        sys.argv[:] = request["argv"]
        for name in [m for m in sys.modules if m == "cnnscope" or m.startswith("cnnscope.")]:
            del sys.modules[name]  # the stage imports this project from the client's sys.path, afresh
        if request.get("module"):  # `python -m module argv[1:]` (the shim's `dvc repro`)
            if request["module"] == "dvc":
                poll_dvc_lock_often(sys.argv)
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(sys.argv[0], run_name="__main__")
        for thread in threading.enumerate():  # what the interpreter's exit would wait for
            if thread is not threading.main_thread() and not thread.daemon:
                thread.join()
    except SystemExit as done:
        if isinstance(done.code, int) or done.code is None:
            code = done.code or 0
        else:
            print(done.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # a bug: its traceback, as Python prints it
        traceback.print_exc()
        code = 1
    finish_process(code, lambda status: os.write(status_fd, f"{status}\n".encode()))


def poll_dvc_lock_often(argv: list[str]) -> None:
    """Make a ``dvc --wait-for-lock …`` run in this process retry DVC's repository lock every
    :data:`LOCK_POLL` seconds instead of every 0.5 s.

    Why: each stage's ``dvc repro`` takes that lock twice (to check the stage, then to record it),
    so two workers' stages queue for it several times a minute, and DVC retries a taken lock after
    ``DEFAULT_TIMEOUT / 6`` seconds (``dvc/lock.py``): up to half a second of a worker doing nothing
    per wait (benchmarks/README.md, "Per-stage fixed costs"). Only that module constant is set,
    and only for a run that waits for the lock anyway (without ``--wait-for-lock`` it would also
    shorten DVC's time before giving up); a DVC without the constant waits as it always did."""
    import importlib

    if "--wait-for-lock" not in argv:
        return
    lock = importlib.import_module("dvc.lock")
    if isinstance(getattr(lock, "DEFAULT_TIMEOUT", None), int | float):
        setattr(lock, "DEFAULT_TIMEOUT", 6 * LOCK_POLL)  # noqa: B010


class _Server:
    """The accept loop: one forked copy per client, each client told its copy's exit status."""

    def __init__(self, listener: socket.socket, path: str) -> None:
        import selectors

        self.listener, self.path = listener, path
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ)
        self.copies: dict[int, socket.socket | None] = {}  # pid → its client's connection, None once told
        self.done: dict[int, int] = {}  # pid → the pipe its copy writes its exit status to
        self.leaving: float | None = None  # when SIGTERM came

    def run(self) -> NoReturn:
        signal.signal(signal.SIGTERM, self.leave)
        pending = list(PRELOAD)
        while True:
            for key, _ in self.selector.select(0 if pending else _TICK):
                if key.fileobj is self.listener:
                    self.accept()
                elif key.data is not None:  # a copy's status pipe (the data is its pid)
                    self.copy_done(key.data)
                else:  # a client's connection turns readable only when the client is gone
                    self.client_gone(key.fileobj)  # type: ignore[arg-type]
            self.reap()
            if pending and self.leaving is None:  # one import at a time: a stage that comes meanwhile
                self.preload(pending.pop(0), last=not pending)  # starts with what is there
            if self.leaving is not None and (not self.copies or time.monotonic() > self.leaving + GRACE):
                os._exit(0)  # a copy still running dies with the server (PR_SET_PDEATHSIG)

    def preload(self, name: str, last: bool) -> None:
        """:func:`_preload`, reaping the copies that end meanwhile. An import (torch's, Lightning's)
        holds the loop for a second or more, and a worker's first stages end while its server still
        imports: without this their clients, and the stages after them, waited for the import."""
        previous = signal.signal(signal.SIGCHLD, lambda signum, frame: self.reap())
        try:
            _preload(name, last)
        finally:
            signal.signal(signal.SIGCHLD, previous)

    def leave(self, signum: int, frame: object) -> None:
        """SIGTERM (the worker ended or stops the server): take no new stage, and end once the running
        copies have (their clients pass on the interrupt that stops them cleanly), or after
        :data:`~cnnscope.runner.shim.GRACE`, the time the shim gives a stage."""
        if self.leaving is None:
            self.leaving = time.monotonic()
            self.selector.unregister(self.listener)
            self.listener.close()
            with contextlib.suppress(OSError):
                os.unlink(self.path)
                os.rmdir(os.path.dirname(self.path))

    def accept(self) -> None:
        import selectors

        conn, _ = self.listener.accept()
        fds: list[int] = []
        try:
            message, fds, _, _ = socket.recv_fds(conn, 1 << 16, 2)
            while message and not message.endswith(b"\n"):  # a stream: the request may come in parts
                part = conn.recv(1 << 16)
                if not part:
                    break
                message += part
            request = json.loads(message)
        except (OSError, ValueError):
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        refused = _refusal(request) if len(fds) == 2 else "no stdout and stderr passed"
        if refused:
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                conn.sendall(f"refused {refused}\n".encode())
            conn.close()
            return
        status_read, status_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            for other in (self.listener, conn, *filter(None, self.copies.values())):
                other.close()
            for fd in (status_read, *self.done.values()):
                os.close(fd)
            _run_copy(request, fds, status_write)
        with contextlib.suppress(OSError):  # as the copy does itself: the group exists either way
            os.setpgid(pid, pid)
        for fd in (*fds, status_write):
            os.close(fd)
        self.copies[pid], self.done[pid] = conn, status_read
        with contextlib.suppress(OSError):
            conn.sendall(f"pid {pid}\n".encode())
        self.selector.register(conn, selectors.EVENT_READ)
        self.selector.register(status_read, selectors.EVENT_READ, data=pid)

    def copy_done(self, pid: int) -> None:
        """The copy ``pid`` wrote its exit status, its last act before the kernel tears the process
        down (tens of ms for a copy of a server holding torch): tell its client now. Nothing came
        (it was killed, or crashed): :meth:`reap` tells the client once the process is gone."""
        fd = self.done.pop(pid)
        self.selector.unregister(fd)
        try:
            said = os.read(fd, 64).split()
        except OSError:
            said = []
        os.close(fd)
        conn = self.copies.get(pid)
        if said and conn is not None:
            self.copies[pid] = None  # told: neither the client's leaving nor the reap concerns it now
            self._tell(conn, int(said[0]))

    def client_gone(self, conn: socket.socket) -> None:
        """Kill the copy whose client died (its shim's process group was killed)."""
        self.selector.unregister(conn)
        for pid, held in self.copies.items():
            if held is conn:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)

    def reap(self) -> None:
        """Collect each finished copy; tell its client its exit status unless the copy did (128 + N
        for a copy killed by signal N)."""
        for pid in list(self.copies):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == 0:
                continue
            conn = self.copies.pop(pid)
            if pid in self.done:  # it ended without a word
                fd = self.done.pop(pid)
                self.selector.unregister(fd)
                os.close(fd)
            if conn is not None:
                code = os.waitstatus_to_exitcode(status)
                self._tell(conn, 128 - code if code < 0 else code)

    def _tell(self, conn: socket.socket, code: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(conn)
        with contextlib.suppress(OSError):
            conn.sendall(f"exit {code}\n".encode())
        conn.close()


def serve(path: str) -> NoReturn:
    """Listen on ``path`` and run a forked copy of this process for each stage that connects (side
    by side: a worker with several threads runs several stages); runs until its worker ends."""
    die_with_parent(signal.SIGTERM)
    if os.getppid() == 1:  # the worker died before prctl took effect
        sys.exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the copies through their clients
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    _Server(listener, path).run()


def _preload(name: str, last: bool) -> None:
    """Import ``name`` (one of :data:`PRELOAD`); after the last, freeze the collector's view of what
    the imports made: a copy's collections would otherwise walk, and so write to and un-share, every
    object of them. A copy forked before that imports what it lacks itself."""
    import gc
    import importlib

    with contextlib.suppress(ImportError):
        importlib.import_module(name)
    if last:
        gc.freeze()
        print("warm", flush=True)  # for whoever reads the server's output (the tests); the runner does not


if __name__ == "__main__":
    serve(sys.argv[1])
