"""Process-wide CPU settings shared by the stages, the tuning entry point and the benchmarks."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from typing import Any

# mallopt(3) parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def _glibc_function(name: str) -> Any:
    """glibc's ``name`` (``mallopt``, ``malloc_trim``), or None off Linux or on a libc without it
    (musl has neither): the memory settings below are optimisations, never requirements. ``Any``:
    ctypes gives the foreign function no public type."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def keep_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Let glibc's malloc keep freed blocks up to ``limit_bytes`` for reuse instead of unmapping them.

    Why: PyTorch allocates CPU tensors with plain ``malloc``. glibc serves large blocks (above a
    dynamic threshold of at most 32 MB) with ``mmap`` and returns them to the kernel on ``free``,
    and it trims the top of the heap; a training or OIP step re-allocates the same activation-sized
    buffers every iteration, so every step page-faults them in again; for a large OIP batch on a
    CPU that was a large share of the step (measured: benchmarks/README.md) — the effect
    performance guides get from jemalloc or tcmalloc. The cost is
    that the process keeps its peak heap until it exits, which the stages (one process per stage)
    can afford. Results do not change: only where memory comes from.

    Returns whether the setting took effect; it is a no-op off Linux/glibc.
    """
    mallopt = _glibc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, limit_bytes)) and bool(mallopt(_M_TRIM_THRESHOLD, limit_bytes))


def release_freed_memory() -> bool:
    """Hand the heap's free pages back to the kernel now (glibc ``malloc_trim(0)``).

    For a stage whose memory-heavy phase is over: :func:`keep_freed_memory` keeps that phase's
    freed buffers resident until the process exits, so whatever is imported or computed afterwards
    (the trajectory stage's probes import SciPy's optimiser, ~45 MB) would add to the
    phase's peak instead of reusing it. Results do not change. A no-op off Linux/glibc.
    """
    trim = _glibc_function("malloc_trim")
    if trim is None:
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(trim(0))


def set_threads(threads: int) -> None:
    """Give torch and the BLAS libraries (numpy, SciPy) exactly ``threads`` threads.

    Why: a float reduction is summed in an order that depends on the thread count, so results are
    byte-stable only at a fixed count; and several one-thread stages side by side use the cores
    better than one stage whose threads contend with its neighbours'. Imported lazily so that a
    config check stays cheap for code that never computes.
    """
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only settable before the first inter-op work
        torch.set_num_interop_threads(threads)
    threadpool_limits(limits=threads)
