"""Benchmark: what following one network over training costs (issue 26), as ratios against its own stages.

In a scratch study folder (the default config plus ``--override`` Hydra overrides) it runs the stage
commands ``prepare``, ``train``, ``extract`` and ``trajectory`` of one network, each in its own process
as DVC runs them, and prints one JSON object:

- ``checkpoint_share``: the seconds the training process spent writing the weights kept along training
  (``trainer.checkpoint_steps``; the callback's saves, timed inside that process) ÷ the train stage's
  wall time. Goal ≤ 0.05.
- ``trajectory_vs_train``: the trajectory stage's CPU time ÷ the train stage's (both at the config's
  thread count; CPU time, so that other work on the machine does not tilt the ratio; the wall times are
  printed beside). Goal ≤ 1.
- ``trajectory_vs_extract_rss``: the trajectory process's peak resident memory ÷ the extract process's
  (each read from the kernel's accounting of that process alone, ``wait4``). Goal ≤ 1.

    python benchmarks/trajectory_costs.py [--variant benchmark]
    python benchmarks/trajectory_costs.py --override experiment=mnist_oip data.root=$PWD/../shared/data

The stages run in a temporary folder, so a path in an override must be absolute.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cnnscope.compose import compose_params
from pipeline import REPO, clean_env

#: The train stage with its checkpoint saves timed: the same command, run through this wrapper.
TIMED_TRAIN = """
import atexit, runpy, sys, time
from pathlib import Path
import cnnscope.training.checkpoints as checkpoints
spent, save = [0.0], checkpoints.save_checkpoint
def timed(*args, **kwargs):
    begin = time.perf_counter()
    save(*args, **kwargs)
    spent[0] += time.perf_counter() - begin
checkpoints.save_checkpoint = timed
atexit.register(lambda: Path("checkpoint_seconds").write_text(str(spent[0])))
script, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def stage(folder: Path, name: str, args: list[str], wrapper: str | None = None) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and peak resident kilobytes of one stage command run in ``folder``."""
    script = str(REPO / "pipelines" / f"{name}.py")
    command = [sys.executable, *(["-c", wrapper] if wrapper else []), script, *args]
    begin = time.perf_counter()
    process = subprocess.Popen(command, cwd=folder, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    error = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{name} {' '.join(args)} failed:\n{error.decode()[-2000:]}")
    return time.perf_counter() - begin, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="benchmark")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--override", nargs="*", default=[], help="Hydra overrides (paths absolute)")
    args = parser.parse_args()
    network = ["--variant", args.variant, "--seed", str(args.seed)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        params = compose_params(args.override)
        (folder / "params.yaml").write_text(yaml.safe_dump(params))
        stage(folder, "prepare", [])
        train_s, train_cpu, _ = stage(folder, "train", [*network, "--no-progress"], TIMED_TRAIN)
        saving_s = float((folder / "checkpoint_seconds").read_text())
        _, _, extract_kb = stage(folder, "extract", network)
        trajectory_s, trajectory_cpu, trajectory_kb = stage(folder, "trajectory", network)
        checkpoints = len(list((folder / params["trainer"]["models_dir"]).glob("*/*/checkpoints/step*.ckpt")))
    print(
        json.dumps(
            {
                "variant": args.variant,
                "overrides": args.override,
                "checkpoints": checkpoints,
                "train_s": round(train_s, 2),
                "train_cpu_s": round(train_cpu, 2),
                "checkpoint_saving_s": round(saving_s, 4),
                "checkpoint_share": round(saving_s / train_s, 5),
                "trajectory_s": round(trajectory_s, 2),
                "trajectory_cpu_s": round(trajectory_cpu, 2),
                "trajectory_vs_train": round(trajectory_cpu / train_cpu, 3),
                "extract_peak_mb": extract_kb >> 10,
                "trajectory_peak_mb": trajectory_kb >> 10,
                "trajectory_vs_extract_rss": round(trajectory_kb / extract_kb, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
