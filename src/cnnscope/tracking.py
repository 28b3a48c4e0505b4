"""MLflow: where the store is, which run a result belongs to, and attaching results to a run.

The only module that talks to MLflow, and it imports it lazily: the core library (data, models,
training, activations, OIPs) stays importable where MLflow is not installed.

Store location, first match wins: ``tracking.uri`` in ``params.yaml``; ``$MLFLOW_TRACKING_URI``;
the embedded default ``sqlite:///<repository root>/mlflow.db`` with artefacts in
``<repository root>/mlartifacts`` (both git-ignored). The repository root is ``$DVC_ROOT`` when DVC
runs the stage — queued experiments run in a temporary copy, and a relative path would put the
store inside it — and otherwise the git root of the working directory.

Each training job (variant × seed) is one run, nested under its study's run; its id is written
next to the checkpoint (``mlflow_run_id.txt``, :mod:`cnnscope.tracking_ids`). Every execution of a
later stage (``compare``, each ``oip``) gets a run of its own (:meth:`StageTracking.record`), nested
under the training run it analyses or under the study run, with the stage's params and the DVC
experiment name: a sweep over OIP or compare settings keeps every point's figures and numbers,
side by side. ``report`` and ``atlas`` attach their results to the study run
(:meth:`StageTracking.attach_to_study`).

One pattern for every stage that logs to MLflow (and for ``cnnscope.tune``)::

    with tracking.stage_tracking(params.tracking.experiment, params.tracking.uri) as run:
        ...  # the work; train: run.own(run_id) of its Lightning logger's run
        run.record(...)  # or run.attach_to_study(...)

Entering checks the store once, before any work (:func:`preflight`), and fails in seconds naming
the fix when it does not answer. Every run the stage opened or owns ends with the block:
``FINISHED`` only when the block (the stage's work) finished, ``KILLED`` on Ctrl-C or exit,
``FAILED`` on an error. Results attached after the work is done only warn when tracking fails
(:func:`attach`) — the files on disk are the product, MLflow a view of them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cnnscope.io import git_commit
from cnnscope.tracking_ids import model_run_id as model_run_id  # re-exported: stages use tracking.*
from cnnscope.tracking_ids import read_run_id as read_run_id
from cnnscope.tracking_ids import record_model_run as record_model_run
from cnnscope.tracking_ids import write_run_id as write_run_id
from cnnscope.tracking_store import HTTP_DEFAULTS as HTTP_DEFAULTS  # re-exported: stages use tracking.*
from cnnscope.tracking_store import TrackingUnavailable as TrackingUnavailable
from cnnscope.tracking_store import artifact_location, creation_lock, ensure_store, tracking_uri
from cnnscope.tracking_store import preflight as preflight

if TYPE_CHECKING:
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow.tracking import MlflowClient

T = TypeVar("T")


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

    class StageLogger(MLFlowLogger):
        """Lightning's logger ends its run FINISHED as soon as ``fit`` returns — before the test, the
        outputs and their promotion, so a job killed then would look finished. :func:`stage_tracking`
        ends the run when the stage is really done; a killed job's run stays RUNNING until the next
        run of the job marks it KILLED."""

        def finalize(self, status: str = "success") -> None:
            return None

    resolved = ensure_store(tracking_uri(uri))
    return StageLogger(
        experiment_name=experiment,
        run_name=run_name,
        tracking_uri=resolved,
        tags=dict(tags),
        artifact_location=artifact_location(resolved),
        run_id=run_id,
    )


def client(uri: str | None = None) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    return MlflowClient(ensure_store(tracking_uri(uri)))


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


def close_if_running(run_id: str | None, status: str, uri: str | None = None) -> bool:
    """Mark a run ``status`` if it is still ``RUNNING`` — a run that can no longer be resumed (its
    process was killed, or the next run starts clean) would otherwise stay RUNNING forever."""
    if run_id is None:
        return False
    try:
        run = client(uri).get_run(run_id)
        if run.info.status != "RUNNING":
            return False
        end_run(run_id, status, uri)
    except Exception as err:  # a deleted run, a store that moved: nothing to close
        _warn("tracking", f"could not close MLflow run {run_id}: {err}")
        return False
    return True


def _warn(stage: str, message: str) -> None:
    print(f"{stage}: warning: {message}", file=sys.stderr)


def attach(
    run_id: str,
    uri: str | None = None,
    metrics: Mapping[str, float] | None = None,
    files: Iterable[str | Path] = (),
    artifact_path: str | None = None,
    stage: str = "tracking",
) -> bool:
    """Attach metrics and files (a folder: its whole content) to a run; on failure warn and return
    False, never raise.

    Called after a stage has written its results: a tracking outage then must not lose them (the
    stage checked the store before its work with :func:`preflight`).
    """
    try:
        if metrics:
            log_metrics(run_id, metrics, uri)
        for path in files:
            if Path(path).is_dir():
                log_artifacts(run_id, path, uri, artifact_path)
            else:
                log_artifact(run_id, path, uri, artifact_path)
    except Exception as err:
        _warn(stage, f"could not attach results to MLflow run {run_id}: {err}")
        return False
    return True


def flatten(tree: Mapping[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """``{"oip": {"steps": 30}}`` → ``{"oip/steps": 30}`` (MLflow params and metrics are flat)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name, sep))
        else:
            out[name] = value
    return out


def _stage_run(
    experiment: str,
    stage: str,
    run_name: str,
    parent_run_id: str | None,
    params: Mapping[str, Any],
    tags: Mapping[str, str] | None,
    uri: str | None,
) -> str:
    """Open a run of its own for one execution of ``stage`` (nested under ``parent_run_id``), with
    ``params`` (flattened), the code version and the DVC experiment name; returns its id.

    Only through :meth:`StageTracking.record`, which ends it. Each execution is a new run, so two
    sweep points that share a training run keep their own figures and numbers.
    """
    from mlflow.entities import Param

    resolved = tracking_uri(uri)
    mlflow_client = client(resolved)
    run_tags = {"cnnscope.kind": stage, "git_commit": git_commit(), "dvc_exp_name": os.environ.get("DVC_EXP_NAME", "")}
    run_tags |= dict(tags or {}) | (parent_tag(parent_run_id) if parent_run_id else {})

    def create() -> str:
        run = mlflow_client.create_run(
            _experiment_id(mlflow_client, experiment, resolved), run_name=run_name, tags=run_tags
        )
        batch = [Param(key, str(value)[:6000]) for key, value in flatten(params).items()]
        mlflow_client.log_batch(run.info.run_id, params=batch)
        return str(run.info.run_id)

    return _retry(create)


def study_run_for(experiment: str, study_name: str, params: Mapping[str, Any], uri: str | None = None) -> str:
    """The study run of the networks ``params`` (a plain config) defines; see :func:`study_run`."""
    return study_run(experiment, study_name, study_key(params), uri)


def _experiment_id(mlflow_client: MlflowClient, experiment: str, resolved: str) -> str:
    """The id of ``experiment``, created on first use. Stages started side by side on a new store
    can all find it missing; the ones whose create then fails because it exists read the winner's
    (it cost a 2-worker run its `train@benchmark-1` stage before)."""
    from mlflow.exceptions import MlflowException

    exp = mlflow_client.get_experiment_by_name(experiment)
    if exp is None:
        try:
            return str(mlflow_client.create_experiment(experiment, artifact_location=artifact_location(resolved)))
        except MlflowException as err:
            exp = mlflow_client.get_experiment_by_name(experiment)
            if err.error_code != "RESOURCE_ALREADY_EXISTS" or exp is None:
                raise
    return str(exp.experiment_id)


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
    Parallel stages look it up under a file lock (:func:`~cnnscope.tracking_store.creation_lock`):
    two that both found none used to create one each, and the study's runs split between them.
    """
    resolved = tracking_uri(uri)
    mlflow_client = client(resolved)

    def find_or_create() -> str:
        exp_id = _experiment_id(mlflow_client, experiment, resolved)
        found = mlflow_client.search_runs([exp_id], filter_string=f"tags.`cnnscope.study_key` = '{key}'", max_results=1)
        if found:
            return str(found[0].info.run_id)
        tags = {"cnnscope.kind": "study", "cnnscope.study_key": key, "study": study_name}
        tags |= {"git_commit": git_commit(), "dvc_exp_name": os.environ.get("DVC_EXP_NAME", "")}
        run = mlflow_client.create_run(exp_id, run_name=f"study-{study_name}", tags=tags)
        mlflow_client.set_terminated(run.info.run_id, "FINISHED")  # a container: its children do the work
        return str(run.info.run_id)

    with creation_lock(resolved):
        return _retry(find_or_create)


def parent_tag(parent_run_id: str) -> dict[str, str]:
    """The tag that nests a run under ``parent_run_id`` in MLflow's UI."""
    return {"mlflow.parentRunId": parent_run_id}


def log_artifacts(run_id: str, folder: str | Path, uri: str | None = None, artifact_path: str | None = None) -> None:
    """Attach a whole folder (e.g. ``reports/``) to an existing run."""
    _retry(lambda: client(uri).log_artifacts(run_id, str(folder), artifact_path))


class StageTracking:
    """The MLflow side of one stage execution, opened by :func:`stage_tracking`: the store in
    effect (``uri``) and the runs whose status the block's end decides."""

    def __init__(self, experiment: str, uri: str | None) -> None:
        self.experiment = experiment
        self.uri = uri
        self.runs: list[str] = []

    def own(self, run_id: str | None) -> None:
        """End run ``run_id`` (e.g. train's Lightning run) with the block; ``None`` (a DDP rank other
        than 0, which owns no run) does nothing."""
        if run_id is not None:
            self.runs.append(run_id)

    def study_run(self, study_name: str, config: Mapping[str, Any]) -> str:
        """The study run of the networks ``config`` (a plain config) defines; see :func:`study_run`."""
        return study_run_for(self.experiment, study_name, config, self.uri)

    def record(
        self,
        stage: str,
        run_name: str,
        parent: Callable[[], str | None],
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        files: Iterable[str | Path],
        tags: Mapping[str, str] | None = None,
    ) -> str | None:
        """Record this execution of ``stage``, its work done, as its own run under ``parent()``
        (called here, so a failing lookup only warns too): params, metrics and files. The run ends
        with the block. Returns its id, or ``None`` with a warning when tracking fails — the
        stage's files are written by then."""
        try:
            run_id = _stage_run(self.experiment, stage, run_name, parent(), params, tags, self.uri)
        except Exception as err:
            _warn(stage, f"could not open an MLflow run for this {stage} run: {err}")
            return None
        self.own(run_id)
        attach(run_id, self.uri, metrics, files, stage=stage)
        return run_id

    def attach_to_study(
        self,
        study_name: str,
        config: Mapping[str, Any],
        stage: str,
        metrics: Mapping[str, float] | None = None,
        files: Iterable[str | Path] = (),
        artifact_path: str | None = None,
    ) -> str | None:
        """Attach ``metrics`` and ``files`` to the study's run (a finished container, not this
        stage's to end). Returns its id, or ``None`` with a warning when tracking fails."""
        try:
            run_id = self.study_run(study_name, config)
        except Exception as err:  # the files on disk are the product; tracking is a view of them
            _warn(stage, f"could not find the MLflow study run ({err})")
            return None
        return run_id if attach(run_id, self.uri, metrics, files, artifact_path, stage) else None


@contextlib.contextmanager
def stage_tracking(experiment: str, configured: str | None = None, check: bool = True) -> Iterator[StageTracking]:
    """The one way a stage tracks to MLflow: check the store before any work (:func:`preflight`;
    ``check=False`` for a DDP rank other than 0, which logs nothing), then end every run the stage
    recorded or owns as the block ends — ``FINISHED`` only when it finished, ``KILLED`` (Ctrl-C,
    exit) or ``FAILED`` otherwise. Failing to set a status only warns: it must not hide the error
    that ended the block."""
    tracker = StageTracking(experiment, preflight(configured) if check else configured)
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    except (KeyboardInterrupt, SystemExit):
        status = "KILLED"
        raise
    finally:
        for run_id in tracker.runs:
            try:
                end_run(run_id, status, tracker.uri)
            except Exception as err:
                _warn("tracking", f"could not mark MLflow run {run_id} {status}: {err}")
