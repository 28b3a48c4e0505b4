"""``cnnscope repro``, the parallel runner: its plan, its cluster settings, its bad-input errors,
and its behaviour on a small DVC project of sleeping stages (failures, Ctrl-C, a killed worker, an
external Dask cluster started as separate processes, as on a cluster)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from cnnscope.errors import CnnscopeError
from cnnscope.runner import history
from cnnscope.runner.cluster import jobqueue_cluster, local_workers, runner_config, worker_specs
from cnnscope.runner.dag import outputs_missing, parse_dot, plan, resolve_targets
from cnnscope.runner.schedule import priorities
from cnnscope.runner.task import StageOutcome
from pipeline import BIN, clean_env, dask_worker, dvc


def dot(*items: str) -> str:
    """``dvc dag --dot``'s output for ``items``: edges ("a -> b") and lone stages ("d"), each stage
    declared once, in order."""
    parts = [tuple(item.split(" -> ")) for item in items]
    stages = list(dict.fromkeys(name for part in parts for name in part))
    lines = [f'"{s}";' for s in stages] + [f'"{p[0]}" -> "{p[1]}";' for p in parts if len(p) == 2]
    return "strict digraph {\n" + "\n".join(lines) + "\n}\n"


TRAIN_A, TRAIN_B = "stages/train/dvc.yaml:train@a-0", "stages/train/dvc.yaml:train@b-0"
#: A project whose train stages live in stages/train/dvc.yaml, as DVC names them.
DOT = dot(f"prepare -> {TRAIN_A}", f"prepare -> {TRAIN_B}", f"{TRAIN_A} -> compare", f"{TRAIN_B} -> compare",
          "compare -> report")  # fmt: skip


# ---------------------------------------------------------------- the plan


def test_plan_runs_changed_stages_and_everything_downstream_upstream_first() -> None:
    graph = parse_dot(DOT)
    assert graph.upstream["compare"] == {"train@a-0", "train@b-0"}
    assert plan(graph, {"train@b-0"}) == ["train@b-0", "compare", "report"]
    assert plan(graph, set()) == []
    assert plan(graph, {"prepare"})[0] == "prepare" and len(plan(graph, {"prepare"})) == 5


def test_a_stage_of_another_dvc_yaml_goes_by_its_own_name_and_dvc_gets_its_address() -> None:
    graph = parse_dot(DOT)
    assert graph.stages == ["prepare", "train@a-0", "train@b-0", "compare", "report"]
    assert graph.target("train@a-0") == "stages/train/dvc.yaml:train@a-0" and graph.target("compare") == "compare"
    assert graph.dvcfile("train@a-0") == "stages/train/dvc.yaml" and graph.dvcfile("compare") == "dvc.yaml"
    clash = parse_dot('"x/dvc.yaml:s";\n"y/dvc.yaml:s";\n"s2";\n"x/dvc.yaml:s" -> "s2";')
    assert clash.stages == ["x/dvc.yaml:s", "y/dvc.yaml:s", "s2"]  # one name in two files: addresses stay
    assert clash.upstream["s2"] == {"x/dvc.yaml:s"}


def test_targets_limit_the_plan_to_what_they_need_and_groups_expand() -> None:
    graph = parse_dot(DOT)
    assert resolve_targets(graph, ["train"]) == {"train@a-0", "train@b-0"}
    assert resolve_targets(graph, ["stages/train/dvc.yaml:train"]) == {"train@a-0", "train@b-0"}
    assert resolve_targets(graph, ["stages/train/dvc.yaml:train@b-0"]) == {"train@b-0"}
    assert plan(graph, {"prepare"}, resolve_targets(graph, ["train@a-0"])) == ["prepare", "train@a-0"]
    assert plan(graph, set(), {"compare"}, force=True) == ["prepare", "train@a-0", "train@b-0", "compare"]
    with pytest.raises(CnnscopeError, match=r"unknown target 'trian'.*train@a-0"):
        resolve_targets(graph, ["trian"])


#: Two chains of three stages into ``atlas``: ``h`` gates the long ``compare``, ``o`` the short ``e``.
CHAINS = dot("o -> e", "h -> compare", "e -> atlas", "compare -> atlas")


def test_the_longest_chain_of_work_starts_first_and_earlier_wall_times_say_which_that_is() -> None:
    graph = parse_dot(CHAINS)
    todo = graph.order(graph.stages)
    unit = priorities(graph, todo)  # no history: chains counted in stages tie, and dvc.yaml's order decides
    assert unit["o"] > unit["h"] and unit["atlas"] == min(unit.values())
    timed = priorities(graph, todo, history.costs(todo, {"o": 14, "h": 3, "e": 3, "compare": 28, "atlas": 9}))
    assert timed["h"] > timed["o"] and timed["compare"] > timed["e"]
    guessed = priorities(graph, todo, history.costs(todo, {}, {"compare": 28, "o": 14}))  # a fresh clone
    assert guessed["h"] > guessed["o"]
    chain = parse_dot(dot("a -> b", "b -> c", "d"))  # a chain of 3 s beats a lone stage of 2.5 s, which beats 2 s
    ranked = priorities(chain, chain.order(chain.stages), {"a": 1, "b": 1, "c": 1, "d": 2.5})
    assert ranked["a"] > ranked["d"] > ranked["b"] > ranked["c"]


def test_stage_history_fills_in_by_kind_and_survives_a_bad_file(tmp_path: Path) -> None:
    assert history.costs(["train@a-0"], {}) == {"train@a-0": 1.0}

    def ran(stage: str, code: int, seconds: float) -> StageOutcome:
        return StageOutcome(stage, code, seconds, f"logs/{stage}.log", "w")

    history.record(tmp_path, "logs", [ran("train@a-0", 0, 10.0), ran("oip@a-0", 2, 5.0)])
    history.record(tmp_path, "logs", [ran("train@b-0", 0, 20.0)])
    known = history.load(tmp_path, "logs")
    assert known == {"train@a-0": 10.0, "train@b-0": 20.0}  # failed stages teach nothing; runs accumulate
    expected = {"train@a-0": 10.0, "train@c-0": 15.0, "oip@a-0": 15.0}  # own time, else its kind's, else all
    assert history.costs(["train@a-0", "train@c-0", "oip@a-0"], known) == expected
    # a kind never run here takes the config's first-run seconds; history outranks them
    first_run = {"oip": 9.0, "train": 99.0}  # train has history here: its guess is not used
    expected = {"train@c-0": 15.0, "oip@a-0": 9.0, "atlas": (10.0 + 20.0 + 9.0) / 3}  # atlas: every known stage
    assert history.costs(["train@c-0", "oip@a-0", "atlas"], known, first_run) == expected
    (tmp_path / "logs" / history.FILE).write_text("{not json")
    assert history.load(tmp_path, "logs") == {}


# ---------------------------------------------------------------- cluster settings


def test_workers_are_capped_by_memory_with_a_warning() -> None:
    gib = 2**30
    assert local_workers(None, "2.4GB", cores=16, available=8 * gib) == 3  # memory, not cores, limits
    assert local_workers(None, "2.4GB", cores=2, available=24 * gib) == 2
    with pytest.warns(UserWarning, match="using 3 workers"):
        assert local_workers(8, "2.4GB", cores=16, available=8 * gib) == 3
    with pytest.raises(CnnscopeError, match="at least 1"):
        local_workers(0, "2.4GB", cores=2, available=8 * gib)


def test_gpu_workers_declare_a_gpu_each_and_share_it() -> None:
    specs = worker_specs(cpu_workers=2, gpus=2, gpu_share=3)
    assert [specs[f"cpu-{i}"]["options"]["nthreads"] for i in range(2)] == [1, 1]
    gpu = specs["gpu-1"]["options"]
    assert gpu["resources"] == {"GPU": 1} and gpu["nthreads"] == 3 and gpu["env"] == {"CUDA_VISIBLE_DEVICES": "1"}


def test_the_slurm_and_pbs_groups_compose_into_job_scripts() -> None:
    cfg = runner_config("slurm", ["runner.cluster.queue=gpu", "jobs=3", "runner.cluster.walltime=00:30:00"])
    assert cfg["jobs"] == 3 and cfg["kind"] == "slurm"
    cluster = jobqueue_cluster(cfg)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -p gpu" in script and "#SBATCH -t 00:30:00" in script and "--nthreads 1" in script
    pbs = jobqueue_cluster(runner_config("pbs", ["runner.cluster.queue=long"]))
    try:
        assert "#PBS -q long" in pbs.job_script()
    finally:
        pbs.close()
    with pytest.raises(CnnscopeError, match=r"unknown cluster 'sge'.*local, pbs, slurm"):
        runner_config("sge")
    with pytest.raises(CnnscopeError, match="bad runner override"):
        runner_config("slurm", ["runner.nonsense=1"])


# ---------------------------------------------------------------- a project of sleeping stages

SLEEPER = """import os, sys, time
name, seconds = sys.argv[1], float(sys.argv[2])
open(f"{name}.pid", "w").write(str(os.getpid()))
inputs = "".join(open(p).read() for p in sys.argv[3:])
time.sleep(seconds)
open(f".{name}.tmp", "w").write(inputs + name)
os.replace(f".{name}.tmp", f"{name}.txt")
"""

DVC_YAML = """stages:
  a:
    cmd: python sleeper.py a 0.5
    deps: [sleeper.py]
    outs: [a.txt]
  bad:
    cmd: python fail.py
    deps: [a.txt, fail.py]
    outs: [bad.txt]
  after_bad:
    cmd: python sleeper.py z 0 bad.txt
    deps: [bad.txt]
    outs: [z.txt]
  c:
    cmd: python sleeper.py c 0 b1.txt b2.txt b3.txt
    deps: [b1.txt, b2.txt, b3.txt]
    outs: [c.txt]
"""


#: A matrix stage in a dvc.yaml of its own, as the project's per-network kinds are (stages/<kind>/):
#: DVC names its items ``stages/b/dvc.yaml:b@1``, the runner ``b@1``.
B_YAML = """vars: [../../params.yaml]
stages:
  b:
    wdir: ../..
    matrix:
      i: [1, 2, 3]
    cmd: python sleeper.py b${item.i} ${sleep} a.txt
    deps: [sleeper.py, a.txt]
    params: [sleep]
    outs:
      - b${item.i}.txt
"""

FAILS = "import sys\nprint('cnnscope: error: this stage always fails')\nsys.exit(2)\n"


def repair(repo: Path) -> None:
    """Make the failing stage succeed."""
    (repo / "fail.py").write_text("open('bad.txt', 'w').write('ok')\n")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git+DVC repository whose stages sleep and write their output atomically."""
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "sleeper.py").write_text(SLEEPER)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "stages/b").mkdir(parents=True)
    (repo / "stages/b/dvc.yaml").write_text(B_YAML)
    (repo / "fail.py").write_text(FAILS)
    (repo / "params.yaml").write_text("sleep: 1\nruntime: {threads: 1}\n")
    (repo / ".gitignore").write_text("*.pid\n/logs/\n")
    ident = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for command in (
        ["git", "init", "-q"],
        [str(BIN / "dvc"), "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "p"],
    ):
        subprocess.run(command, cwd=repo, check=True, env=clean_env() | ident)
    return repo


def cnnscope(repo: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "cnnscope"), "repro", *args]
    return subprocess.run(
        command, cwd=repo, env=clean_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def _default_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a blocked signal is inherited as well


def start(repo: Path, *args: str) -> subprocess.Popen[str]:
    """The runner as a terminal would start it: a process group of its own, so Ctrl-C can reach
    the whole group, and Ctrl-C's default action. Without the latter the runner inherits whatever
    this pytest worker has: an ignored (or blocked) SIGINT survives exec, and Python then never
    raises KeyboardInterrupt. That is how the Ctrl-C test failed in full-suite runs (not alone): the
    stages' shims, which set their own handlers, were interrupted, while the runner went on to the
    next stages; with SIGINT ignored in the test process it fails the same way every time."""
    command = [str(BIN / "cnnscope"), "repro", *args]
    return subprocess.Popen(command, cwd=repo, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=_default_ctrl_c)  # fmt: skip


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def gone(pids: list[int], timeout: float = 30) -> bool:
    """Whether every process in ``pids`` has exited within ``timeout`` s (a loaded machine is slow to stop them)."""
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def no_leftovers(repo: Path) -> None:
    assert not list(repo.glob(".*.tmp")), "a half-written output was left behind"
    rwlock = json.loads((repo / ".dvc/tmp/rwlock").read_text() or "{}")
    assert not rwlock.get("write") and not rwlock.get("read"), rwlock


@pytest.mark.slow
def test_a_failing_stage_stops_its_descendants_only(project: Path) -> None:
    assert outputs_missing(project)  # never run: the local workers start while DVC reads the state
    done = cnnscope(project, "-j", "2")
    assert done.returncode == 1, done.stderr
    assert "stage bad failed: cnnscope: error: this stage always fails (whole log: logs/repro/bad.log)" in done.stderr
    assert "1 stage downstream of it were not run" in done.stderr
    assert (project / "c.txt").read_text() == "ab1ab2ab3c"  # each stage saw its upstream's output
    lock = (project / "dvc.lock").read_text()
    assert all(f"  {s}:" in lock for s in ("a", "c")) and "bad" not in lock
    assert all(f"  {s}:" in (project / "stages/b/dvc.lock").read_text() for s in ("b@1", "b@2", "b@3"))
    changed = json.loads(dvc(project, "status", "--json"))
    assert set(changed) == {"bad", "after_bad"}  # everything else is recorded as dvc repro records it
    rows = list(csv.DictReader((project / "logs/repro/summary.csv").open()))
    assert {r["stage"]: r["status"] for r in rows}["after_bad"] == "not run (bad failed)"
    repair(project)
    assert cnnscope(project, "-j", "2").returncode == 0
    assert dvc(project, "status").strip() == "Data and pipelines are up to date."
    assert not outputs_missing(project)  # a re-run starts no worker before DVC says there is work
    again = cnnscope(project)
    assert again.returncode == 0 and "Everything is up to date" in again.stdout
    (project / "b2.txt").unlink()
    assert outputs_missing(project)


@pytest.mark.slow
def test_runner_and_dvc_repro_record_the_same_lock(project: Path, tmp_path: Path) -> None:
    repair(project)
    serial = tmp_path / "serial"
    subprocess.run(["cp", "-r", str(project), str(serial)], check=True)
    dvc(serial, "repro")
    assert cnnscope(project, "-j", "3").returncode == 0
    # the same entries, hashes included (DVC appends a stage's entry when it finishes, so the order
    # of the entries follows the order the stages finished in)
    for lock in ("dvc.lock", "stages/b/dvc.lock"):
        assert yaml.safe_load((project / lock).read_text()) == yaml.safe_load((serial / lock).read_text())
    assert "Stage 'a' didn't change" in dvc(project, "repro") or "up to date" in dvc(project, "repro")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_stops_every_stage_and_leaves_nothing_half_written(project: Path, how: str) -> None:
    (project / "params.yaml").write_text("sleep: 60\nruntime: {threads: 1}\n")
    runner = start(project, "-j", "2")
    wait_for(project / "b1.pid")
    wait_for(project / "b2.pid")
    stages = [int((project / f"b{i}.pid").read_text()) for i in (1, 2)]
    time.sleep(1)
    if how == "ctrl-c":
        os.killpg(runner.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    else:
        runner.terminate()  # what `kill` or a cluster's job cancel does: SIGTERM to the runner alone
    _, err = runner.communicate(timeout=120)  # a hang guard: it stops in about 20 s
    assert runner.returncode == 130, err
    assert "cnnscope: interrupted" in err and "Traceback" not in err
    assert gone(stages)
    assert not (project / "b1.txt").exists() and not (project / "b2.txt").exists()
    no_leftovers(project)
    (project / "params.yaml").write_text("sleep: 0\nruntime: {threads: 1}\n")
    finished = cnnscope(project, "-j", "2", "c")
    assert finished.returncode == 0, finished.stderr
    assert (project / "c.txt").is_file()


@pytest.mark.slow
def test_a_killed_worker_is_reported_and_its_stage_reruns_cleanly(project: Path) -> None:
    psutil = pytest.importorskip("psutil")
    # 10 s: b@1 is killed as soon as its stage has started; b@2 must finish on the other worker
    (project / "params.yaml").write_text("sleep: 10\nruntime: {threads: 1}\n")
    runner = start(project, "-j", "2", "b@1", "b@2")
    wait_for(project / "b1.pid")
    stage = int((project / "b1.pid").read_text())
    # the stage's `dvc repro` runs in a copy of the worker's warm server (cold: under the worker's shim);
    # a copy has its server's command line, so the worker is the parent of the outermost of them
    started = ("cnnscope.runner.shim", "cnnscope.runner.warm")
    hosts = [p for p in psutil.Process(stage).parents() if any(m in " ".join(p.cmdline()) for m in started)]
    hosts[-1].parent().kill()  # kill -9 of the Dask worker running b@1
    _, err = runner.communicate(timeout=120)
    assert runner.returncode == 1
    assert "stage b@1 failed: its worker died mid-stage" in err
    assert (project / "b2.txt").is_file(), err  # the other worker's stage finished and was recorded
    assert gone([stage]) and not (project / "b1.txt").exists()
    no_leftovers(project)
    (project / "params.yaml").write_text("sleep: 0\nruntime: {threads: 1}\n")
    assert cnnscope(project, "-j", "2", "c").returncode == 0
    assert dvc(project, "status", "c").strip() == "Data and pipelines are up to date."


@pytest.mark.slow
def test_a_separate_scheduler_and_two_worker_processes_run_the_study(project: Path, tmp_path: Path) -> None:
    """As on a cluster: `dask scheduler` and two `dask worker` processes, sharing the repository folder."""
    repair(project)
    address_file = tmp_path / "scheduler.json"
    command = [str(BIN / "dask"), "scheduler", "--port", "0", "--no-dashboard", "--scheduler-file", str(address_file)]
    scheduler = subprocess.Popen(command, env=clean_env(), stderr=subprocess.DEVNULL)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        wait_for(address_file)
        time.sleep(0.5)
        address = json.loads(address_file.read_text())["address"]
        for _ in range(2):
            workers.append(subprocess.Popen(dask_worker(address_file), env=clean_env(), stderr=subprocess.DEVNULL))
        time.sleep(3)
        done = cnnscope(project, "--scheduler", address)
        assert done.returncode == 0, done.stderr
        assert "on 2 workers" in done.stderr
        rows = list(csv.DictReader((project / "logs/repro/summary.csv").open()))
        assert len({r["worker"] for r in rows}) == 2  # both worker processes ran stages
        assert dvc(project, "status").strip() == "Data and pipelines are up to date."
    finally:
        for process in [*workers, scheduler]:
            process.terminate()
            process.wait(30)


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing written


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuchstage"], "cnnscope: error: unknown target 'nosuchstage'"),
        (["--scheduler", "tcp://127.0.0.1:9"], "cnnscope: error: no Dask scheduler answers at tcp://127.0.0.1:9"),
        (["--cluster", "kubernetes"], "cnnscope: error: unknown cluster 'kubernetes'"),
        (["-j", "0"], "cnnscope: error: --workers=0: give at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(project: Path, args: list[str], message: str) -> None:
    begin = time.monotonic()
    done = cnnscope(project, *args)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith(message), done.stderr
    assert time.monotonic() - begin < 30  # the scheduler check gives up within its 10 s
    assert not (project / "a.txt").exists() and not (project / "dvc.lock").exists()


@pytest.mark.slow
def test_a_stage_whose_script_is_missing_is_refused_before_anything_runs(project: Path) -> None:
    (project / "dvc.yaml").write_text(DVC_YAML.replace("python sleeper.py c 0", "python nosuch.py c 0"))
    done = cnnscope(project)
    assert done.returncode == 2
    assert "stage 'c' runs `python nosuch.py c 0 b1.txt b2.txt b3.txt`, but nosuch.py does not exist" in done.stderr
    assert not (project / "a.txt").exists()


# ---------------------------------------------------------------- what the user reads


def test_eta_spreads_the_kind_mean_over_the_workers_and_the_summary_lists_every_stage(tmp_path: Path) -> None:
    from rich.console import Console

    from cnnscope.runner.display import Progress, summary
    from cnnscope.runner.schedule import RunReport

    planned = ["train@a-0", "train@b-0", "train@c-0", "compare", "report"]
    progress = Progress(planned, workers=2, console=Console(file=open(os.devnull, "w")))  # noqa: SIM115
    assert progress.eta() is None  # nothing finished: no basis for an estimate
    progress.done(StageOutcome("train@a-0", 0, 10.0, "logs/repro/train@a-0.log", "w1"))
    # two trains left at 10 s each, compare and report at the overall mean (10 s): 40 s over 2 workers
    assert progress.eta() == pytest.approx(20.0)
    report = RunReport(
        outcomes={
            "train@a-0": StageOutcome("train@a-0", 0, 10.0, "logs/repro/train@a-0.log", "w1"),
            "train@b-0": StageOutcome("train@b-0", 2, 3.0, "logs/repro/train@b-0.log", "w2"),
        },
        blocked={"compare": "train@b-0", "report": "train@b-0"},
        lost={"train@c-0": "the worker process died"},
    )
    text = summary(planned, report, 13.0, tmp_path, "logs/repro")
    assert "failed (exit 2)" in text and "worker lost" in text and "not run (train@b-0 failed)" in text
    rows = list(csv.DictReader((tmp_path / "logs/repro/summary.csv").open()))
    assert [r["stage"] for r in rows] == planned and rows[0]["worker"] == "w1" and rows[0]["seconds"] == "10.0"
    assert report.failed == ["train@b-0", "train@c-0"]


def test_dvc_parses_its_lock_file_with_the_c_parser() -> None:
    """Each stage the runner records re-reads dvc.lock several times; the pure-Python parser made that
    seconds per stage of the default study (benchmarks/README.md). ruamel.yaml.clib is a dependency."""
    from ruamel.yaml import YAML

    assert YAML(typ="safe").Parser.__name__ == "CParser"


COUNTS_SIGINTS = """import signal, sys, time
received = []
signal.signal(signal.SIGINT, lambda *_: received.append(time.monotonic()))
open(sys.argv[1], "w").close()
deadline = time.monotonic() + 20
while time.monotonic() < deadline and (not received or time.monotonic() < received[0] + 2):
    time.sleep(0.05)
open(sys.argv[2], "w").write(str(len(received)))
"""


def test_the_shim_passes_on_one_sigint_however_often_it_is_told_to_stop(tmp_path: Path) -> None:
    """A second SIGINT would interrupt DVC's cleanup mid-way (DVC rewrites `.dvc/tmp/rwlock` in
    place; an empty one fails every later stage): the shim is told twice when its worker dies
    (SIGTERM from the kernel, and signals to the worker's group), and passes on one SIGINT."""
    (tmp_path / "child.py").write_text(COUNTS_SIGINTS)
    ready, count = tmp_path / "ready", tmp_path / "count"
    command = [str(BIN / "python"), "-m", "cnnscope.runner.shim", "--", str(BIN / "python"), "child.py", str(ready),
               str(count)]  # fmt: skip
    shim = subprocess.Popen(command, cwd=tmp_path, env=clean_env())
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    shim.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    shim.send_signal(signal.SIGINT)
    shim.send_signal(signal.SIGTERM)
    assert shim.wait(30) == 0
    assert count.read_text() == "1"


PROBE = """import os
from cnnscope.errors import run_stage

def main():  # the stage's process is a copy of the warm server (which keeps the server's command line)
    parent = open(f"/proc/{os.getppid()}/cmdline").read()
    open("probe.txt", "w").write(str("cnnscope.runner.warm" in parent))

if __name__ == "__main__":
    run_stage(main)
"""


#: A stage that runs where DVC started it (no hand-off) and writes whether the DVC above it is a
#: copy of the warm server (which keeps the server's command line).
DVC_PROBE = """import os

def ancestors(pid):
    while pid > 1:
        yield open(f"/proc/{pid}/cmdline").read().replace("\\0", " ")
        pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])

open("dvc_probe.txt", "w").write(str(any("cnnscope.runner.warm" in c for c in ancestors(os.getppid()))))
"""


def test_stages_and_their_dvc_start_from_the_warm_server_unless_cold(project: Path) -> None:
    """The probe stage runs in a copy of the worker's warm server, and the other probe finds the
    `dvc repro` that started it running in one too; with --cold neither does."""
    (project / "probe.py").write_text(PROBE)
    (project / "dvc_probe.py").write_text(DVC_PROBE)
    with (project / "dvc.yaml").open("a") as fh:
        fh.write("  probe:\n    cmd: python probe.py\n    deps: [probe.py]\n    outs: [probe.txt]\n")
        fh.write("  dvc_probe:\n    cmd: python dvc_probe.py\n    deps: [dvc_probe.py]\n    outs: [dvc_probe.txt]\n")
    assert cnnscope(project, "probe", "dvc_probe", "-j", "1").returncode == 0
    assert (project / "probe.txt").read_text() == "True"
    assert (project / "dvc_probe.txt").read_text() == "True"
    assert cnnscope(project, "probe", "dvc_probe", "-j", "1", "--force", "--cold").returncode == 0
    assert (project / "probe.txt").read_text() == "False"
    assert (project / "dvc_probe.txt").read_text() == "False"


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no scheduler autogroups on this kernel")
def test_a_niced_runner_runs_its_stages_niced(tmp_path: Path) -> None:
    """Each stage runs in a session of its own, which Linux schedules as its own autogroup at nice 0
    whatever its processes' nice value: `nice cnnscope repro` must reach the stage's group."""
    psutil = pytest.importorskip("psutil")
    ready = tmp_path / "ready"
    child = "import sys, time; open(sys.argv[1], 'w').close(); time.sleep(30)"
    command = ["nice", "-n", "7", str(BIN / "python"), "-m", "cnnscope.runner.shim", "--", str(BIN / "python"), "-c",
               child, str(ready)]  # fmt: skip
    shim = subprocess.Popen(command, env=clean_env())
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        (stage,) = psutil.Process(shim.pid).children()
        expected = min(19, os.nice(0) + 7)  # `nice -n 7` adds to the niceness the tests run at
        assert Path(f"/proc/{stage.pid}/autogroup").read_text().split()[-1] == str(expected)
    finally:
        shim.send_signal(signal.SIGTERM)
        shim.wait(30)
