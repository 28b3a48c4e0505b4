"""Which MLflow run a result on disk belongs to, written beside it: the run id in a training job's
work folder while it trains (so a resumed job logs to the same run), and, once the model is
published, a record beside the model keyed by its checkpoint's hash.

Why apart from :mod:`cnnscope.tracking`: these are plain files, read and written without MLflow
(the training stage's run folder and the OIP stage's parent lookup need nothing else), while
:mod:`cnnscope.tracking` opens runs and logs to them.
"""

from __future__ import annotations

import json
from pathlib import Path

from cnnscope.io import atomic_write, file_sha256
from cnnscope.layout import BEST_CKPT

RUN_ID_FILE = "mlflow_run_id.txt"


def write_run_id(directory: str | Path, run_id: str) -> Path:
    """Store ``run_id`` in ``directory`` (a training job's work folder) for :func:`read_run_id`."""
    path = Path(directory) / RUN_ID_FILE
    with atomic_write(path) as fh:
        fh.write(run_id + "\n")
    return path


def read_run_id(directory: str | Path) -> str | None:
    """The run id stored next to a checkpoint, or ``None`` if there is none."""
    path = Path(directory) / RUN_ID_FILE
    return path.read_text().strip() or None if path.is_file() else None


def _model_run_record(model_dir: Path) -> Path:
    return model_dir.with_name(f".{model_dir.name}.mlflow.json")


def record_model_run(model_dir: str | Path, run_id: str) -> None:
    """Remember which MLflow run trained ``model_dir``, *beside* it, keyed by its checkpoint's hash.

    Why beside and not inside: a run id is random, so inside the DVC output it would make every
    model's hash differ between two runs of the same job (and between two clones). Keyed by the
    hash of ``best.ckpt``, so a model that DVC later restores from its cache or run cache is never
    attributed to the run of another model.
    """
    model_dir = Path(model_dir)
    record = {"run_id": run_id, "best_ckpt_sha256": file_sha256(model_dir / BEST_CKPT)}
    with atomic_write(_model_run_record(model_dir)) as fh:
        json.dump(record, fh)


def model_run_id(model_dir: str | Path) -> str | None:
    """The MLflow run that trained the model now in ``model_dir``, or ``None`` when unknown (a model
    pulled from a DVC remote, or restored from the run cache, whose run this store never saw)."""
    model_dir = Path(model_dir)
    path, ckpt = _model_run_record(model_dir), model_dir / BEST_CKPT
    if not (path.is_file() and ckpt.is_file()):
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return record.get("run_id") if record.get("best_ckpt_sha256") == file_sha256(ckpt) else None
