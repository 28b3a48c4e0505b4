"""The Dask cluster a run uses: local one-thread worker processes, an existing scheduler, or
SLURM/PBS jobs through dask-jobqueue, configured by the Hydra group ``conf/runner/``."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cnnscope.errors import CnnscopeError

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"
#: Seconds to wait for an existing scheduler before saying it does not answer.
CONNECT_TIMEOUT = 10


def runner_config(name: str, overrides: list[str] | None = None, conf_dir: Path = CONF_DIR) -> dict[str, Any]:
    """``conf/runner/<name>.yaml`` composed by Hydra with ``overrides`` (``runner.jobs=8`` or ``jobs=8``)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    choices = sorted(p.stem for p in (conf_dir / "runner").glob("*.yaml"))
    if name not in choices:
        raise CnnscopeError(f"unknown cluster {name!r}: choose one of {', '.join(choices)} (files in conf/runner/)")
    try:
        with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base=None):
            keyed = [o if o.startswith("runner.") else f"runner.{o}" for o in overrides or []]
            cfg = compose(config_name=f"runner/{name}", overrides=keyed)
    except HydraException as err:
        raise CnnscopeError(
            f"bad runner override: {str(err).splitlines()[0]} (keys: conf/runner/{name}.yaml)"
        ) from None
    runner: dict[str, Any] = OmegaConf.to_container(cfg.runner, resolve=True)  # type: ignore[assignment]
    for key in ("workers", "gpu_share"):  # counts: an override like runner.workers=-1 is refused here
        value = runner.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            allowed = "a count ≥ 1, or null for one per core" if key == "workers" else "a count ≥ 1"
            raise CnnscopeError(
                f"runner.{key}={value!r} is out of range: it must be {allowed} (conf/runner/{name}.yaml)"
            )
    guesses = runner.get("first_run_seconds") or {}
    if not isinstance(guesses, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in guesses.values()
    ):
        raise CnnscopeError(
            f"runner.first_run_seconds={guesses!r} must map stage kinds to seconds ≥ 0 (conf/runner/{name}.yaml)"
        )
    return runner


def parse_bytes(text: str | int) -> int:
    from dask.utils import parse_bytes as dask_parse

    return int(dask_parse(text))


def gpu_count() -> int:
    """GPUs this machine has, without importing torch (a second of start-up)."""
    if not shutil.which("nvidia-smi"):
        return 0
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    return sum(line.startswith("GPU ") for line in listed.splitlines())


def local_workers(
    requested: int | None, stage_memory: str | int, cores: int | None = None, available: int | None = None
) -> int:
    """Workers for this machine: one per core, fewer when memory cannot hold that many of the
    largest stage; a request above that is capped with a warning (a stage killed for memory
    costs more than a stage that waits)."""
    import psutil

    cores = cores or os.cpu_count() or 1
    available = available if available is not None else psutil.virtual_memory().available
    by_memory = max(1, available // parse_bytes(stage_memory))
    limit = min(cores, by_memory)
    if requested is None:
        return limit
    if requested < 1:
        raise CnnscopeError(f"--workers={requested}: give at least 1")
    if requested > by_memory:
        warnings.warn(
            f"--workers={requested} would need {requested} × {stage_memory} but {available / 2**30:.1f} GiB is "
            f"free: using {by_memory} workers (runner.stage_memory sets the per-stage peak)",
            stacklevel=2,
        )
        return int(by_memory)
    return requested


def worker_specs(cpu_workers: int, gpus: int, gpu_share: int) -> dict[str, dict[str, Any]]:
    """Dask ``SpecCluster`` workers: ``cpu_workers`` one-thread processes, and per GPU one process
    pinned to it (``CUDA_VISIBLE_DEVICES``) that declares ``GPU=1`` and runs ``gpu_share`` stages at
    once; a GPU stage asks for ``1/gpu_share`` of a card. The threads only wait on stage processes,
    so several per GPU worker cost nothing."""
    from distributed import Nanny

    specs: dict[str, dict[str, Any]] = {
        f"cpu-{i}": {"cls": Nanny, "options": {"nthreads": 1, "memory_limit": 0}} for i in range(cpu_workers)
    }
    for j in range(gpus):
        options = {
            "nthreads": gpu_share,
            "memory_limit": 0,
            "resources": {"GPU": 1},
            "env": {"CUDA_VISIBLE_DEVICES": str(j)},
        }
        specs[f"gpu-{j}"] = {"cls": Nanny, "options": options}
    return specs


def jobqueue_cluster(cfg: dict[str, Any]) -> Any:
    """A dask-jobqueue cluster object for ``cfg`` (``kind`` slurm or pbs); no job is submitted yet."""
    import dask_jobqueue

    classes = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}
    options = {k: v for k, v in cfg["cluster"].items() if v not in (None, [])}
    # one thread per worker process: the threads only wait on stage processes, one stage each
    options.setdefault("processes", options.get("cores", 1))
    return classes[cfg["kind"]](**options)


@contextmanager
def open_client(cfg: dict[str, Any], workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A connected Dask client for the run; a cluster it started is closed afterwards."""
    import dask
    from distributed import Client, LocalCluster, Scheduler, SpecCluster

    from cnnscope.runner.plugins import IgnoreCtrlC

    # A worker lost mid-stage is reported, not silently retried elsewhere (its stage may have
    # half-run); a worker is given one stage per thread (dask's default saturation of 1.1 queues a
    # second stage on a busy one-thread worker, which then waits there while another worker idles).
    settings = {
        "distributed.scheduler.allowed-failures": 0,
        "distributed.scheduler.worker-saturation": 1.0,
    }
    with dask.config.set(settings):
        if scheduler:
            try:
                client = Client(scheduler, timeout=CONNECT_TIMEOUT)
            except OSError as err:
                raise CnnscopeError(
                    f"no Dask scheduler answers at {scheduler} within {CONNECT_TIMEOUT} s ({err.__class__.__name__}): "
                    "start one with `dask scheduler` and point --scheduler at the address it prints"
                ) from None
            with client:
                yield client
            return
        if cfg["kind"] == "local":
            n = local_workers(workers if workers is not None else cfg.get("workers"), cfg["stage_memory"])
            gpus = gpu_count()
            quiet = {"silence_logs": logging.CRITICAL, "dashboard_address": ":0"}  # any free port, no clash
            if gpus:
                specs = worker_specs(max(1, n - gpus * cfg["gpu_share"]), gpus, cfg["gpu_share"])
                sched = {"cls": Scheduler, "options": {"dashboard_address": ":0"}}
                cluster: Any = SpecCluster(workers=specs, scheduler=sched, silence_logs=logging.CRITICAL)
            else:
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, memory_limit=0, **quiet)
        else:
            cluster = jobqueue_cluster(cfg)
            cluster.scale(jobs=workers or cfg["jobs"])
        with cluster, Client(cluster) as client:
            client.register_plugin(IgnoreCtrlC())  # local workers share the terminal's process group
            yield client
