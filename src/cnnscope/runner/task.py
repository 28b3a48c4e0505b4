"""What a worker runs for one stage: DVC runs and records it, its output goes to one log file."""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnscope import handoff

#: How often a running stage checks whether the run was cancelled (seconds).
POLL = 0.5
#: Seconds the scheduler waits for cancelled stages to stop (the shim's grace, and a margin).
GRACE_AFTER_CANCEL = 40.0
#: A key of ``run_stage``'s ``env`` that asks for a warm server (:mod:`.warm`) instead of a fresh
#: Python per stage; not passed on to the stage.
WARM = "CNNSCOPE_WARM"
#: This worker process's warm servers, by the environment their stages run with.
_SERVERS: dict[str, str] = {}
_STARTING = threading.Lock()


@dataclass(frozen=True)
class StageOutcome:
    """One stage's result as the scheduler sees it."""

    stage: str
    returncode: int
    seconds: float
    log: str
    worker: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def warm_server_for(env: dict[str, str], gpus: float) -> str | None:
    """The socket of the warm server for stages run with ``env`` on a worker with ``gpus``; ``None``
    on a GPU worker: a process forked after CUDA started in its parent cannot use CUDA, and whether
    importing the packages starts it cannot be checked here (no GPU)."""
    return None if gpus else warm_server({k: v for k, v in env.items() if k != WARM})


def start_warm_server(env: dict[str, str], dask_worker: Any) -> None:
    """``Client.run(start_warm_server, env)``: start each worker's warm server before its first stage,
    so that its imports run while the cluster starts instead of delaying that stage."""
    warm_server_for(env, dask_worker.state.total_resources.get("GPU", 0))


def warm_server(env: dict[str, str]) -> str:
    """The socket of this worker process's warm server for stages run with ``env``
    (:mod:`.warm`), started on first use; it ends with the worker."""
    key = json.dumps(env, sort_keys=True)
    with _STARTING:  # a worker with several threads starts one server per environment
        if key not in _SERVERS:
            _SERVERS[key] = _start_server(env)
    return _SERVERS[key]


def _start_server(env: dict[str, str]) -> str:
    from cnnscope.runner.shim import keep_niceness

    folder = tempfile.mkdtemp(prefix="cnnscope-warm-")
    path = os.path.join(folder, "socket")
    server = subprocess.Popen(
        [sys.executable, "-m", "cnnscope.runner.warm", path],
        env={**os.environ, **env},  # what the stages would import torch and the rest with
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the terminal reaches the stages through their clients only
        preexec_fn=keep_niceness,
    )
    atexit.register(_stop_server, server, folder)
    while not os.path.exists(path) and server.poll() is None:  # it listens at once
        time.sleep(0.01)
    return path


def _stop_server(server: subprocess.Popen[bytes], folder: str) -> None:
    server.terminate()
    server.wait()
    shutil.rmtree(folder, ignore_errors=True)


def dvc_command(stage: str, force: bool = False) -> list[str]:
    """DVC's own way to run one stage and record it: it checks the run cache first, skips a stage
    that has not changed, and writes dvc.lock; ``--wait-for-lock`` queues behind another stage's
    bookkeeping instead of failing."""
    return ["dvc", "--wait-for-lock", "repro", "--single-item", *(["--force"] if force else []), stage]


def run_stage(
    stage: str,
    root: str,
    log: str,
    cancel_event: str | None = None,
    env: dict[str, str] | None = None,
    force: bool = False,
    target: str | None = None,
) -> StageOutcome:
    """Run ``stage`` in the repository at ``root`` (a folder every worker sees), its output to ``log``.
    ``target`` is DVC's name for it where that differs (a stage of ``stages/<kind>/dvc.yaml``).

    ``cancel_event`` names a Dask ``Event``; once it is set, the stage is interrupted (SIGINT to the
    shim, which passes it to the stage's process group) and reports exit status 130.
    """
    from distributed import Event, get_worker

    try:
        me = get_worker()
        worker, gpus = me.address, me.state.total_resources.get("GPU", 0)
    except ValueError:  # called outside a worker (tests)
        worker, gpus = "local", 0
    event = Event(cancel_event) if cancel_event else None
    path = Path(root) / log
    path.parent.mkdir(parents=True, exist_ok=True)
    dvc = dvc_command(target or stage, force)
    command = [sys.executable, "-m", "cnnscope.runner.shim", "--", *dvc]
    env = dict(env or {})
    if env.pop(WARM, None) and (socket := warm_server_for(env, gpus)):
        env[handoff.ENV] = socket
    start = time.monotonic()
    with path.open("w") as fh:
        fh.write(f"$ {' '.join(dvc)}   # on {worker}\n")
        fh.flush()
        proc = subprocess.Popen(command, cwd=root, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **env})
        code = _wait(proc, event)
    return StageOutcome(stage, code, time.monotonic() - start, log, worker)


def _wait(proc: subprocess.Popen[bytes], cancel: Any) -> int:
    """The exit status of ``proc``; every :data:`POLL` seconds, whether the run was cancelled (then
    SIGINT, and wait). Where Linux gives a pidfd, the wait wakes the moment the process exits:
    ``Popen.wait(timeout)`` sleeps up to 50 ms between its checks, which every stage would add to its
    worker's idle time between stages (benchmarks/README.md, "Per-stage fixed costs")."""
    try:
        pidfd: int | None = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux ≥ 5.3
        pidfd = None
    try:
        while True:
            if pidfd is not None:
                select.select([pidfd], [], [], POLL)
            try:
                return proc.wait(0 if pidfd is not None else POLL)
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    proc.send_signal(signal.SIGINT)
                    return proc.wait()
    finally:
        if pidfd is not None:
            os.close(pidfd)
