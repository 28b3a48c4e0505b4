"""DVC stage `train@<variant>-<seed>`: train (or, for the null model, only evaluate) one variant.

Writes ``models/<variant>/seed<k>/`` (best.ckpt, last.ckpt, mlflow_run_id.txt, confusion.png,
confusion.csv, provenance.json, run_state.json), ``metrics/train/<variant>_seed<k>.json`` and
``plots/train/<variant>_seed<k>.csv``; one MLflow run per variant and seed. An interrupted run of
the same configuration resumes from ``last.ckpt``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd
from lightning.pytorch.utilities import rank_zero_only

from cnnscope import tracking
from cnnscope.config import Params, check_variant, load_params, to_container
from cnnscope.data.prepared import PreparedData
from cnnscope.errors import run_stage
from cnnscope.io import MANIFEST_FILE, atomic_write, provenance, run_dir, run_name, write_json
from cnnscope.models import save_checkpoint
from cnnscope.training import (
    HISTORY_COLUMNS,
    PreparedDataModule,
    TrainResult,
    VariantJob,
    build_modules,
    fit_and_test,
    mark_complete,
    resolve_variant,
    resume_point,
    start_or_resume,
    test_only,
)
from cnnscope.viz import save_figure
from cnnscope.viz.training import confusion_figure


def _resolved_config(params: Params, job: VariantJob) -> dict[str, Any]:
    """The configuration this run used: the study's model with the variant's overrides applied."""
    config = to_container(params)
    config["model"] = {**config["model"], **params.study.variant_specs[job.variant].model}
    config["variant"] = {"name": job.variant, "seed": job.seed, "train": job.train, "split": job.train_split}
    del config["study"]["variant_specs"]  # other variants' settings are not this run's
    return config


def _write_outputs(
    config: dict[str, Any], job: VariantJob, result: TrainResult, out_dir: Path, data: PreparedDataModule
) -> list[Path]:
    name, classes = run_name(job.variant, job.seed), data.prepared.classes
    title = f"{job.variant} seed {job.seed}: test accuracy {result.test_acc:.2%}"
    figure = save_figure(confusion_figure(result.confusion.numpy(), classes, title), out_dir / "confusion.png")
    table = out_dir / "confusion.csv"
    with atomic_write(table) as fh:
        pd.DataFrame(result.confusion.numpy(), index=classes, columns=classes).to_csv(fh)
    history = Path("plots/train") / f"{name}.csv"
    with atomic_write(history) as fh:
        pd.DataFrame(result.history, columns=HISTORY_COLUMNS).to_csv(fh, index=False)
    record = provenance(config, config["data"]["out_dir"])
    write_json(out_dir / "provenance.json", {**record, "fingerprint": job.fingerprint})
    write_json(
        Path("metrics/train") / f"{name}.json",
        {
            "test_acc": result.test_acc,
            "test_loss": result.test_loss,
            "best_val_loss": result.best_val_loss,
            "best_val_acc": result.best_val_acc,
            "epochs": result.epochs,
            "train_size": data.train_size if job.train else 0,
            "resumed": result.resumed_from is not None,
            # the full record (with every param) is models/<variant>/seed<k>/provenance.json; here only
            # what identifies it, so `dvc metrics show` stays a readable table
            "provenance": {k: record.get(k) for k in ("git_commit", "data_sha256")} | {"fingerprint": job.fingerprint},
        },
    )
    return [figure, table, history, out_dir / "provenance.json"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="validated configuration (default: params.yaml)")
    parser.add_argument("--variant", required=True, help="a name in study.variants")
    parser.add_argument("--seed", type=int, default=0, help="seed of this run (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    check_variant(params.study, args.variant)  # before loading any data
    data_dir = Path(params.data.out_dir)
    prepared = PreparedData.load(data_dir)
    manifest = data_dir / MANIFEST_FILE
    data_sha = json.loads(manifest.read_text()).get("dataset_sha256") if manifest.is_file() else None
    job = resolve_variant(params, args.variant, args.seed, prepared, data_sha)
    module, data = build_modules(params, job, prepared)

    out_dir = run_dir(params.trainer.models_dir, job.variant, job.seed)
    rank0 = rank_zero_only.rank == 0  # DDP re-executes this script; only rank 0 touches files
    resume = start_or_resume(out_dir, job.fingerprint) if rank0 else resume_point(out_dir, job.fingerprint)
    config = _resolved_config(params, job)
    tags = tracking.run_tags(job.variant, job.seed, params.study.name, data_sha)
    if rank0:  # the variant's run is nested under its study's run in MLflow
        key = tracking.study_key(to_container(params))
        tags |= tracking.parent_tag(
            tracking.study_run(params.tracking.experiment, params.study.name, key, params.tracking.uri)
        )
    logger = tracking.mlflow_logger(
        params.tracking.experiment,
        run_name=f"{job.variant}-seed{job.seed}",
        tags=tags,
        uri=params.tracking.uri,
        run_id=tracking.read_run_id(out_dir) if resume else None,
    )
    run_id = logger.run_id if rank0 else None
    if run_id is not None:
        tracking.write_run_id(out_dir, run_id)
    try:
        if run_id is not None and resume is None:  # a resumed run has its params already (MLflow forbids changes)
            tracking.log_params(logger, {**config, "arch": {k: job.arch[k] for k in ("in_channels", "image_size")}})
        if job.train:
            result = fit_and_test(module, data, params.trainer, out_dir, logger, resume, not args.no_progress)
        else:
            save_checkpoint(module.model, out_dir / "best.ckpt")
            result = test_only(module, data, params.trainer, out_dir, logger, not args.no_progress)
        if run_id is None:
            return
        for path in _write_outputs(config, job, result, out_dir, data):
            tracking.log_artifact(run_id, path, params.tracking.uri)
        mark_complete(out_dir, job.fingerprint)
        tracking.end_run(run_id, "FINISHED", params.tracking.uri)
    except (KeyboardInterrupt, SystemExit):
        if run_id is not None:
            tracking.end_run(run_id, "KILLED", params.tracking.uri)
        raise
    except BaseException:
        if run_id is not None:
            tracking.end_run(run_id, "FAILED", params.tracking.uri)
        raise
    print(
        f"{job.variant} seed {job.seed}: test_acc={result.test_acc:.4f} test_loss={result.test_loss:.4f} "
        f"epochs={result.epochs}{' (resumed)' if resume else ''} → {out_dir} (MLflow run {run_id})"
    )


if __name__ == "__main__":
    run_stage(main)
