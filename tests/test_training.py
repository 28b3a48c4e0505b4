"""Training: in-memory batches, fit/test, checkpoints, determinism, resume, the stage script, DDP."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from cnnscope import tracking
from cnnscope.config import TrainerConfig, load_params, to_container
from cnnscope.data.prepared import PreparedData
from cnnscope.io import file_sha256
from cnnscope.layout import BEST_CKPT, INITIAL_CKPT, LAST_CKPT, MANIFEST, PROVENANCE
from cnnscope.models import load_model
from cnnscope.training import (
    CNNModule,
    PreparedDataModule,
    TensorBatches,
    fit_and_test,
    resolve_variant,
    start_or_resume,
)
from cnnscope.training.rundir import promote
from conftest import REPO_ROOT, synthetic_prepared
from pipeline import clean_env, run_stage_as_dvc

TRAIN_SCRIPT = REPO_ROOT / "pipelines" / "train.py"


def _cpu(max_epochs: int = 2, **kw: object) -> TrainerConfig:
    trainer = load_params(REPO_ROOT / "params.yaml").trainer  # conf/ holds the defaults
    return replace(trainer, max_epochs=max_epochs, batch_size=32, accelerator="cpu", devices="1", **kw)  # type: ignore[arg-type]


def _job_module(prepared: PreparedData, variant: str = "benchmark", seed: int = 0) -> tuple[CNNModule, object]:
    params = load_params(REPO_ROOT / "params.yaml")
    job = resolve_variant(params, variant, seed, prepared)
    torch.manual_seed(seed)
    return CNNModule(job.arch, job.optim), job


# ---------------------------------------------------------------- batches


def test_tensor_batches_cover_every_sample_once_in_a_seeded_order() -> None:
    images, labels = torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10)
    epoch = [0]
    batches = TensorBatches(images, labels, 4, shuffle=True, seed=3, epoch=lambda: epoch[0])
    first = torch.cat([y for _, y in batches])
    again = torch.cat([y for _, y in batches])
    epoch[0] = 1
    second = torch.cat([y for _, y in batches])
    assert len(batches) == 3 and sorted(first.tolist()) == list(range(10))
    assert torch.equal(first, again)  # same epoch → same order (resumed runs see the same batches)
    assert not torch.equal(first, second)


def test_tensor_batches_shard_disjointly_across_ranks() -> None:
    images, labels = torch.zeros(11, 1, 2, 2, dtype=torch.uint8), torch.arange(11)
    train = [torch.cat([y for _, y in TensorBatches(images, labels, 2, True, 0, rank=r, world_size=2)]) for r in (0, 1)]
    assert len(train[0]) == len(train[1]) == 5  # equal step counts for the gradient all-reduce
    assert not set(train[0].tolist()) & set(train[1].tolist())
    evals = [torch.cat([y for _, y in TensorBatches(images, labels, 2, False, rank=r, world_size=2)]) for r in (0, 1)]
    assert sorted(torch.cat(evals).tolist()) == list(range(11))  # evaluation sees every sample once


def test_datamodule_rejects_unknown_split(prepared: PreparedData) -> None:
    with pytest.raises(KeyError, match="subsets"):
        PreparedDataModule(prepared, "0.5", 32, 0)


# ---------------------------------------------------------------- fit / test / checkpoints


def test_fit_writes_checkpoints_that_load_model_reads_and_reproduce_test_accuracy(
    tmp_path: Path, prepared: PreparedData
) -> None:
    module, _ = _job_module(prepared)
    data = PreparedDataModule(prepared, "train", 32, 0)
    result = fit_and_test(module, data, _cpu(), tmp_path, progress=False)
    assert (tmp_path / BEST_CKPT).is_file() and (tmp_path / LAST_CKPT).is_file()
    assert result.epochs == 2 and [r["epoch"] for r in result.history] == [0.0, 1.0]
    assert result.best_val_loss == min(r["val_loss"] for r in result.history)
    torch.load(tmp_path / LAST_CKPT, weights_only=True)  # the whole Lightning checkpoint is safe to load
    model = load_model(tmp_path / BEST_CKPT)
    images, labels = prepared.split("test")
    with torch.no_grad():
        pred = model(model.standardize(images.float() / 255)).argmax(1)
    assert (pred == labels).float().mean().item() == pytest.approx(result.test_acc, abs=1e-6)
    assert result.test_acc > 0.5  # the bars are learnable: training did something
    assert int(result.confusion.sum()) == len(labels)


def test_same_seed_gives_identical_weights(tmp_path: Path, prepared: PreparedData) -> None:
    weights = []
    for run in ("a", "b"):
        module, _ = _job_module(prepared, seed=1)
        fit_and_test(module, PreparedDataModule(prepared, "train", 32, 1), _cpu(1), tmp_path / run, progress=False)
        weights.append(module.model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


class _Crash(Exception):
    pass


def test_interrupted_fit_resumes_from_last_checkpoint_to_the_uninterrupted_result(
    tmp_path: Path, prepared: PreparedData
) -> None:
    from lightning.pytorch.callbacks import Callback

    import cnnscope.training.recipe as recipe

    data = lambda: PreparedDataModule(prepared, "train", 32, 0)  # noqa: E731
    straight, _ = _job_module(prepared)
    full = fit_and_test(straight, data(), _cpu(3), tmp_path / "straight", progress=False)

    class CrashInSecondEpoch(Callback):
        def on_train_batch_start(self, trainer: object, pl_module: object, batch: object, idx: int) -> None:
            if trainer.current_epoch == 1 and idx == 2:  # type: ignore[attr-defined]
                raise _Crash

    original = recipe.make_trainer

    def crashing_trainer(*args: object, **kwargs: object) -> object:
        trainer = original(*args, **kwargs)  # type: ignore[arg-type]
        trainer.callbacks.append(CrashInSecondEpoch())
        return trainer

    out = tmp_path / "resumed"
    module, _ = _job_module(prepared)
    recipe.make_trainer = crashing_trainer  # type: ignore[assignment]
    try:
        with pytest.raises(_Crash):
            fit_and_test(module, data(), _cpu(3), out, progress=False)
    finally:
        recipe.make_trainer = original
    assert (out / LAST_CKPT).is_file()
    module, _ = _job_module(prepared, seed=5)  # fresh weights: everything must come from the checkpoint
    resumed = fit_and_test(module, data(), _cpu(3), out, resume_from=out / LAST_CKPT, progress=False)
    assert resumed.epochs == 3 and [r["epoch"] for r in resumed.history] == [0.0, 1.0, 2.0]
    assert resumed.test_acc == full.test_acc
    assert [r["val_loss"] for r in resumed.history] == pytest.approx([r["val_loss"] for r in full.history])


def test_run_dir_resumes_only_an_unfinished_run_of_the_same_fingerprint(tmp_path: Path) -> None:
    out = tmp_path / "seed0"
    begin = start_or_resume(out, "abc")
    assert begin.resume is None and begin.work == tmp_path / ".seed0.partial" and not out.exists()
    torch.save({"state_dict": {}}, begin.work / LAST_CKPT)
    assert start_or_resume(out, "abc").resume == begin.work / LAST_CKPT
    stale = start_or_resume(out, "other")  # another configuration: cleared
    assert stale.resume is None and not (begin.work / LAST_CKPT).exists()
    torch.save({"state_dict": {}}, begin.work / LAST_CKPT)
    promote(begin.work, out, "other")
    assert (out / LAST_CKPT).is_file() and not begin.work.exists()
    assert start_or_resume(out, "other").resume is None  # finished runs are retrained, never continued
    assert (out / LAST_CKPT).is_file()  # ... and the finished one stays until the new one succeeds


# ---------------------------------------------------------------- edge filters stay frozen


def test_edge_filter_kernels_do_not_change_in_training(tmp_path: Path, prepared: PreparedData) -> None:
    module, job = _job_module(prepared)
    arch = {**job.arch, "name": "edge_filters"}  # type: ignore[attr-defined]
    module = CNNModule(arch, job.optim)  # type: ignore[attr-defined]
    kernels = module.model.conv1.weight.detach().clone()
    head = module.model.conv2.weight.detach().clone()
    fit_and_test(module, PreparedDataModule(prepared, "train", 32, 0), _cpu(1), tmp_path, progress=False)
    assert torch.equal(module.model.conv1.weight, kernels)
    assert not torch.equal(module.model.conv2.weight, head)
    assert torch.equal(load_model(tmp_path / BEST_CKPT).conv1.weight, kernels)


# ---------------------------------------------------------------- the stage script


@pytest.fixture
def stage_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with prepared synthetic data and a params.yaml for a 1-epoch study."""
    dataset = synthetic_prepared().save(tmp_path / "data" / "prepared")
    manifest = {"dataset_sha256": file_sha256(dataset), "source": "synthetic"}
    (dataset.parent / MANIFEST).write_text(json.dumps(manifest))
    raw = to_container(load_params(REPO_ROOT / "params.yaml"))
    raw["trainer"].update(max_epochs=1, batch_size=32, accelerator="cpu", devices="1")
    raw["tracking"]["uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run_stage(*args: str) -> int:
    return run_stage_as_dvc("train", ["--no-progress", *args])


def _run(stage_dir: Path, run_id: str) -> object:
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{stage_dir / 'mlflow.db'}").get_run(run_id)


@pytest.mark.slow
def test_stage_writes_outputs_and_one_finished_mlflow_run(stage_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run_stage("--variant", "dummy", "--seed", "0")
    out = stage_dir / "models" / "dummy" / "seed0"
    names = {p.name for p in out.iterdir()}
    assert {INITIAL_CKPT, BEST_CKPT, LAST_CKPT, "confusion.png"} <= names
    assert "mlflow_run_id.txt" not in names  # random: it would change the DVC hash of every model
    for ckpt in (BEST_CKPT, LAST_CKPT):  # no absolute path: a clone elsewhere gets the same bytes
        assert str(stage_dir).encode() not in (out / ckpt).read_bytes()
    metrics = json.loads((stage_dir / "metrics" / "train" / "dummy_seed0.json").read_text())
    assert {"test_acc", "test_loss", "best_val_loss", "epochs"} <= set(metrics) and metrics["epochs"] == 1
    assert metrics["resumed"] == 0  # a clean start (the report's Setup discloses a resumed run)
    assert metrics["train_size"] == len(synthetic_prepared().subsets["0.2"])
    sha = file_sha256(stage_dir / "data" / "prepared" / "dataset.pt")
    assert all(isinstance(v, (int, float)) for v in metrics.values())  # numbers only: `dvc metrics show`
    record = json.loads((out / PROVENANCE).read_text())
    assert record["data_sha256"] == sha and record["git_commit"] and record["fingerprint"]
    assert record["params"]["variant"] == {"name": "dummy", "seed": 0, "train": True, "split": "0.2"}
    history = pd.read_csv(stage_dir / "plots" / "train" / "dummy_seed0.csv")
    assert list(history.columns) == ["epoch", "train_loss", "val_loss", "val_acc", "lr"] and len(history) == 1
    run = _run(stage_dir, str(tracking.model_run_id(out)))
    assert run.info.status == "FINISHED"  # type: ignore[attr-defined]
    data = run.data  # type: ignore[attr-defined]
    assert data.tags["variant"] == "dummy" and data.tags["seed"] == "0" and data.tags["data_sha256"] == sha
    assert data.tags["mlflow.runName"] == "dummy-seed0" and "git_commit" in data.tags
    assert data.params["trainer/max_epochs"] == "1" and data.params["variant/split"] == "0.2"
    assert data.metrics["test_acc"] == pytest.approx(metrics["test_acc"])
    assert "val_loss" in data.metrics and "lr-Adam" in data.metrics


@pytest.mark.slow
def test_initial_weights_are_the_untrained_network_of_the_same_seed(stage_dir: Path) -> None:
    # trained-minus-initial kernels in the report rely on both: the start is saved, and it is the
    # network the untrained variant of that seed evaluates
    _run_stage("--variant", "dummy", "--seed", "0")
    _run_stage("--variant", "untrained", "--seed", "0")
    models = stage_dir / "models"
    initial = torch.load(models / "dummy" / "seed0" / INITIAL_CKPT, weights_only=True)["state_dict"]
    untrained = torch.load(models / "untrained" / "seed0" / BEST_CKPT, weights_only=True)["state_dict"]
    trained = torch.load(models / "dummy" / "seed0" / BEST_CKPT, weights_only=True)["state_dict"]
    assert initial.keys() == untrained.keys()
    assert all(torch.equal(initial[k], untrained[k]) for k in initial)
    assert not torch.equal(initial["model.conv1.weight"], trained["model.conv1.weight"])


@pytest.mark.slow
def test_untrained_variant_is_evaluated_not_trained(stage_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run_stage("--variant", "untrained", "--seed", "3")
    out = stage_dir / "models" / "untrained" / "seed3"
    metrics = json.loads((stage_dir / "metrics" / "train" / "untrained_seed3.json").read_text())
    assert metrics["epochs"] == 0 and metrics["train_size"] == 0
    assert metrics["test_acc"] < 0.5  # chance level on ten classes, give or take
    stored = load_model(out / BEST_CKPT)
    torch.manual_seed(3)
    reference = CNNModule(stored.arch, {}).model  # the seeded random initialisation
    pairs = zip(stored.state_dict().values(), reference.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert _run(stage_dir, str(tracking.model_run_id(out))).info.status == "FINISHED"  # type: ignore[attr-defined]


def test_unknown_variant_fails_before_anything_is_written(
    stage_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run_stage("--variant", "nosuch", "--seed", "0") == 2
    err = capsys.readouterr().err
    assert "nosuch" in err and "benchmark, dummy" in err
    assert not (stage_dir / "models").exists() and not (stage_dir / "mlflow.db").exists()


def test_unknown_model_name_is_rejected_listing_valid_ones(stage_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = yaml.safe_load((stage_dir / "params.yaml").read_text())
    raw["model"]["name"] = "resnet"
    (stage_dir / "params.yaml").write_text(yaml.safe_dump(raw))
    assert _run_stage("--variant", "benchmark", "--seed", "0") == 2
    err = capsys.readouterr().err
    assert "model.name" in err and "mnist_cnn" in err and len(err.strip().splitlines()) == 1


def test_nan_loss_stops_with_a_clear_message_and_a_failed_run(
    stage_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = yaml.safe_load((stage_dir / "params.yaml").read_text())
    raw["study"]["variant_specs"]["sgd"]["model"].update(lr=1e12, momentum=0.0)
    raw["trainer"]["log_every_n_steps"] = 1
    (stage_dir / "params.yaml").write_text(yaml.safe_dump(raw))
    assert _run_stage("--variant", "sgd", "--seed", "0") == 2
    assert "NaN" in capsys.readouterr().err
    run_id = (stage_dir / "models" / "sgd" / ".seed0.partial" / "mlflow_run_id.txt").read_text().strip()
    assert _run(stage_dir, run_id).info.status == "FAILED"  # type: ignore[attr-defined]
    assert not (stage_dir / "metrics").exists() and not (stage_dir / "models" / "sgd" / "seed0").exists()


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(stage_dir: Path) -> None:
    """strategy=ddp with gloo: Lightning re-launches the script, so it runs in a subprocess."""
    raw = yaml.safe_load((stage_dir / "params.yaml").read_text())
    raw["trainer"].update(strategy="ddp", devices="2")
    (stage_dir / "params.yaml").write_text(yaml.safe_dump(raw))
    env = clean_env() | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), "--variant", "benchmark", "--seed", "0", "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world_size=2" in proc.stdout + proc.stderr or "distributed_backend=gloo" in proc.stdout + proc.stderr
    metrics = json.loads((stage_dir / "metrics" / "train" / "benchmark_seed0.json").read_text())
    assert metrics["epochs"] == 1
    confusion = pd.read_csv(stage_dir / "models" / "benchmark" / "seed0" / "confusion.csv", index_col=0)
    assert int(confusion.to_numpy().sum()) == len(synthetic_prepared().splits["test"])  # all ranks gathered
    from mlflow.tracking import MlflowClient

    runs = MlflowClient(f"sqlite:///{stage_dir / 'mlflow.db'}").search_runs(["1"])
    variant_runs = [r for r in runs if r.data.tags.get("cnnscope.kind") != "study"]  # not the parent run
    assert len(variant_runs) == 1 and variant_runs[0].info.status == "FINISHED"  # rank 1 opened none


# ---------------------------------------------------------------- bookkeeping (issue 24, item 5)


def _overfitting(prepared: PreparedData) -> PreparedData:
    """Validation labels shifted by one class: the validation loss is lowest after an early epoch
    and rises after it, so the best epoch is not the last."""
    val = prepared.splits["val"]
    prepared.labels[val] = (prepared.labels[val] + 1) % 10
    return prepared


def test_recorded_epochs_are_the_epochs_trained_and_last_ckpt_is_the_last_epoch(
    tmp_path: Path, prepared: PreparedData
) -> None:
    data = _overfitting(prepared)
    module, _ = _job_module(data)
    batches = PreparedDataModule(data, "train", 32, 0)
    result = fit_and_test(module, batches, _cpu(4, patience=100), tmp_path, progress=False)
    assert result.epochs == 4 and [r["epoch"] for r in result.history] == [0.0, 1.0, 2.0, 3.0]
    assert result.best_epoch is not None and result.best_epoch < 3, "the set-up needs a best epoch before the last"
    assert result.best_val_loss == min(r["val_loss"] for r in result.history)
    assert torch.load(tmp_path / LAST_CKPT, weights_only=True)["epoch"] == 3
    assert torch.load(tmp_path / BEST_CKPT, weights_only=True)["epoch"] == result.best_epoch


@pytest.mark.slow
def test_stage_records_every_epoch_and_the_best_one_separately(stage_dir: Path) -> None:
    _overfitting(synthetic_prepared()).save(stage_dir / "data" / "prepared")
    raw = yaml.safe_load((stage_dir / "params.yaml").read_text())
    raw["trainer"].update(max_epochs=4, patience=100)
    (stage_dir / "params.yaml").write_text(yaml.safe_dump(raw))
    assert _run_stage("--variant", "benchmark", "--seed", "0") == 0
    metrics = json.loads((stage_dir / "metrics" / "train" / "benchmark_seed0.json").read_text())
    assert metrics["epochs"] == 4 and 0 <= metrics["best_epoch"] < 3
    assert len(pd.read_csv(stage_dir / "plots" / "train" / "benchmark_seed0.csv")) == 4
    out = stage_dir / "models" / "benchmark" / "seed0"
    assert torch.load(out / LAST_CKPT, weights_only=True)["epoch"] == 3


def test_the_mlflow_run_is_not_finished_when_fit_returns(tmp_path: Path, prepared: PreparedData) -> None:
    """Lightning's logger ended the run FINISHED after fit, so a job killed in its test phase (or
    before its outputs were in place) looked finished; the stage ends the run itself."""
    from cnnscope import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = tracking.mlflow_logger("tests", "bookkeeping", {}, uri)
    module, _ = _job_module(prepared)
    batches = PreparedDataModule(prepared, "train", 32, 0)
    fit_and_test(module, batches, _cpu(1), tmp_path / "run", logger, progress=False)
    assert tracking.client(uri).get_run(logger.run_id).info.status == "RUNNING"
    with tracking.stage_tracking("tests", uri) as run:
        run.own(logger.run_id)
    assert tracking.client(uri).get_run(logger.run_id).info.status == "FINISHED"
