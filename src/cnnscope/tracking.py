"""MLflow: where the store is, which run a result belongs to, and attaching results to a run.

The only module that talks to MLflow, and it imports it lazily: the core library (data, models,
training, activations, OIPs) stays importable where MLflow is not installed.

Store location, first match wins: ``tracking.uri`` in ``params.yaml``; ``$MLFLOW_TRACKING_URI``;
the embedded default ``sqlite:///<repository root>/mlflow.db`` with artefacts in
``<repository root>/mlartifacts`` (both git-ignored). The repository root is ``$DVC_ROOT`` when DVC
runs the stage — queued experiments run in a temporary copy, and a relative path would put the
store inside it — and otherwise the git root of the working directory.

Each training job (variant × seed) is one run; its id is written next to the checkpoint
(``mlflow_run_id.txt``) so later stages attach their metrics and figures to the same run with
:func:`log_metrics` and :func:`log_artifact`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cnnscope.io import atomic_write, git_commit, repo_root

if TYPE_CHECKING:
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow.tracking import MlflowClient

RUN_ID_FILE = "mlflow_run_id.txt"
DB_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
T = TypeVar("T")


def tracking_uri(configured: str | None = None) -> str:
    """The tracking URI in effect (see the module docstring for the order)."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / DB_FILE}"


_READY: set[str] = set()


def _ensure_store(uri: str) -> str:
    """Create an SQLite store's tables under a file lock, once per process.

    Two DVC queue workers starting on a fresh ``mlflow.db`` would otherwise both run MLflow's
    schema migration and one fails with "table ... already exists".
    """
    if uri in _READY or not uri.startswith("sqlite:///"):
        return uri
    from filelock import FileLock
    from mlflow.tracking import MlflowClient

    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(database) + ".lock", timeout=300):
        MlflowClient(uri).search_experiments(max_results=1)  # creates and migrates the tables
    _READY.add(uri)
    return uri


def _artifact_location(uri: str) -> str | None:
    """Keep artefacts of the embedded store beside it; a server decides for itself."""
    if uri == f"sqlite:///{repo_root() / DB_FILE}":
        return (repo_root() / ARTIFACT_DIR).as_uri()
    return None


def run_tags(variant: str, seed: int, study: str, data_sha256: str | None) -> dict[str, str]:
    """Tags that tie a run to what produced it: variant, seed, code, data, DVC experiment."""
    return {
        "variant": variant,
        "seed": str(seed),
        "study": study,
        "git_commit": git_commit(),
        "data_sha256": data_sha256 or "unknown",
        "dvc_exp_name": os.environ.get("DVC_EXP_NAME", ""),
    }


def _retry(call: Callable[[], T], attempts: int = 5) -> T:
    """Two DVC queue workers sharing one SQLite store can hit 'database is locked': back off."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as err:  # mlflow wraps sqlalchemy's OperationalError in its own types
            if "database is locked" not in str(err) or attempt == attempts - 1:
                raise
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def mlflow_logger(
    experiment: str, run_name: str, tags: Mapping[str, str], uri: str | None = None, run_id: str | None = None
) -> MLFlowLogger:
    """Lightning's MLFlowLogger on the resolved store; ``run_id`` continues an existing run."""
    from lightning.pytorch.loggers import MLFlowLogger

    resolved = _ensure_store(tracking_uri(uri))
    return MLFlowLogger(
        experiment_name=experiment,
        run_name=run_name,
        tracking_uri=resolved,
        tags=dict(tags),
        artifact_location=_artifact_location(resolved),
        run_id=run_id,
    )


def client(uri: str | None = None) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    return MlflowClient(_ensure_store(tracking_uri(uri)))


def log_params(logger: MLFlowLogger, params: Mapping[str, Any]) -> None:
    """Log a nested config as flat ``section/key`` params (values cut to MLflow's limit)."""
    _retry(lambda: logger.log_hyperparams(dict(params)))


def log_metrics(run_id: str, metrics: Mapping[str, float], uri: str | None = None, step: int = 0) -> None:
    """Attach scalar metrics to an existing run (e.g. a later stage's results)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
    _retry(lambda: client(uri).log_batch(run_id, metrics=batch))


def log_artifact(run_id: str, path: str | Path, uri: str | None = None, artifact_path: str | None = None) -> None:
    """Attach a file (a figure, a table) to an existing run, through the run's own store."""
    _retry(lambda: client(uri).log_artifact(run_id, str(path), artifact_path))


def end_run(run_id: str, status: str = "FINISHED", uri: str | None = None) -> None:
    """Set a run's final status (``FINISHED``, ``FAILED``, ``KILLED``)."""
    _retry(lambda: client(uri).set_terminated(run_id, status))


#: The params that define a study's trained networks; a change to them starts a new study run,
#: a change to analysis params (extract, compare, oip) adds to the existing one.
STUDY_KEY_SECTIONS = ("data", "model", "trainer", "study")


def study_key(params: Mapping[str, Any]) -> str:
    """Identity of one study: the DVC experiment (or the workspace) and the params of its networks."""
    defining = {k: params[k] for k in STUDY_KEY_SECTIONS if k in params}
    digest = hashlib.sha256(json.dumps(defining, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{os.environ.get('DVC_EXP_NAME') or 'workspace'}-{digest}"


def study_run(experiment: str, study_name: str, key: str, uri: str | None = None) -> str:
    """The id of the parent run of study ``key``, created on first use.

    Variant runs name it as ``mlflow.parentRunId``, so ``mlflow ui`` shows each study with its
    variants nested under it; the report stage attaches the study's report and summary to it.
    """
    resolved = tracking_uri(uri)
    mlflow_client = client(resolved)

    def find_or_create() -> str:
        exp = mlflow_client.get_experiment_by_name(experiment)
        exp_id = (
            exp.experiment_id
            if exp is not None
            else mlflow_client.create_experiment(experiment, artifact_location=_artifact_location(resolved))
        )
        found = mlflow_client.search_runs([exp_id], filter_string=f"tags.`cnnscope.study_key` = '{key}'", max_results=1)
        if found:
            return str(found[0].info.run_id)
        tags = {"cnnscope.kind": "study", "cnnscope.study_key": key, "study": study_name}
        tags |= {"git_commit": git_commit(), "dvc_exp_name": os.environ.get("DVC_EXP_NAME", "")}
        run = mlflow_client.create_run(exp_id, run_name=f"study-{study_name}", tags=tags)
        mlflow_client.set_terminated(run.info.run_id, "FINISHED")  # a container: its children do the work
        return str(run.info.run_id)

    return _retry(find_or_create)


def parent_tag(parent_run_id: str) -> dict[str, str]:
    """The tag that nests a run under ``parent_run_id`` in MLflow's UI."""
    return {"mlflow.parentRunId": parent_run_id}


def log_artifacts(run_id: str, folder: str | Path, uri: str | None = None, artifact_path: str | None = None) -> None:
    """Attach a whole folder (e.g. ``reports/``) to an existing run."""
    _retry(lambda: client(uri).log_artifacts(run_id, str(folder), artifact_path))


def write_run_id(directory: str | Path, run_id: str) -> Path:
    path = Path(directory) / RUN_ID_FILE
    with atomic_write(path) as fh:
        fh.write(run_id + "\n")
    return path


def read_run_id(directory: str | Path) -> str | None:
    """The run id stored next to a checkpoint, or ``None`` if there is none."""
    path = Path(directory) / RUN_ID_FILE
    return path.read_text().strip() or None if path.is_file() else None
