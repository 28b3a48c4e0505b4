"""``cnnscope``: the project's command line. ``cnnscope repro`` runs the pipeline in parallel.

cnnscope repro                       # every out-of-date stage, on all cores of this machine
cnnscope repro compare --workers 2   # compare and what it needs
cnnscope repro --scheduler tcp://head:8786
cnnscope repro --cluster slurm -o runner.jobs=8 -o runner.cluster.queue=gpu
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import signal
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cnnscope.errors import INTERRUPTED, CnnscopeError

if TYPE_CHECKING:
    from cnnscope.runner.dag import StageGraph

LOG_DIR = "logs/repro"


def _repo_root() -> Path:
    root = Path.cwd()
    for folder in (root, *root.parents):
        if (folder / "dvc.yaml").is_file() and (folder / ".dvc").is_dir():
            return folder
    raise CnnscopeError("no dvc.yaml here or above: run cnnscope repro inside the cnnscope repository")


def check_commands(root: Path, graph: StageGraph, stages: list[str]) -> None:
    """Every planned stage has a command, and a ``python <script>`` command's script exists: a typo
    is reported before any stage runs, not after an hour of upstream work."""
    from cnnscope.runner.dag import read_stages

    read: dict[str, dict] = {}
    for stage in stages:
        file, name = graph.dvcfile(stage), stage.rsplit(":", 1)[-1].split("@", 1)[0]
        if file not in read:
            read[file] = read_stages(root / file)
        spec = read[file].get(name, {})
        cmd, wdir = spec.get("cmd"), (root / file).parent / spec.get("wdir", ".")
        if not cmd:
            raise CnnscopeError(f"stage {name!r} in {file} has no cmd: give it the command that makes its outputs")
        words = shlex.split(cmd if isinstance(cmd, str) else cmd[0])
        if (
            words[0].startswith("python")
            and len(words) > 1
            and words[1].endswith(".py")
            and not (wdir / words[1]).is_file()
        ):
            raise CnnscopeError(f"stage {name!r} runs `{cmd}`, but {words[1]} does not exist: fix its cmd in {file}")


def _last_error(log: Path) -> str:
    """The line of a stage's log that says why it failed: the stage's own error, else the last line
    of a traceback, else DVC's."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    for pattern in (r"^cnnscope: error:", r"^[A-Za-z_.]*(Error|Exception|Interrupt)\b", r"^ERROR:"):
        hits = [line for line in lines if re.match(pattern, line)]
        if hits:
            return hits[-1]
    return lines[-1] if lines else "no output"


def _threads(root: Path) -> str:
    params = yaml.safe_load((root / "params.yaml").read_text()) or {}
    return str(params.get("runtime", {}).get("threads", 1))


def repro(args: argparse.Namespace) -> int:
    from cnnscope.runner import history
    from cnnscope.runner.cluster import open_client, runner_config
    from cnnscope.runner.dag import outputs_missing, plan, read_state, resolve_targets
    from cnnscope.runner.display import Progress, summary
    from cnnscope.runner.schedule import execute
    from cnnscope.runner.task import WARM, start_warm_server

    begin = time.monotonic()
    root = _repo_root()
    cfg = runner_config(args.cluster, args.override)
    gpu_groups, share = set(cfg["gpu_stages"]), cfg["gpu_share"]
    # Workers of a cluster started elsewhere do not share this shell's environment: the stages get
    # its MLflow settings (where to log) from here, with the recorded thread count.
    forwarded = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    # DVC_NO_ANALYTICS: each stage is a `dvc repro` of its own, and each would start DVC's usage-report
    # daemon (a detached Python importing DVC, ≈ 0.14 CPU-seconds) beside the stages.
    env = {**forwarded, "OMP_NUM_THREADS": _threads(root), "CNNSCOPE_QUIET": "1", "DVC_NO_ANALYTICS": "1"}
    if not args.cold:
        env[WARM] = "1"

    def warm_up(client: Any, count: int | None) -> None:
        if not args.cold:  # no more servers than stages to run; one that fails here starts with its first stage
            client.run(start_warm_server, env, workers=sorted(client.nthreads())[:count], on_error="ignore")

    with contextlib.ExitStack() as stack:
        state = stack.enter_context(ThreadPoolExecutor(1)).submit(read_state, root)
        client = None
        if cfg["kind"] == "local" and not args.scheduler and outputs_missing(root):
            # Work for certain (a fresh clone, a new study): the local workers and their warm servers
            # start while DVC reads the state (seconds), not after it. Never a cluster's jobs.
            client = stack.enter_context(open_client(cfg, args.workers, None))
            warm_up(client, None)
        graph, changed = state.result()
        targets = resolve_targets(graph, args.targets) if args.targets else None
        todo = plan(graph, changed, targets, force=args.force)
        if not todo:
            print("Everything is up to date: no stage to run.")
            return 0
        check_commands(root, graph, todo)
        if client is None:
            client = stack.enter_context(open_client(cfg, args.workers, args.scheduler))
            warm_up(client, len(todo))
        has_gpu = any(w.get("resources", {}).get("GPU") for w in client.scheduler_info()["workers"].values())

        def resources(stage: str) -> dict[str, float] | None:
            return {"GPU": 1 / share} if has_gpu and stage.split("@", 1)[0] in gpu_groups else None

        workers = sum(client.nthreads().values())
        print(f"cnnscope repro: {len(todo)} stages on {workers} workers ({client.scheduler.address})", file=sys.stderr)
        cost = history.costs(todo, history.load(root, LOG_DIR), cfg.get("first_run_seconds"))
        with Progress(todo, workers) as progress:
            report = execute(
                client, graph, todo, str(root), LOG_DIR, progress.listener(), env, resources, args.force, cost
            )
    print(summary(todo, report, time.monotonic() - begin, root, LOG_DIR))
    history.record(root, LOG_DIR, report.outcomes.values())
    if report.failed:
        for stage in report.failed:
            if stage in report.outcomes:
                log = report.outcomes[stage].log
                print(f"cnnscope: stage {stage} failed: {_last_error(root / log)} (whole log: {log})", file=sys.stderr)
            else:
                why = report.lost[stage]
                print(f"cnnscope: stage {stage} failed: its worker died mid-stage: {why}", file=sys.stderr)
        if report.blocked:
            n = len(report.blocked)
            print(f"cnnscope: {n} stage{'s' if n > 1 else ''} downstream of it were not run", file=sys.stderr)
        return 1
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="cnnscope", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = top.add_subparsers(dest="command", required=True)
    rp = commands.add_parser(
        "repro", help="run out-of-date stages of dvc.yaml in parallel, recorded as dvc repro records them"
    )
    rp.add_argument("targets", nargs="*", help="stages (train@benchmark-0) or stage groups (train); default: all")
    rp.add_argument(
        "--workers", "-j", type=int, help="worker processes of the local cluster (default: cores, capped by memory)"
    )
    rp.add_argument(
        "--scheduler", help="address of a running Dask scheduler (tcp://host:8786) instead of a local cluster"
    )
    rp.add_argument("--cluster", default="local", help="a file of conf/runner/: local (default), slurm, pbs")
    rp.add_argument(
        "-o", "--override", action="append", default=[], help="runner setting, e.g. runner.jobs=8 (repeatable)"
    )
    rp.add_argument("--force", "-f", action="store_true", help="run the stages even if DVC finds them up to date")
    rp.add_argument(
        "--cold",
        action="store_true",
        help="start each stage in a new Python, as dvc repro does, not from the worker's warm server",
    )
    rp.set_defaults(func=repro)
    return top


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    # SIGTERM (`kill`, a cluster's job cancel, a closed session) stops a run the way Ctrl-C does:
    # the running stages are interrupted and nothing is left half-written. A run started in the
    # background by a script ignores SIGINT (the shell's rule for background jobs), so SIGTERM is
    # how it is stopped.
    signal.signal(signal.SIGTERM, _stop)
    try:
        warnings.showwarning = lambda message, *a, **k: print(f"cnnscope: warning: {message}", file=sys.stderr)
        code = args.func(args)
    except CnnscopeError as err:
        print(f"cnnscope: error: {err}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print(
            "cnnscope: interrupted: running stages were stopped (nothing half-written); re-run to continue",
            file=sys.stderr,
        )
        code = INTERRUPTED
    sys.exit(code)


if __name__ == "__main__":
    main()
