"""Bad input and faults (issue 16): each ends in one message naming the problem and the fix, a
non-zero exit, the previous good outputs intact and no temporary leftovers.

Stages run as DVC would (:func:`pipeline.run_stage_as_dvc`, in-process) in a repository-like
folder holding tiny synthetic data, one earlier good output per stage and its own MLflow store;
only the cases about processes (Ctrl-C, ``python -m cnnscope.compose``) start a subprocess.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from cnnscope import tracking
from cnnscope.config import ConfigError, load_params, to_container, validate
from cnnscope.errors import INTERRUPTED, run_stage
from cnnscope.io import atomic_dir, atomic_write, file_sha256
from cnnscope.layout import LAST_CKPT, MANIFEST, OIP_TENSORS, best_checkpoint, run_dir
from cnnscope.models import CheckpointError, load_model, save_checkpoint
from conftest import REPO_ROOT, random_model, synthetic_prepared
from pipeline import clean_env, run_stage_as_dvc
from test_data import make_mnist_tree

PIPELINES = REPO_ROOT / "pipelines"
UNREACHABLE = "http://127.0.0.1:9"
#: What the MLflow store and the config are made of: not stage outputs.
NOT_OUTPUTS = ("mlflow.db", "mlflow.db.lock", "mlartifacts", "params.yaml")

Stage = Callable[..., tuple[int, str]]


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Prepared synthetic data, an earlier good output of every stage, a 1-epoch CPU params.yaml
    and an MLflow store of its own."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith(("MLFLOW_", "DVC_"))]:
        monkeypatch.delenv(name)
    for name in [*tracking.HTTP_DEFAULTS, "MLFLOW_TRACKING_URI"]:
        monkeypatch.delenv(name, raising=False)  # restores whatever preflight sets
    prepared = synthetic_prepared()
    dataset = prepared.save(tmp_path / "data" / "prepared")
    manifest = {"dataset_sha256": file_sha256(dataset), "source": "synthetic"}
    (dataset.parent / MANIFEST).write_text(json.dumps(manifest))
    save_checkpoint(random_model(prepared), best_checkpoint(tmp_path / "models", "benchmark", 0))
    for marker in (f"activations/benchmark/seed0/{MANIFEST}", "compare/index.json", "oip/benchmark/seed0/index.json"):
        (tmp_path / marker).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / marker).write_text('{"earlier": "good output"}\n')
    raw = to_container(load_params(REPO_ROOT / "params.yaml"))
    raw["trainer"].update(max_epochs=1, batch_size=32, accelerator="cpu", devices="1", log_every_n_steps=1)
    raw["extract"].update(eval_samples=20, batch_size=16)
    raw["oip"].update(maps=[0, 1], restarts=2, wavelengths=[1, 4], steps=2, snapshots=[0, 2])
    raw["tracking"]["uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path


def set_params(root: Path, **sections: dict[str, Any]) -> None:
    raw = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in sections.items():
        raw[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))


@pytest.fixture
def stage(capsys: pytest.CaptureFixture[str]) -> Stage:
    """Run ``pipelines/<name>.py args...`` as DVC would (:func:`pipeline.run_stage_as_dvc`), ``env``
    set in the shell that runs it; returns (exit status, stderr)."""

    def run(name: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        capsys.readouterr()
        code = run_stage_as_dvc(name, args, env=env)
        return code, capsys.readouterr().err

    return run


def outputs(root: Path) -> dict[str, str]:
    """Every output file under ``root`` with its SHA-256 (not the MLflow store, not working folders)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] not in NOT_OUTPUTS and ".partial" not in str(p)
    }


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".tmp", ".old"))]


def one_message(code: int, err: str, *needles: str, lines: int | None = 1) -> str:
    """Exit status 2, one ``cnnscope: error:`` line (the last; Lightning may log before it) that
    contains every needle, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("cnnscope: error: "), err
    if lines is not None:
        assert len(err.strip().splitlines()) == lines, err
    for needle in needles:
        assert needle in last, last
    return last


def store(root: Path) -> Any:
    return tracking.client(f"sqlite:///{root / 'mlflow.db'}")


def new_run(root: Path, status: str | None = None) -> str:
    """A run in the repository's store (``RUNNING`` unless ``status`` ends it)."""
    client = store(root)
    exp = client.get_experiment_by_name("cnnscope")
    exp_id = exp.experiment_id if exp else client.create_experiment("cnnscope")
    run_id = str(client.create_run(exp_id).info.run_id)
    if status:
        client.set_terminated(run_id, status)
    return run_id


def status(root: Path, run_id: str) -> str:
    return str(store(root).get_run(run_id).info.status)


# ---------------------------------------------------------------- 1. MLflow unreachable


@pytest.mark.parametrize(
    "args",
    [
        ("train", "--variant", "benchmark", "--seed", "0", "--no-progress"),
        ("compare",),
        ("oip", "--variant", "benchmark", "--seed", "0"),
        ("report",),
    ],
    ids=["train", "compare", "oip", "report"],
)
def test_unreachable_mlflow_server_fails_in_seconds_before_any_work(
    repo: Path, stage: Stage, args: tuple[str, ...]
) -> None:
    import lightning  # noqa: F401  # the stage's imports are not what is timed (seconds on a loaded machine)
    import mlflow.tracking  # noqa: F401

    set_params(repo, tracking={"uri": None})
    before, start = outputs(repo), time.monotonic()
    code, err = stage(*args, env={"MLFLOW_TRACKING_URI": UNREACHABLE})
    assert time.monotonic() - start < 30
    one_message(code, err, UNREACHABLE, "does not answer", "mlflow server", "unset MLFLOW_TRACKING_URI")
    assert outputs(repo) == before and not leftovers(repo)


# ---------------------------------------------------------------- 2. bad training settings


@pytest.mark.parametrize(
    ("section", "values", "needle"),
    [
        ("model", {"lr": -0.1}, "model.lr=-0.1"),
        ("trainer", {"max_epochs": 0}, "trainer.max_epochs=0"),
        ("trainer", {"batch_size": 0}, "trainer.batch_size=0"),
        ("model", {"dropout": 1.5}, "model.dropout=1.5"),
        ("trainer", {"accelerator": "tpu"}, "trainer.accelerator=tpu"),
    ],
    ids=["negative-lr", "zero-epochs", "zero-batch", "dropout", "missing-accelerator"],
)
def test_bad_training_settings_fail_up_front_and_keep_the_last_good_model(
    repo: Path, stage: Stage, section: str, values: dict[str, Any], needle: str
) -> None:
    _train_fails_before_any_work(repo, stage, section, values, needle)


def _train_fails_before_any_work(repo: Path, stage: Stage, section: str, values: dict[str, Any], needle: str) -> None:
    """The train stage under ``section: values`` says ``needle`` in one line, and leaves every output,
    no half-written file and no tracking store (it failed before the store was touched)."""
    set_params(repo, **{section: values})
    before = outputs(repo)
    one_message(*stage("train", "--variant", "benchmark", "--seed", "0", "--no-progress"), needle)
    assert outputs(repo) == before and not leftovers(repo)
    assert not (repo / "mlflow.db").exists()


def test_gpu_accelerator_on_a_machine_without_one_is_a_config_error(repo: Path, stage: Stage) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    set_params(repo, trainer={"accelerator": "gpu"})
    before = outputs(repo)
    one_message(
        *stage("train", "--variant", "benchmark", "--seed", "0", "--no-progress"), "trainer.accelerator=gpu", "auto"
    )
    assert outputs(repo) == before


def test_diverging_training_fails_and_keeps_the_last_good_model(repo: Path, stage: Stage) -> None:
    set_params(repo, model={"lr": 1e6})
    before = outputs(repo)
    one_message(
        *stage("train", "--variant", "benchmark", "--seed", "0", "--no-progress"), "NaN", "lower model.lr", lines=None
    )
    assert outputs(repo) == before and not leftovers(repo)
    (run,) = store(repo).search_runs(["1"], filter_string="tags.variant = 'benchmark'")
    assert run.info.status == "FAILED"


# ---------------------------------------------------------------- 3. non-finite numbers


@pytest.mark.parametrize(
    ("section", "key"),
    [("oip", "step_size"), ("model", "lr"), ("compare", "confidence"), ("data", "val_fraction")],
)
@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_numbers_are_rejected_anywhere_in_the_config(section: str, key: str, value: float) -> None:
    raw = to_container(load_params(REPO_ROOT / "params.yaml"))
    raw[section][key] = value
    with pytest.raises(ConfigError, match=rf"{section}\.{key} must be a finite number"):
        validate(raw)


def test_nan_oip_step_size_stops_the_oip_stage_before_any_work(repo: Path, stage: Stage) -> None:
    set_params(repo, oip={"step_size": float("nan")})
    before = outputs(repo)
    one_message(*stage("oip", "--variant", "benchmark", "--seed", "0"), "oip.step_size", "finite")
    assert outputs(repo) == before and not (repo / "metrics").exists()


# ---------------------------------------------------------------- 4. checkpoint of another network


@pytest.mark.parametrize(
    "args", [("extract", "--variant", "benchmark", "--seed", "0"), ("oip", "--variant", "benchmark", "--seed", "0")]
)
def test_every_stage_that_loads_a_checkpoint_rejects_another_network(
    repo: Path, stage: Stage, args: tuple[str, ...]
) -> None:
    prepared = synthetic_prepared()
    save_checkpoint(random_model(prepared, "cifar_cnn"), best_checkpoint(repo / "models", "benchmark", 0))
    before = outputs(repo)
    needles = ("does not match this configuration", "'cifar_cnn'", "'mnist_cnn'", "cnnscope repro train@benchmark-0")
    one_message(*stage(*args), *needles)
    assert outputs(repo) == before and not leftovers(repo)


# ---------------------------------------------------------------- 5. messages instead of tracebacks


@pytest.mark.parametrize(
    "args", [("extract", "--variant", "benchmark", "--seed", "0"), ("oip", "--variant", "benchmark", "--seed", "0")]
)
def test_truncated_checkpoint(repo: Path, stage: Stage, args: tuple[str, ...]) -> None:
    ckpt = best_checkpoint(repo / "models", "benchmark", 0)
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    before = outputs(repo)
    one_message(*stage(*args), str(ckpt.relative_to(repo)), "truncated, corrupt", "cnnscope repro train@benchmark-0")
    assert outputs(repo) == before and not leftovers(repo)


@pytest.mark.parametrize("bins", [0, -3])
def test_compare_bins_out_of_range_before_any_work(repo: Path, stage: Stage, bins: int) -> None:
    set_params(repo, compare={"bins": bins})
    before = outputs(repo)
    one_message(*stage("compare"), f"compare.bins={bins}", "≥ 2")
    assert outputs(repo) == before and not (repo / "mlflow.db").exists()


def test_extract_batch_size_zero(repo: Path, stage: Stage) -> None:
    set_params(repo, extract={"batch_size": 0})
    before = outputs(repo)
    one_message(*stage("extract", "--variant", "benchmark", "--seed", "0"), "extract.batch_size=0", "≥ 1")
    assert outputs(repo) == before


def test_swapped_images_and_labels_files(repo: Path, stage: Stage) -> None:
    make_mnist_tree(repo / "raw", compress=False)
    folder = repo / "raw/MNIST/raw"
    images, labels = folder / "train-images-idx3-ubyte", folder / "train-labels-idx1-ubyte"
    images.rename(folder / "swap")
    labels.rename(images)
    (folder / "swap").rename(labels)
    set_params(repo, data={"name": "mnist", "root": str(repo / "raw")})
    before = outputs(repo)
    one_message(*stage("prepare"), "train-images-idx3-ubyte holds 1-D data", "swapped")
    assert outputs(repo) == before and not leftovers(repo)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("model=resnet", ("unknown model 'resnet'", "choose one of cifar_cnn, edge_filters, mlp, mnist_cnn")),
        ("data=imagenet", ("unknown data 'imagenet'", "cifar10", "embedded", "mnist")),
        ("compare.bins=0", ("compare.bins=0", "≥ 2")),
        ("oip.step_size=nan", ("oip.step_size", "finite")),
        ("trainer.max_epochs=many", ("trainer.max_epochs",)),
        ("trainer.max_epoch=3", ("trainer.max_epoch",)),
    ],
)
def test_compose_config_errors_are_one_line(tmp_path: Path, override: str, needles: tuple[str, ...]) -> None:
    (tmp_path / "params.yaml").write_text("earlier: good\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "cnnscope.compose", override],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    one_message(proc.returncode, proc.stderr, *needles)
    assert (tmp_path / "params.yaml").read_text() == "earlier: good\n" and not leftovers(tmp_path)


# ---------------------------------------------------------------- 6. Ctrl-C


def test_ctrl_c_is_one_line_and_exit_130(capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as end:
        run_stage(interrupted)
    assert end.value.code == INTERRUPTED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted: nothing written" in err


@pytest.mark.slow
def test_ctrl_c_during_training_keeps_the_last_good_model_and_kills_the_run(repo: Path) -> None:
    set_params(repo, trainer={"max_epochs": 500, "patience": 500})
    before = outputs(repo)
    env = clean_env() | {"PYTHONPATH": str(REPO_ROOT / "src")}
    command = [sys.executable, str(PIPELINES / "train.py"), "--variant", "benchmark", "--seed", "0", "--no-progress"]
    # the child starts with Python's own Ctrl-C handling whatever this worker process inherited or set:
    # an ignored SIGINT is inherited across exec, and the child would train on through the signal
    restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(command, cwd=repo, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=restore)
    run_file = repo / "models/benchmark/.seed0.partial/mlflow_run_id.txt"
    # inside the epochs: the first epoch's last.ckpt exists (a fixed sleep after the run file could
    # land, on a loaded machine, in the MLflow calls before training, where the interrupt is not ours)
    epoch_done = run_file.with_name(LAST_CKPT)
    deadline = time.monotonic() + 240
    while not epoch_done.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "training ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == INTERRUPTED, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("cnnscope: interrupted: nothing written")
    assert outputs(repo) == before and not leftovers(repo)
    assert status(repo, run_file.read_text().strip()) == "KILLED"


# ---------------------------------------------------------------- 7, 8. interrupted runs


def _partial(repo: Path, fingerprint: str, run_id: str, last: bytes | None) -> Path:
    """The working folder an interrupted run of ``fingerprint`` left behind."""
    work = repo / "models/benchmark/.seed0.partial"
    work.mkdir(parents=True)
    (work / "run_state.json").write_text(json.dumps({"fingerprint": fingerprint, "complete": False}))
    (work / "mlflow_run_id.txt").write_text(run_id + "\n")
    if last is not None:
        (work / LAST_CKPT).write_bytes(last)
    return work


def _trained(repo: Path) -> str:
    """The run id of the model now in place, after checking it is a finished, complete run."""
    out = repo / "models/benchmark/seed0"
    assert json.loads((out / "run_state.json").read_text())["complete"] is True
    assert not (repo / "models/benchmark/.seed0.partial").exists() and not leftovers(repo)
    run_id = str(tracking.model_run_id(out))
    assert status(repo, run_id) == "FINISHED"
    return run_id


@pytest.mark.slow
def test_run_left_running_is_marked_killed_when_the_next_run_starts(repo: Path, stage: Stage) -> None:
    stale = new_run(repo)  # killed before its first checkpoint: nothing to resume
    _partial(repo, "config-of-the-killed-run", stale, last=None)
    code, err = stage("train", "--variant", "benchmark", "--seed", "0", "--no-progress")
    assert code == 0, err
    assert status(repo, stale) == "KILLED" and f"{stale} of the abandoned run KILLED" in err
    assert _trained(repo) != stale


class _Payload:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("echo pwned > pwned.txt",))


def _pickled_code() -> bytes:
    path = Path("code.ckpt")
    torch.save({"state_dict": {}, "payload": _Payload()}, path)
    data = path.read_bytes()
    path.unlink()
    return data


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["truncated", "pickled-code"])
def test_unreadable_last_checkpoint_is_reported_and_training_starts_clean(repo: Path, stage: Stage, kind: str) -> None:
    from cnnscope.training import stage as steps

    finished = new_run(repo, "FINISHED")  # the earlier, finished model
    job, _, _ = steps.load_job(load_params("params.yaml"), "benchmark", 0)
    interrupted = new_run(repo)
    last = b"PK\x03\x04 cut short" if kind == "truncated" else _pickled_code()
    _partial(repo, job.fingerprint, interrupted, last)
    code, err = stage("train", "--variant", "benchmark", "--seed", "0", "--no-progress")
    assert code == 0, err
    assert "cannot be read as a weights-only checkpoint" in err and "starting clean" in err
    assert status(repo, finished) == "FINISHED"  # not flipped
    assert status(repo, interrupted) == "KILLED"
    assert _trained(repo) not in (finished, interrupted)
    assert not (repo / "pwned.txt").exists()


# ---------------------------------------------------------------- 9. stale temporary folders


@pytest.mark.parametrize("output", ["data/prepared", "activations/benchmark/seed0", "compare", "oip/benchmark/seed0"])
def test_stale_temporary_files_of_every_stage_are_cleaned_on_the_next_write(tmp_path: Path, output: str) -> None:
    path = tmp_path / output
    path.parent.mkdir(parents=True, exist_ok=True)
    stale = [path.with_name(f".{path.name}.k1ll3d.tmp"), path.with_name(f".{path.name}.old")]
    for folder in stale:
        (folder / "sub").mkdir(parents=True)
        (folder / "sub/big.npy").write_bytes(b"\0" * 1000)
    stale_file = path.with_name(f".{path.name}.x9.tmp")
    stale_file.write_bytes(b"partial")
    kept = [path.with_name(f"{path.name}.tmp"), path.with_name(".other.x1.tmp")]
    for item in kept:
        item.write_text("not ours")
    with atomic_dir(path) as tmp:
        (tmp / "result.txt").write_text("new")
    assert (path / "result.txt").read_text() == "new"
    assert not any(p.exists() for p in [*stale, stale_file]) and all(p.exists() for p in kept)
    with atomic_write(path / "more.txt") as fh:  # single files too
        (path / ".more.txt.dead.tmp").write_text("stale")
        fh.write("x")
    with atomic_write(path / "more.txt") as fh:
        fh.write("y")
    assert not (path / ".more.txt.dead.tmp").exists()


@pytest.mark.slow
def test_killed_prepare_leaves_nothing_behind_after_the_next_run(repo: Path, stage: Stage) -> None:
    stale = repo / "data/.prepared.ab12cd.tmp"
    stale.mkdir()
    (stale / "dataset.pt").write_bytes(b"\0" * 10_000)
    set_params(repo, data={"name": "embedded", "subsets": [0.2]})
    code, err = stage("prepare")
    assert code == 0, err
    assert not stale.exists() and not leftovers(repo)
    assert (repo / "data/prepared/dataset.pt").is_file()


# ---------------------------------------------------------------- 10. trust boundaries: names, paths


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/abs", "a b", "train@0", "1st"])
def test_variant_names_must_be_plain_identifiers(repo: Path, stage: Stage, name: str) -> None:
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["study"]["variants"] = [name]
    raw["study"]["variant_specs"] = {name: {}}
    (repo / "params.yaml").write_text(yaml.safe_dump(raw))
    before = outputs(repo)
    one_message(*stage("train", "--variant", name, "--seed", "0", "--no-progress"), repr(name), "plain identifier")
    assert outputs(repo) == before


def test_a_variant_given_as_a_path_is_unknown(
    repo: Path, stage: Stage, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside") / "victim"
    one_message(
        *stage("train", "--variant", str(outside), "--seed", "0", "--no-progress"), "unknown variant", "benchmark"
    )
    assert not outside.exists()


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("trainer", "models_dir", "/tmp/cnnscope-models"), ("oip", "out_dir", "../oip"), ("data", "out_dir", "a/../../d")],
)
def test_output_folders_must_stay_inside_the_repository(
    repo: Path, stage: Stage, section: str, key: str, value: str
) -> None:
    set_params(repo, **{section: {key: value}})
    before = outputs(repo)
    one_message(
        *stage("train", "--variant", "benchmark", "--seed", "0", "--no-progress"),
        f"{section}.{key}",
        "outside the repository",
    )
    assert outputs(repo) == before and not Path("/tmp/cnnscope-models").exists()


# ---------------------------------------------------------------- 11. weights only


def test_a_checkpoint_carrying_a_pickled_callable_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.ckpt"
    path.write_bytes(_pickled_code())
    with pytest.raises(CheckpointError, match="carries pickled code, which is refused"):
        load_model(path)
    assert not (tmp_path / "pwned.txt").exists()


def test_every_checkpoint_load_in_the_library_is_weights_only() -> None:
    """``torch.load`` and Lightning's ``fit``/``test(ckpt_path=...)`` say ``weights_only=True``
    themselves instead of relying on the installed version's default."""
    loads = []
    for path in sorted((REPO_ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            keywords = {k.arg: k.value for k in node.keywords}
            is_torch_load = node.func.attr == "load" and ast.unparse(node.func.value) == "torch"
            if is_torch_load or (node.func.attr in ("fit", "test") and "ckpt_path" in keywords):
                flag = keywords.get("weights_only")
                loads.append((path.name, node.lineno, isinstance(flag, ast.Constant) and flag.value is True))
    assert len(loads) >= 3 and all(ok for *_, ok in loads), loads


# ---------------------------------------------------------------- 12. one MLflow run per stage execution


@pytest.mark.slow
def test_each_oip_execution_is_its_own_run_and_a_two_point_sweep_keeps_both_grids(
    repo: Path, stage: Stage, tmp_path_factory: pytest.TempPathFactory
) -> None:
    training = new_run(repo, "FINISHED")
    tracking.record_model_run(repo / "models/benchmark/seed0", training)  # beside the model, keyed by its hash
    for steps, experiment in [(2, "sweep-steps-2"), (4, "sweep-steps-4")]:
        set_params(repo, oip={"steps": steps, "snapshots": [0, steps]})
        code, err = stage("oip", "--variant", "benchmark", "--seed", "0", env={"DVC_EXP_NAME": experiment})
        assert code == 0, err
    client = store(repo)
    runs = client.search_runs(["1"], filter_string=f"tags.`mlflow.parentRunId` = '{training}'")
    assert {r.data.tags["cnnscope.kind"] for r in runs} == {"oip"} and len(runs) == 2
    by_exp = {r.data.tags["dvc_exp_name"]: r for r in runs}
    assert by_exp["sweep-steps-2"].data.params["oip/steps"] == "2"
    assert by_exp["sweep-steps-4"].data.params["oip/steps"] == "4"
    grids = []
    for run in by_exp.values():
        assert run.info.status == "FINISHED" and "oip/dead_maps" in run.data.metrics
        where = tmp_path_factory.mktemp("download")
        grids.append(Path(client.download_artifacts(run.info.run_id, "oip_grid.png", str(where))).read_bytes())
    assert all(g[:8] == b"\x89PNG\r\n\x1a\n" for g in grids) and grids[0] != grids[1]
    assert not client.list_artifacts(training)  # the training run is left as it was


# ---------------------------------------------------------------- 13. every stage's settings before any work (issue 24)


@pytest.mark.parametrize(
    ("section", "values", "needle"),
    [
        ("oip", {"restarts": 1}, "oip.restarts=1"),
        ("oip", {"steps": 0}, "oip.steps=0"),
        ("oip", {"maps": [0, 500]}, "oip.maps=[0, 500]"),
        ("study", {"seeds": [0, 0], "oip_seeds": [0]}, "study.seeds=[0, 0] repeats [0]"),
        ("exemplars", {"out_dir": "/tmp/cnnscope-exemplars"}, "exemplars.out_dir"),
        ("study", {"name": "../../escaped"}, "study.name='../../escaped'"),
    ],
    ids=["restarts", "steps", "maps", "seeds", "exemplars-out", "study-name"],
)
def test_a_later_stage_setting_stops_the_first_stage_before_any_work(
    repo: Path, stage: Stage, section: str, values: dict[str, Any], needle: str
) -> None:
    _train_fails_before_any_work(repo, stage, section, values, needle)


def test_a_sweep_over_oip_steps_keeps_the_snapshots_it_can(repo: Path, stage: Stage) -> None:
    """`dvc exp run -S oip.steps=3` with snapshots made for a longer run: the later ones are taken
    at the last step instead of failing the stage."""
    set_params(repo, oip={"steps": 3, "snapshots": [0, 2, 5, 30]})
    code, err = stage("oip", "--variant", "benchmark", "--seed", "0")
    assert code == 0, err
    tensors = torch.load(run_dir(repo / "oip", "benchmark", 0) / OIP_TENSORS, weights_only=True)
    assert sorted(tensors["snapshots"]) == [0, 2, 3]


def test_an_mlflow_store_in_a_missing_folder_stops_training_and_creates_nothing(
    repo: Path, stage: Stage, tmp_path_factory: pytest.TempPathFactory
) -> None:
    missing = tmp_path_factory.mktemp("elsewhere") / "nonexistent" / "dir"
    set_params(repo, tracking={"uri": None})
    before = outputs(repo)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{missing / 'mlflow.db'}"}
    one_message(
        *stage("train", "--variant", "benchmark", "--seed", "0", "--no-progress", env=env),
        f"{missing} does not exist",
        "mkdir -p",
    )
    assert outputs(repo) == before and not missing.parent.exists()
