"""Benchmark: what the parallel runner buys, measured in one run, as ratios against a reference.

Two measurements, each printed as one JSON object:

- ``overhead``: a DVC project of ``--noop`` stages whose command does nothing (``python -c pass``),
  all independent. ``dvc repro`` runs them one after another; ``cnnscope repro`` on 2 workers. The
  runner's cost per stage beyond the command itself (its scheduling, and one ``dvc repro
  --single-item`` process per stage) against ``dvc repro``'s.
- ``speedup``: the per-network stages (train, extract, oip, exemplars) of a small study
  (``--variants`` × ``--seeds`` on the embedded data), once on 1 worker and once on 2, from the same
  prepared data. The reference is the 1-worker run; the goal is ≥ 1.7× on 2 cores. By default the
  stages are cut short (2 epochs, 30 OIP steps), so each one's fixed cost (a Python and a DVC process,
  DVC's bookkeeping under its repository lock) weighs as much as its work; ``--study-settings`` keeps
  the default study's own epochs and OIP steps, the stages ``make repro`` runs. Beside it, the same
  stage commands run by hand, without DVC or Dask (from a warm server, as the runner starts them, or a
  Python each with ``--cold``), one at a time and two at a time: what two cores give these stages at
  all, so the runner's ratio can be read against it.
- ``study``: the same ratio on a whole study's per-network stages (every kind, every network of the
  checkout's ``params.yaml``), forced with ``cnnscope repro --force -j 1`` and then ``-j 2`` in
  ``--clone``, a clone where ``make repro`` has run (its outputs are rewritten with the same bytes).
  Minutes-long runs, so the runner's fixed start (DVC's ``dag`` and ``status``, the cluster, the warm
  servers' first imports) weighs less than in ``speedup``'s one-minute runs; the span of the
  per-network stages alone (first start to last end) is reported beside the whole command's wall.

    python benchmarks/runner_scaling.py [--noop 24] [--variants benchmark dummy untrained mlp] [--seeds 0 1]
    python benchmarks/runner_scaling.py --only speedup --study-settings [--cold]
    python benchmarks/runner_scaling.py --only study --clone /path/to/a/finished/clone
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pipeline import BIN, clean_env, copy_of_repo

GIT_ID = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}


def run(command: list[str], cwd: Path) -> float:
    """Wall seconds of ``command`` in ``cwd`` (it must succeed)."""
    begin = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=clean_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - begin


def noop_project(folder: Path, stages: int) -> Path:
    folder.mkdir(parents=True)
    lines = ["stages:", "  noop:", "    matrix:", f"      i: {list(range(stages))}"]
    lines += ["    cmd: python -c pass", "    outs: []"]
    (folder / "dvc.yaml").write_text("\n".join(lines) + "\n")
    (folder / "params.yaml").write_text("runtime: {threads: 1}\n")
    (folder / ".gitignore").write_text("/logs/\n")
    for command in (
        ["git", "init", "-q"],
        [str(BIN / "dvc"), "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "n"],
    ):
        subprocess.run(command, cwd=folder, env=clean_env() | GIT_ID, check=True)
    return folder


def overhead(stages: int, scratch: Path) -> dict[str, float]:
    serial = noop_project(scratch / "serial", stages)
    parallel = noop_project(scratch / "parallel", stages)
    command = run([sys.executable, "-c", "pass"], scratch)
    dvc_wall = run([str(BIN / "dvc"), "repro"], serial)
    runner_wall = run([str(BIN / "cnnscope"), "repro", "-j", "2"], parallel)
    return {
        "stages": stages,
        "command_s": round(command, 3),
        "dvc_repro_s_per_stage": round(dvc_wall / stages, 3),
        "runner_2_workers_s_per_stage": round(runner_wall / stages, 3),
        "runner_overhead_s_per_stage": round(runner_wall / stages - command / 2, 3),
        "runner_vs_dvc_repro": round(dvc_wall / runner_wall, 2),
    }


def speedup(
    variants: list[str], seeds: list[int], scratch: Path, study_settings: bool, cold: bool
) -> dict[str, object]:
    base = copy_of_repo(scratch / "base")
    short = [] if study_settings else ["trainer.max_epochs=2", "oip.steps=30"]
    overrides = [f"study.variants=[{','.join(variants)}]", f"study.seeds=[{','.join(map(str, seeds))}]",
                 "study.contrasts=[]", *short]  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "cnnscope.compose", *overrides],
        cwd=base,
        env=clean_env(),
        check=True,
        capture_output=True,
    )
    subprocess.run(["git", "commit", "-qam", "bench"], cwd=base, env=clean_env() | GIT_ID, check=True)
    run([str(BIN / "dvc"), "repro", "prepare"], base)
    targets = ["train", "extract", "oip", "exemplars"]
    walls = {}
    for workers in (1, 2):
        clone = scratch / f"w{workers}"
        shutil.copytree(base, clone, symlinks=True)
        flags = ["--cold"] if cold else []
        walls[workers] = run([str(BIN / "cnnscope"), "repro", "-j", str(workers), *flags, *targets], clone)
    commands = {
        kind: [
            [str(BIN / "python"), f"pipelines/{kind}.py", "--variant", v, "--seed", str(s)]
            for v in variants
            for s in seeds
        ]
        for kind in targets
    }
    by_hand = {workers: stage_commands(scratch / "w2", commands, workers, cold) for workers in (1, 2)}
    networks = len(variants) * len(seeds)
    return {
        "settings": "the default study's" if study_settings else "cut short (2 epochs, 30 OIP steps)",
        "stage_processes": "a Python each (--cold)" if cold else "forked from warm servers",
        "networks": networks,
        "stages": networks * len(targets),
        **compared(walls[1], walls[2]),
        "by_hand_one_at_a_time_s": round(by_hand[1], 1),
        "by_hand_two_at_a_time_s": round(by_hand[2], 1),
        "by_hand_ratio": round(by_hand[1] / by_hand[2], 2),
    }


def stage_commands(folder: Path, commands: dict[str, list[list[str]]], at_once: int, cold: bool) -> float:
    """The reference for the speedup: the same stage commands without DVC or Dask, ``at_once`` at a
    time, each kind after the one before (as their outputs need), from a warm server as the runner's
    stages start (a Python each with ``cold``). What two cores give these stages at all."""
    from concurrent.futures import ThreadPoolExecutor

    from cnnscope.handoff import ENV

    env = clean_env() | {"OMP_NUM_THREADS": "1", "CNNSCOPE_QUIET": "1"}
    server = None
    if not cold:
        socket = str(folder / "warm.socket")
        server = subprocess.Popen([str(BIN / "python"), "-m", "cnnscope.runner.warm", socket], env=env,
                                  stdout=subprocess.PIPE)  # fmt: skip
        assert server.stdout is not None and server.stdout.readline() == b"warm\n"
        env[ENV] = socket

    def one(command: list[str]) -> None:
        subprocess.run(command, cwd=folder, env=env, check=True, capture_output=True)

    begin = time.perf_counter()
    try:
        with ThreadPoolExecutor(at_once) as pool:
            for of_kind in commands.values():  # dict order: each kind after the one before
                list(pool.map(one, of_kind))
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    return time.perf_counter() - begin


#: The per-network stage kinds of the default study (stages/<kind>/dvc.yaml).
PER_NETWORK = ["train", "extract", "measures", "histograms", "trajectory", "oip", "exemplars"]


def study(clone: Path) -> dict[str, object]:
    """``cnnscope repro --force`` of every per-network stage in ``clone``, on 1 worker, then on 2."""
    if not (clone / "logs" / "repro" / "summary.csv").is_file():
        raise SystemExit(f"{clone}: no finished run there (logs/repro/summary.csv): run `make repro` in it first")
    walls, spans = {}, {}
    for j in (1, 2):
        walls[j] = run([str(clone / ".venv/bin/cnnscope"), "repro", "--force", "-j", str(j), *PER_NETWORK], clone)
        spans[j] = per_network_span(clone)
    return {
        "stages": "every per-network stage, forced (with validate and prepare)",
        **compared(walls[1], walls[2]),
        # the per-network stages alone: from the first one's start to the last one's end, without the
        # runner's start (DVC's dag and status, the cluster), validate and prepare, which run alone
        **compared(spans[1], spans[2], "per_network_"),
    }


def compared(one: float, two: float, prefix: str = "") -> dict[str, float]:
    """Seconds on one worker and on two, and their ratio, as the JSON reports them."""
    return {
        f"{prefix}one_worker_s": round(one, 1),
        f"{prefix}two_workers_s": round(two, 1),
        f"{prefix}speedup": round(one / two, 2),
    }


def per_network_span(clone: Path) -> float:
    """Seconds from the first per-network stage's start to the last one's end in the run just made,
    from ``logs/repro/summary.csv`` (each stage's wall time) and its log's last write (its end)."""
    with (clone / "logs" / "repro" / "summary.csv").open() as fh:
        rows = [row for row in csv.DictReader(fh) if "@" in row["stage"] and row["status"] == "ok"]
    ends = [(clone / row["log"]).stat().st_mtime for row in rows]
    starts = [end - float(row["seconds"]) for end, row in zip(ends, rows, strict=True)]
    return max(ends) - min(starts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noop", type=int, default=24, help="no-op stages of the overhead measurement")
    parser.add_argument("--variants", nargs="+", default=["benchmark", "dummy", "untrained", "mlp"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--only", choices=["overhead", "speedup", "study"])
    parser.add_argument("--clone", type=Path, help="--only study: a clone where make repro has run")
    parser.add_argument("--study-settings", action="store_true", help="the default study's epochs and OIP steps")
    parser.add_argument("--cold", action="store_true", help="each stage in a Python of its own (cnnscope repro --cold)")
    args = parser.parse_args()
    if args.only == "study":
        if args.clone is None:
            parser.error("--only study needs --clone: a clone where make repro has run")
        print(json.dumps({"study": study(args.clone.resolve())}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.only != "speedup":
            print(json.dumps({"overhead": overhead(args.noop, Path(tmp))}))
        if args.only != "overhead":
            result = speedup(args.variants, args.seeds, Path(tmp), args.study_settings, args.cold)
            print(json.dumps({"speedup": result}))


if __name__ == "__main__":
    main()
