"""Bad input and faults as a set (issue 24, item 6): a fresh copy of the repository with the tiny study,
then each case under a direct stage run and under DVC, tabulated.

    python benchmarks/hostile_cases.py                 # every case, both ways (about 30-60 min on 2 cores)
    python benchmarks/hostile_cases.py -k lr -k kill   # cases whose name contains 'lr' or 'kill'
    python benchmarks/hostile_cases.py --json out.json # also the rows as JSON

Per case and way (``direct``: ``python pipelines/<stage>.py`` on an edited ``params.yaml``, or
``python -m cnnscope.compose`` for a config group; ``dvc``: ``dvc exp run -S …`` / ``dvc repro``):
the exit code; whether the message is one clear line (exactly one ``cnnscope: error:`` line, holding
the expected key or fix); whether a Python traceback appeared; and what became of the outputs of the
earlier good run (every file outside git, DVC's and MLflow's folders, hashed before and after):
``kept``, ``restorable`` (DVC removed them before the stage ran; ``dvc checkout`` brings them back)
or ``LOST``; and half-written leftovers (``.<name>.*.tmp``). A case that must be rejected and exits 0
is a *silent wrong result*.

Exit status 1 when any case has a traceback, a silent wrong result, lost outputs, a leftover, an
unclear message, or a rejected *setting* that cost DVC-removed outputs (a setting must stop at the
``validate`` stage, before DVC touches any other stage; faults while a stage works — a kill, a lost
store — may leave DVC-removed outputs that ``dvc checkout`` restores, as the README says).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from cnnscope.compose import compose_params  # noqa: E402
from pipeline import BIN, TINY, clean_env, copy_of_repo, dvc_target  # noqa: E402

GIT_ID = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
#: What is not an output of a stage: git's, DVC's and MLflow's own folders and the config.
NOT_OUTPUTS = {".git", ".dvc", "mlflow.db", "mlflow.db-journal", "mlartifacts", "mlruns", "params.yaml", "dvc.lock"}
#: The validate stage's own marker: DVC removes it when validate runs, and validate rewrites the same
#: bytes on the next valid run (prepare does not re-run for it), so it is not an output a case can lose.
NOT_OUTPUTS |= {".validated"}
#: The baseline's stages, as DVC names them.
BASELINE = (dvc_target("train@benchmark-0"), dvc_target("train@untrained-0"))
TRAIN = ("train", "--variant", "benchmark", "--seed", "0", "--no-progress")
TIMEOUT = 600


@dataclasses.dataclass
class Case:
    name: str
    category: str
    #: a Hydra override (``key=value`` or ``group=option``) for the setting cases
    override: str | None = None
    #: the direct stage command (pipelines/<stage>.py args)
    stage: tuple[str, ...] = TRAIN
    #: the DVC command (after ``dvc``); default: ``exp run -S <TINY> -S <override> train@benchmark-0``
    dvc: tuple[str, ...] | None = None
    #: every one must be in the one error line
    needles: tuple[str, ...] = ()
    #: extra environment
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    #: more overrides that make a valid change (so DVC re-runs the stage), before ``override``
    extra: tuple[str, ...] = ()
    #: a callable (repo, workdir) → None run before each way, e.g. to write a bad data folder
    setup: Callable[[Path, Path], None] | None = None
    #: a callable that runs the case itself (repo, way, env) → (rc, output); for processes and signals
    custom: Callable[[Path, str, dict[str, str]], tuple[int, str]] | None = None
    ways: tuple[str, ...] = ("direct", "dvc")
    #: "reject": must fail with one clear line; "accept": must succeed (a natural sweep)
    expect: str = "reject"
    #: the setup damages an output of the baseline (restored from DVC's cache afterwards)
    damages: bool = False


# ------------------------------------------------------------------------------ helpers


def run(cmd: list[str], repo: Path, env: dict[str, str], timeout: int = TIMEOUT) -> tuple[int, str]:
    try:
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        return 124, out + f"\n[timed out after {timeout} s]"
    return proc.returncode, proc.stdout + proc.stderr


def outputs(repo: Path) -> dict[str, str]:
    """Every file of ``repo`` that git does not track, outside git's, DVC's and MLflow's folders and
    the working folders of interrupted training runs, with its SHA-256."""
    tracked = set(
        subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, text=True, check=True).stdout.split(
            "\0"
        )
    )
    found = {}
    for path in sorted(repo.rglob("*")):
        rel = path.relative_to(repo)
        not_output = rel.parts[0] in NOT_OUTPUTS or rel.name == "dvc.lock" or ".partial" in str(rel)
        if not_output or not path.is_file() or str(rel) in tracked:
            continue
        if path.name.startswith(".") and path.name.endswith(".mlflow.json"):  # MLflow bookkeeping, not DVC's
            continue
        found[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def leftovers(repo: Path) -> list[str]:
    return [
        str(p.relative_to(repo))
        for p in repo.rglob("*")
        if p.name.endswith(".tmp") and p.name.startswith(".") and ".git" not in p.parts and ".dvc" not in p.parts
    ]


def set_raw(repo: Path, override: str) -> None:
    """``key.sub=value`` written into params.yaml as it is (no composition, no validation)."""
    key, _, value = override.partition("=")
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    node = raw
    *parents, last = key.lstrip("+").split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = yaml.safe_load(value)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw))


def is_group(override: str) -> bool:
    key = override.split("=", 1)[0].lstrip("+~")
    return "." not in key and (REPO / "conf" / key).is_dir()


def tiny_s() -> list[str]:
    return [a for o in TINY for a in ("-S", o)]


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env=clean_env() | GIT_ID)


# ------------------------------------------------------------------------------ bad data folders


def image_tree(root: Path, classes: dict[str, int], size: int = 20, mode: str = "L") -> Path:
    from PIL import Image

    for k, (name, n) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new(mode, (size, size), color=(k * 20 + i) % 255 if mode == "L" else (k * 20, i, 0)).save(
                root / name / f"{i}.png"
            )
    return root


def folder_setup(kind: str) -> Callable[[Path, Path], None]:
    def setup(repo: Path, work: Path) -> None:
        target = work / f"data-{kind}"
        if target.exists():
            return
        if kind == "empty-class":
            image_tree(target, {"a": 30, "b": 30})
            (target / "c").mkdir()
        elif kind == "corrupt-image":
            image_tree(target, {"a": 30, "b": 30})
            (target / "a" / "bad.png").write_bytes(b"\x89PNG not really")
        elif kind == "no-classes":
            target.mkdir()
            (target / "readme.txt").write_text("no images")
        elif kind == "mixed-sizes":
            image_tree(target, {"a": 30})
            image_tree(target, {"b": 30}, size=24)  # with data.image_size=null: nothing to resize them to
        elif kind == "small-images":  # 20×20, no image_size: oip.maps is checked against the real size
            image_tree(target, {str(k): 20 for k in range(4)})
        elif kind == "truncated-tar":
            tree = image_tree(work / "tree-for-tar", {"a": 30, "b": 30})
            tarball = work / "data-truncated-tar.tar.gz"
            with tarfile.open(tarball, "w:gz") as tar:
                tar.add(tree, arcname=".")
            tarball.write_bytes(tarball.read_bytes()[:300])
            target.mkdir()  # marker
        elif kind == "mnist-missing":
            (target / "MNIST" / "raw").mkdir(parents=True)
        elif kind == "mnist-swapped":  # the training images and labels files under each other's names
            raw = target / "MNIST" / "raw"
            raw.mkdir(parents=True)
            n = 20
            images = b"\x00\x00\x08\x03" + b"".join(x.to_bytes(4, "big") for x in (n, 28, 28)) + bytes(n * 784)
            labels = b"\x00\x00\x08\x01" + n.to_bytes(4, "big") + bytes(k % 10 for k in range(n))
            (raw / "train-images-idx3-ubyte").write_bytes(labels)
            (raw / "train-labels-idx1-ubyte").write_bytes(images)
            (raw / "t10k-images-idx3-ubyte").write_bytes(images)
            (raw / "t10k-labels-idx1-ubyte").write_bytes(labels)
        else:
            raise ValueError(kind)

    return setup


# ------------------------------------------------------------------------------ processes and signals


def _train_then_signal(repo: Path, way: str, env: dict[str, str], sig: int) -> tuple[int, str]:
    """A long training run, signalled once its first epoch's last.ckpt is written."""
    if way == "direct":
        set_raw(repo, "trainer.max_epochs=200")
        set_raw(repo, "trainer.patience=200")
        cmd = [str(BIN / "python"), "pipelines/train.py", "--variant", "benchmark", "--seed", "0", "--no-progress"]
    else:
        over = ["-S", "trainer.max_epochs=200", "-S", "trainer.patience=200"]
        cmd = [str(BIN / "dvc"), "exp", "run", *tiny_s(), *over, dvc_target("train@benchmark-0")]
    with tempfile.TemporaryFile(mode="w+") as log:
        # a terminal's job, whatever this script inherited: a background job (nohup … &) starts with SIGINT
        # ignored, and an ignored signal stays ignored across exec
        restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
        proc = subprocess.Popen(
            cmd, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=restore
        )
        marker = repo / "models/benchmark/.seed0.partial/last.ckpt"
        deadline = time.monotonic() + 300
        while not marker.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if proc.poll() is None:
            # kill -9 of the job (and, under DVC, of the stage it started); Ctrl-C in a terminal reaches
            # the whole process group
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.seek(0)
        return proc.returncode, log.read()


def kill9(repo: Path, way: str, env: dict[str, str]) -> tuple[int, str]:
    return _train_then_signal(repo, way, env, signal.SIGKILL)


def ctrl_c(repo: Path, way: str, env: dict[str, str]) -> tuple[int, str]:
    return _train_then_signal(repo, way, env, signal.SIGINT)


def locked_store(repo: Path, way: str, env: dict[str, str]) -> tuple[int, str]:
    """The MLflow store held by another writer (an exclusive SQLite transaction) for the whole run."""
    db = sqlite3.connect(repo / "mlflow.db", timeout=1, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        if way == "direct":
            set_raw(repo, "trainer.max_epochs=2")
            return run([str(BIN / "python"), *stage_cmd(TRAIN)], repo, env, timeout=400)
        return run(
            [str(BIN / "dvc"), "exp", "run", *tiny_s(), "-S", "trainer.max_epochs=2", dvc_target("train@benchmark-0")],
            repo,
            env,
            timeout=400,
        )
    finally:
        db.execute("ROLLBACK")
        db.close()


def stage_cmd(stage: tuple[str, ...]) -> list[str]:
    return [f"pipelines/{stage[0]}.py", *stage[1:]]


# ------------------------------------------------------------------------------ the cases


def cases() -> list[Case]:
    c: list[Case] = []

    def setting(name: str, override: str, stage: tuple[str, ...] = TRAIN, *needles: str, **kw: Any) -> None:
        c.append(
            Case(name, "setting", override=override, stage=stage, needles=needles or (override.split("=")[0],), **kw)
        )

    oip = ("oip", "--variant", "benchmark", "--seed", "0")
    exe = ("exemplars", "--variant", "benchmark", "--seed", "0")
    # one or more bad values of every config group (each stage checks every section before its work)
    setting("model-lr-negative", "model.lr=-0.001", TRAIN, "model.lr=-0.001")
    setting("model-dropout", "model.dropout=1.5", TRAIN, "model.dropout=1.5")
    setting("model-width-zero", "model.width=0", TRAIN, "model.width")
    setting("trainer-epochs-zero", "trainer.max_epochs=0", TRAIN, "trainer.max_epochs=0")
    setting("trainer-epochs-word", "trainer.max_epochs=many", TRAIN, "trainer.max_epochs")
    setting("trainer-misspelt-key", "+trainer.max_epoch=3", TRAIN, "trainer.max_epoch")
    setting("trainer-batch-zero", "trainer.batch_size=0", TRAIN, "trainer.batch_size=0")
    setting("trainer-accelerator", "trainer.accelerator=tpu", TRAIN, "trainer.accelerator=tpu")
    setting("trainer-checkpoint-unsorted", "trainer.checkpoint_steps=[5,2]", TRAIN, "trainer.checkpoint_steps")
    setting("trainer-checkpoint-beyond", "trainer.checkpoint_steps=[0,100000]", TRAIN, "trainer.checkpoint_steps")
    setting("data-val-fraction", "data.val_fraction=2", ("prepare",), "data.val_fraction")
    setting("data-subset-zero", "data.subsets=[0]", ("prepare",), "data.subsets")
    setting("study-seeds-repeated", "study.seeds=[0,0]", TRAIN, "study.seeds")
    setting("study-unknown-variant", "study.variants=[benchmark,nosuch]", TRAIN, "nosuch")
    setting("study-contrast", "study.contrasts=[[benchmark,nosuch]]", TRAIN, "study.contrasts")
    setting("study-name-escapes", "study.name=../../escaped", TRAIN, "study.name")
    setting("study-step-match-full", "study.variant_specs.untrained.match_steps_of=benchmark", TRAIN, "match_steps_of")
    setting(
        "extract-eval-negative",
        "extract.eval_samples=-1",
        ("extract", "--variant", "benchmark", "--seed", "0"),
        "extract.eval_samples",
    )
    setting("compare-bins-zero", "compare.bins=0", ("compare",), "compare.bins=0")
    setting("oip-restarts-one", "oip.restarts=1", oip, "oip.restarts=1")
    setting("oip-steps-zero", "oip.steps=0", oip, "oip.steps=0")
    setting("oip-maps-range", "oip.maps=[0,500]", oip, "oip.maps")
    setting("oip-step-nan", "oip.step_size=nan", oip, "oip.step_size", "finite")
    setting("exemplars-k-huge", "exemplars.k=5000", exe, "exemplars.k")
    setting("exemplars-out-outside", "exemplars.out_dir=/tmp/cnnscope-hostile", exe, "exemplars.out_dir")
    setting("atlas-out-outside", "atlas.out_dir=../atlas-escaped", ("atlas",), "atlas.out_dir")
    setting(
        "trajectory-eval-zero",
        "trajectory.eval_samples=0",
        ("trajectory", "--variant", "benchmark", "--seed", "0"),
        "trajectory.eval_samples",
    )
    setting("tracking-uri-missing-dir", "tracking.uri=sqlite:////nonexistent/dir/mlflow.db", TRAIN, "does not exist")
    setting("runtime-threads", "runtime.threads=-3", TRAIN, "runtime.threads")
    # config groups: an unknown option
    for group, option in [("model", "resnet"), ("data", "imagenet"), ("experiment", "nosuch"), ("oip", "fancy")]:
        setting(f"group-{group}", f"{group}={option}", TRAIN, option)  # ours, or Hydra's through DVC
    # a natural sweep that must work
    c.append(
        Case(
            "sweep-oip-steps",
            "setting",
            override="oip.steps=2",
            stage=oip,
            expect="accept",
            ways=("dvc",),
            dvc=("exp", "run", *tiny_s(), "-S", "oip.steps=2", dvc_target("oip@benchmark-0")),
        )
    )
    # bad data folders (prepare)
    for kind, needle in [
        ("empty-class", "hold no images"),
        ("corrupt-image", "cannot read image"),
        ("no-classes", "no class folders"),
        ("mixed-sizes", "differ in size"),
        ("truncated-tar", "truncated or corrupt"),
    ]:
        root = f"data-{kind}" + (".tar.gz" if kind == "truncated-tar" else "")
        size = ("data.image_size=null",) if kind == "mixed-sizes" else ()
        c.append(
            Case(
                f"imagefolder-{kind}",
                "data-content",
                override=f"data.root=WORK/{root}",
                extra=("data=imagefolder", *size),
                stage=("prepare",),
                needles=(needle,),
                setup=folder_setup(kind),
            )
        )
    c.append(
        Case(
            "imagefolder-missing-root",
            "data",
            override="data.root=/no/such/folder",
            extra=("data=imagefolder",),
            stage=("prepare",),
            needles=("data.root",),
        )
    )
    c.append(
        Case(
            "imagefolder-oip-maps-no-size",
            "data",
            override="oip.maps=[0,500]",
            extra=("data=imagefolder", "data.root=WORK/data-small-images", "data.image_size=null"),
            stage=("prepare",),
            needles=("oip.maps",),
            setup=folder_setup("small-images"),
        )
    )
    for kind, needle in [("missing", "data.root"), ("swapped", "1-D data")]:  # MNIST's IDX files
        c.append(
            Case(
                f"mnist-{kind}-files",
                "data-content",
                override=f"data.root=WORK/data-mnist-{kind}",
                extra=("data=mnist",),
                stage=("prepare",),
                needles=(needle,),
                setup=folder_setup(f"mnist-{kind}"),
            )
        )
    # MLflow store faults (a valid change of training settings, so the train stage runs)
    for name, uri, needle in [
        ("mlflow-missing-dir", "sqlite:////nonexistent/dir/mlflow.db", "does not exist"),
        ("mlflow-unreachable", "http://127.0.0.1:9", "does not answer"),
    ]:
        c.append(
            Case(name, "fault", override="trainer.max_epochs=2", env={"MLFLOW_TRACKING_URI": uri}, needles=(needle,))
        )
    c.append(Case("mlflow-locked", "fault", custom=locked_store, needles=("mlflow",)))
    # processes
    c.append(Case("kill-9-training", "fault", custom=kill9, needles=()))
    c.append(Case("ctrl-c-training", "fault", custom=ctrl_c, needles=("interrupted",)))
    # damaged inputs of a stage
    # (direct only: under DVC a changed output is a changed dependency, and DVC rebuilds it)
    c.append(
        Case(
            "truncated-checkpoint",
            "fault",
            stage=("extract", "--variant", "benchmark", "--seed", "0"),
            setup=lambda repo, work: _truncate(repo / "models/benchmark/seed0/best.ckpt"),
            ways=("direct",),
            damages=True,
            needles=("truncated",),
        )
    )
    c.append(
        Case(
            "truncated-dataset",
            "fault",
            stage=TRAIN,
            ways=("direct",),
            damages=True,
            setup=lambda repo, work: _truncate(repo / "data/prepared/dataset.pt"),
            needles=("dataset.pt",),
        )
    )
    # the runner
    for name, argv, needle in [
        ("unknown-target", ("nosuch@stage",), "nosuch@stage"),
        ("bad-scheduler", ("--scheduler", "tcp://127.0.0.1:9", "--force", "train@untrained-0"), "tcp://127.0.0.1:9"),
        ("bad-cluster", ("--cluster", "k8s", "train@benchmark-0"), "k8s"),
        ("bad-override", ("-o", "runner.workers=-1", "train@benchmark-0"), "runner.workers"),
    ]:
        c.append(Case(f"repro-{name}", "runner", ways=("dvc",), dvc=("CNNSCOPE", "repro", *argv), needles=(needle,)))
    return c


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.unlink()  # DVC links outputs to its cache: never write through the link
    path.write_bytes(data[: len(data) // 3])


# ------------------------------------------------------------------------------ running a case


def baseline(work: Path) -> Path:
    repo = copy_of_repo(work / "repo")
    (repo / "params.yaml").write_text(yaml.safe_dump(compose_params(TINY)))
    env = clean_env() | GIT_ID
    rc, out = run([str(BIN / "dvc"), "repro", *BASELINE], repo, env, timeout=1800)
    if rc != 0:
        raise SystemExit(f"the baseline failed:\n{out[-3000:]}")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tiny study, trained")
    return repo


def restore(repo: Path, before: dict[str, str]) -> tuple[str, list[str]]:
    """Back to the baseline. Returns what the case did to the earlier outputs (``kept``, ``restorable``:
    DVC removed them and ``dvc checkout`` brings them back, or ``LOST``) and the files it added."""
    env = clean_env() | GIT_ID
    locks = subprocess.run(["git", "ls-files", "dvc.lock", "*/dvc.lock"], cwd=repo, capture_output=True, text=True)
    for name in ("params.yaml", *locks.stdout.split()):  # not `git checkout`: see git_sees_params
        committed = subprocess.run(["git", "show", f"HEAD:{name}"], cwd=repo, capture_output=True, check=True)
        (repo / name).write_bytes(committed.stdout)
    subprocess.run(["git", "update-index", "--refresh", "-q"], cwd=repo, capture_output=True, check=False)
    for partial in repo.glob("models/*/.seed*.partial"):
        subprocess.run(["rm", "-rf", str(partial)], check=True)
    now = outputs(repo)
    added = sorted(set(now) - set(before))
    for name in added:
        (repo / name).unlink()
    if all(now.get(k) == v for k, v in before.items()):
        return "kept", added
    run([str(BIN / "dvc"), "checkout", "-f"], repo, env)
    now = outputs(repo)
    if all(now.get(k) == v for k, v in before.items()):
        return "restorable", added
    gone = sorted(k for k, v in before.items() if now.get(k) != v)
    run([str(BIN / "dvc"), "repro", *BASELINE], repo, env, timeout=1800)
    return f"LOST ({len(gone)}: {', '.join(gone[:2])})", added


def run_case(case: Case, way: str, repo: Path, work: Path) -> dict[str, Any]:
    env = clean_env() | GIT_ID | case.env
    if case.setup:
        case.setup(repo, work)
    over = [o.replace("WORK", str(work)) for o in (*case.extra, *([case.override] if case.override else []))]
    before, start = outputs(repo), time.monotonic()
    params_before = (repo / "params.yaml").read_text()
    if case.custom:
        rc, out = case.custom(repo, way, env)
    elif way == "direct":
        if any(is_group(o) for o in over):
            cmd = [str(BIN / "python"), "-m", "cnnscope.compose", *TINY, *over]
            rc, out = run(cmd, repo, env)
            if rc == 0:  # composed: now the stage on the composed params
                rc, out = run([str(BIN / "python"), *stage_cmd(case.stage)], repo, env)
        else:
            for o in over:
                set_raw(repo, o)
            rc, out = run([str(BIN / "python"), *stage_cmd(case.stage)], repo, env)
    else:
        sets = (a for o in over for a in ("-S", o))
        args = case.dvc or ("exp", "run", *tiny_s(), *sets, BASELINE[0])
        args = tuple(a.replace("WORK", str(work)) for a in args)
        cmd = [str(BIN / "cnnscope"), *args[1:]] if args[0] == "CNNSCOPE" else [str(BIN / "dvc"), *args]
        rc, out = run(cmd, repo, env)
    seconds = time.monotonic() - start
    left = leftovers(repo)
    params_kept = (repo / "params.yaml").read_text() == params_before
    rwlock = repo / ".dvc/tmp/rwlock"
    stale_lock = rwlock.is_file() and any(json.loads(rwlock.read_text() or "{}").values())
    # after a failed `dvc exp run`, does git see that params.yaml differs from the committed one?
    committed = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=repo, capture_output=True, check=True).stdout
    differs = (repo / "params.yaml").read_bytes() != committed
    status = subprocess.run(["git", "status", "--porcelain", "params.yaml"], cwd=repo, capture_output=True, text=True)
    git_sees_params = None if not differs else bool(status.stdout.strip())
    fate, added = restore(repo, before)
    if case.damages:  # the damaged input back from DVC's cache for the next case
        run([str(BIN / "dvc"), "checkout", "-f"], repo, env)
    row = {
        "case": case.name,
        "category": case.category,
        "way": way,
        "exit": rc,
        "traceback": "Traceback (most recent call last)" in out,
        "outputs": fate if case.expect == "reject" else "changed (accepted)",
        "leftovers": left,
        "new_files": added if case.expect == "reject" else len(added),
        "stale_dvc_lock": stale_lock,
        "git_sees_params": git_sees_params,
        "params_kept": params_kept,
        "seconds": round(seconds, 1),
        "tail": out[-1500:].replace(str(work), "WORK"),
    }
    return judge(row, case)


def judge(row: dict[str, Any], case: Case) -> dict[str, Any]:
    """The message and the problems of ``row`` (the facts one run of ``case`` left)."""
    lines = row["tail"].splitlines()
    ours = [line for line in lines if "cnnscope: error:" in line or "cnnscope: interrupted:" in line]
    # DVC refuses some settings itself, before any stage runs (Hydra's composition, its own graph):
    # then its one `ERROR:` line is the message
    theirs = [line for line in lines if line.startswith("ERROR:")] if row["way"] == "dvc" and not ours else []
    message = (ours or theirs or lines[-1:] or [""])[0]
    row["message_from"] = "cnnscope" if ours else "DVC" if theirs else "-"
    row["message"] = message[message.find("cnnscope:") if ours else 0 :][:200]
    if case.expect == "accept":
        row["clear"] = None
    elif case.name == "kill-9-training":
        row["clear"] = True  # SIGKILL leaves no chance to say anything
    else:
        row["clear"] = len(ours or theirs) == 1 and all(n in message for n in case.needles)
    fate = row["outputs"]
    silent = case.expect == "reject" and row["exit"] == 0
    # a setting (or a data folder that is not there) must stop at the validate stage; a data folder's
    # content is read by prepare only, after DVC removed data/prepared (dvc checkout restores it)
    setting_cost = case.expect == "reject" and case.category in ("setting", "data") and fate == "restorable"
    row["problem"] = ", ".join(
        p
        for p, bad in [
            ("traceback", row["traceback"]),
            ("silent wrong result", silent),
            ("rejected a valid run", case.expect == "accept" and row["exit"] != 0),
            ("outputs lost", fate.startswith("LOST")),
            ("setting cost outputs", setting_cost),
            ("leftovers", bool(row["leftovers"])),
            ("wrote files although rejected", case.expect == "reject" and bool(row["new_files"])),
            ("unclear message", case.expect == "reject" and row["exit"] != 0 and not row["clear"]),
        ]
        if bad
    )
    return row


def table(rows: list[dict[str, Any]]) -> str:
    head = "| case | way | exit | one clear line | traceback | earlier outputs | leftovers | problem | message (from) |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        clear = "—" if r["clear"] is None else ("yes" if r["clear"] else "**no**")
        message = ""
        if r["clear"] is not None:
            text = r["message"].removeprefix("cnnscope: error: ").replace("|", "/").replace("`", "'")[:110]
            message = f"{text} ({r['message_from']})"
        lines.append(
            f"| {r['case']} | {r['way']} | {r['exit']} | {clear} | {'**yes**' if r['traceback'] else 'no'} | "
            f"{r['outputs']} | {len(r['leftovers']) or 'none'} | {r['problem'] or 'ok'} | {message} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-k", action="append", default=[], help="only cases whose name contains this (repeatable)")
    parser.add_argument("--way", choices=["direct", "dvc"], help="only this way")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    parser.add_argument("--table-from", type=Path, help="only judge and tabulate the rows of an earlier --json")
    args = parser.parse_args()
    if args.table_from:
        by_name = {c.name: c for c in cases()}
        rows = [judge(r, by_name[r["case"]]) for r in json.loads(args.table_from.read_text())]
        print(table(rows))
        return 1 if any(r["problem"] for r in rows) else 0
    chosen = [c for c in cases() if not args.k or any(k in c.name for k in args.k)]
    work = Path(tempfile.mkdtemp(prefix="cnnscope-hostile-"))
    start = time.monotonic()
    repo = baseline(work)
    print(f"baseline in {work} after {time.monotonic() - start:.0f} s; {len(chosen)} cases", flush=True)
    rows = []
    for case in chosen:
        for way in case.ways:
            if args.way and way != args.way:
                continue
            row = run_case(case, way, repo, work)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))
    bad = [r for r in rows if r["problem"]]
    print(
        f"\n{len(rows)} runs of {len(chosen)} cases in {time.monotonic() - start:.0f} s: "
        f"{sum(r['traceback'] for r in rows)} tracebacks, {len(bad)} with a problem"
    )
    if not args.keep:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
