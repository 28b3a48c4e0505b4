"""Dask worker plugins of the runner (imported only where a cluster is started)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from distributed import WorkerPlugin


class IgnoreCtrlC(WorkerPlugin):
    """Local workers share the terminal's process group, so Ctrl-C would kill each of them
    mid-stage with a traceback; the scheduler cancels their stages cleanly instead
    (:func:`cnnscope.runner.schedule.execute`)."""

    name = "cnnscope-ignore-ctrl-c"

    def setup(self, worker: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
