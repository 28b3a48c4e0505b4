"""The steps of the ``train`` stage, each named: what ``pipelines/train.py`` strings together.

Order matters and is the point of this module: everything that can be wrong about the request
(variant, settings, accelerator, tracking store) fails before anything is written; the run trains
in its working folder (:mod:`cnnscope.training.rundir`); results replace the last good model only
at the end. Under DDP Lightning re-executes the script per rank: only rank 0 touches files or
MLflow, the others take the same resume decision read-only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from cnnscope import tracking
from cnnscope.config import Params, check_variant, to_container
from cnnscope.data.prepared import PreparedData
from cnnscope.io import atomic_write, provenance, write_json
from cnnscope.layout import CONFUSION_FIGURE, CONFUSION_TABLE, MANIFEST, PROVENANCE, history_path, metrics_path
from cnnscope.training.datamodule import PreparedDataModule
from cnnscope.training.recipe import HISTORY_COLUMNS, TrainResult, check_accelerator
from cnnscope.training.rundir import RunStart, resume_point, start_or_resume, work_dir
from cnnscope.training.variant import VariantJob, resolve_variant
from cnnscope.viz import save_figure
from cnnscope.viz.training import confusion_figure

if TYPE_CHECKING:
    from lightning.pytorch.loggers import MLFlowLogger


def check_request(params: Params, variant: str) -> None:
    """What is checkable before the MLflow store (:func:`cnnscope.tracking.stage_tracking`, which
    must answer within seconds) and before loading data: the variant and the accelerator."""
    check_variant(params.study, variant)
    check_accelerator(params.trainer)


def load_job(params: Params, variant: str, seed: int) -> tuple[VariantJob, PreparedData, str | None]:
    """The prepared data, its checksum (from the manifest) and the concrete job."""
    data_dir = Path(params.data.out_dir)
    prepared = PreparedData.load(data_dir)
    manifest = data_dir / MANIFEST
    data_sha = json.loads(manifest.read_text()).get("dataset_sha256") if manifest.is_file() else None
    return resolve_variant(params, variant, seed, prepared, data_sha), prepared, data_sha


def start(out_dir: Path, job: VariantJob, uri: str | None, rank0: bool) -> RunStart:
    """Decide resume or clean start; close the MLflow run of an unfinished run that is abandoned."""
    if not rank0:
        return RunStart(work_dir(out_dir), resume_point(out_dir, job.fingerprint))
    begin = start_or_resume(out_dir, job.fingerprint)
    if begin.problem:
        print(f"train: warning: {begin.problem}; starting clean", file=sys.stderr)
    if tracking.close_if_running(begin.abandoned_run, "KILLED", uri):
        print(f"train: marked MLflow run {begin.abandoned_run} of the abandoned run KILLED", file=sys.stderr)
    return begin


def resolved_config(params: Params, job: VariantJob) -> dict[str, Any]:
    """The configuration this run used: the study's model with the variant's overrides applied."""
    config = to_container(params)
    config["model"] = {**config["model"], **params.study.variant_specs[job.variant].model}
    config["variant"] = {"name": job.variant, "seed": job.seed, "train": job.train, "split": job.train_split}
    del config["study"]["variant_specs"]  # other variants' settings are not this run's
    return config


def open_run(
    params: Params, job: VariantJob, begin: RunStart, data_sha: str | None, uri: str | None, rank0: bool
) -> tuple[MLFlowLogger, str | None]:
    """The MLflow logger of this job, nested under its study's run; a resumed run continues its
    own run. Returns the logger and (rank 0 only) the run id, recorded in the working folder."""
    tags = tracking.run_tags(job.variant, job.seed, params.study.name, data_sha)
    if rank0:
        study = tracking.study_run_for(params.tracking.experiment, params.study.name, to_container(params), uri)
        tags |= tracking.parent_tag(study)
    logger = tracking.mlflow_logger(
        params.tracking.experiment,
        run_name=f"{job.variant}-seed{job.seed}",
        tags=tags,
        uri=uri,
        run_id=tracking.read_run_id(begin.work) if begin.resume else None,
    )
    if not rank0:
        return logger, None
    run_id = str(logger.run_id)
    tracking.write_run_id(begin.work, run_id)
    return logger, run_id


def log_config(logger: MLFlowLogger, config: dict[str, Any], job: VariantJob) -> None:
    """A new run's params (a resumed run has them already; MLflow forbids changing them)."""
    tracking.log_params(logger, {**config, "arch": {k: job.arch[k] for k in ("in_channels", "image_size")}})


#: Files of a job's folder attached to its MLflow run (besides the history table).
ARTIFACTS = (CONFUSION_FIGURE, CONFUSION_TABLE, PROVENANCE)


def write_outputs(
    config: dict[str, Any], job: VariantJob, result: TrainResult, work: Path, data: PreparedDataModule
) -> None:
    """Figures and tables into the working folder; the history and metrics files beside it."""
    classes = data.prepared.classes
    title = f"{job.variant} seed {job.seed}: test accuracy {result.test_acc:.2%}"
    save_figure(confusion_figure(result.confusion.numpy(), classes, title), work / CONFUSION_FIGURE)
    with atomic_write(work / CONFUSION_TABLE) as fh:
        pd.DataFrame(result.confusion.numpy(), index=classes, columns=classes).to_csv(fh)
    with atomic_write(history_path(job.variant, job.seed)) as fh:
        pd.DataFrame(result.history, columns=HISTORY_COLUMNS).to_csv(fh, index=False)
    record = provenance(config, config["data"]["out_dir"])
    write_json(work / PROVENANCE, {**record, "fingerprint": job.fingerprint})
    write_json(
        metrics_path("train", job.variant, job.seed),
        {
            "test_acc": result.test_acc,
            "test_loss": result.test_loss,
            "best_val_loss": result.best_val_loss,
            "best_val_acc": result.best_val_acc,
            "epochs": result.epochs,  # every epoch trained (the history's rows)
            # the epoch (0-based) of best.ckpt, the weights tested; the untrained null model has none
            **({} if result.best_epoch is None else {"best_epoch": result.best_epoch}),
            # 1 when this run continued an interrupted one from its last.ckpt (the report's Setup says so)
            "resumed": int(result.resumed_from is not None),
            "train_size": data.train_size if job.train else 0,
            # provenance (config, git commit, data checksum) is models/<variant>/seed<k>/provenance.json:
            # `dvc metrics show` holds numbers only
        },
    )
