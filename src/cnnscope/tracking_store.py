"""Where the MLflow store is and whether it answers: the tracking URI in effect, the embedded SQLite
store (created whole, once, under a file lock), and the preflight every stage runs before any
work. :mod:`cnnscope.tracking` (runs, params, artefacts) builds on it and re-exports what stages use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from cnnscope.errors import CnnscopeError
from cnnscope.io import repo_root

DB_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
#: MLflow's own HTTP settings for the rest of a stage once the server answered: a server that
#: goes away mid-run costs seconds, not MLflow's defaults (120 s timeout, 7 retries with backoff).
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2"}
#: ... and for the one preflight request: a single try.
PREFLIGHT_HTTP = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "5", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}


class TrackingUnavailable(CnnscopeError):
    """The MLflow store does not answer; the message says how to reach it or what to use instead."""


def tracking_uri(configured: str | None = None) -> str:
    """The tracking URI in effect (see the module docstring for the order)."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / DB_FILE}"


_READY: set[str] = set()


def _created(database: Path) -> bool:
    """Whether MLflow has made its tables in ``database``: its migration record has a row. Read with
    the standard library's ``sqlite3`` (milliseconds), not through an MLflow client (about a second)."""
    import sqlite3

    if not database.is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            return bool(db.execute("SELECT count(*) FROM alembic_version").fetchone()[0])
    except sqlite3.Error:  # no such table, not a database, busy: let MLflow look, under the lock
        return False


def ensure_store(uri: str) -> str:
    """Create an SQLite store's tables under a file lock, then check that the store answers; once per
    process.

    Two DVC queue workers starting on a fresh ``mlflow.db`` would otherwise both run MLflow's
    schema migration and one fails with "table ... already exists". Only the creation needs the lock:
    the stages that find the tables made wait for no one, so parallel stages do not queue for the
    second each one's MLflow client takes to start (it checks the schema).
    """
    if uri in _READY or not uri.startswith("sqlite:///"):
        return uri
    from filelock import FileLock
    from mlflow.tracking import MlflowClient

    database = Path(uri.removeprefix("sqlite:///"))
    if not database.parent.is_dir():  # never create a folder the user did not make (a typo, another machine's path)
        raise TrackingUnavailable(
            f"MLflow store {uri}: its folder {database.parent} does not exist; create it (mkdir -p "
            f"{database.parent}) if the runs belong there, or unset MLFLOW_TRACKING_URI / tracking.uri to log "
            f"to the embedded store sqlite:///{repo_root() / DB_FILE}"
        )
    quiet = [logging.getLogger(name) for name in ("mlflow.store.db.utils", "alembic")]
    levels = [logger.level for logger in quiet]
    try:  # "Creating initial MLflow database tables..." is noise on the stage's stderr
        for logger in quiet:
            logger.setLevel(logging.WARNING)
        with FileLock(str(database) + ".lock", timeout=300):  # the stage that creates the tables holds it
            made = _created(database)
            if not made and not database.exists():
                _create_whole(database)
            elif not made:  # a file MLflow did not finish (or not a store): MLflow migrates it or says why not
                MlflowClient(uri).search_experiments(max_results=1)
        if made:
            MlflowClient(uri).search_experiments(max_results=1)  # answers, and its schema is MLflow's own
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    _READY.add(uri)
    return uri


def creation_lock(uri: str) -> contextlib.AbstractContextManager[object]:
    """A file lock that the processes writing to store ``uri`` share, for a look-up-then-create that
    must happen once (a study's parent run): beside the database of an SQLite store, in the
    repository's ``.dvc/tmp`` for a server (the stages of one study share the repository folder, on
    a cluster too); none where neither exists."""
    from filelock import FileLock

    if uri.startswith("sqlite:///"):
        return FileLock(uri.removeprefix("sqlite:///") + ".lock", timeout=300)
    folder = repo_root() / ".dvc" / "tmp"
    return (
        FileLock(str(folder / "cnnscope-study-run.lock"), timeout=300) if folder.is_dir() else contextlib.nullcontext()
    )


def _create_whole(database: Path) -> None:
    """Make a new store's tables in a scratch database, then move the finished store to ``database``.

    MLflow builds its schema by running each of its migrations as a committed transaction, and on a
    disk where every commit waits for ``fsync`` that is seconds of waiting per new store
    (benchmarks/README.md, "MLflow store creation"). The scratch database lives in a memory-backed
    folder (``/dev/shm``) where a commit costs nothing; the finished store is copied next to
    ``database`` with SQLite's backup API and renamed into place, so a stage killed meanwhile leaves
    no half-made ``mlflow.db``. The store's contents do not depend on its path (MLflow's default
    experiment points at the working folder's ``mlruns``, wherever the database is)."""
    import sqlite3
    import tempfile

    from mlflow.tracking import MlflowClient

    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if os.access(shm, os.W_OK) else database.parent) as scratch:
        made = Path(scratch) / DB_FILE
        MlflowClient(f"sqlite:///{made}").search_experiments(max_results=1)  # creates and migrates the tables
        partial = database.with_name(database.name + ".partial")
        with contextlib.closing(sqlite3.connect(made)) as source, contextlib.closing(sqlite3.connect(partial)) as copy:
            source.backup(copy)
        os.replace(partial, database)


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def preflight(configured: str | None = None) -> str:
    """Check once, before a stage does any work, that the MLflow store answers; return its URI.

    A remote server gets one request with a short timeout and no retries (MLflow's own
    ``MLFLOW_HTTP_REQUEST_TIMEOUT`` / ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``), and the rest of the
    stage runs with :data:`HTTP_DEFAULTS` unless the user set those variables. An embedded SQLite
    store is created (or migrated) here. Raises :class:`TrackingUnavailable` naming the fix.
    """
    uri = tracking_uri(configured)
    embedded = f"sqlite:///{repo_root() / DB_FILE}"
    source = "tracking.uri" if configured else "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else None
    try:
        if uri.startswith(("http://", "https://")):
            from mlflow.tracking import MlflowClient

            with _environ({k: v for k, v in PREFLIGHT_HTTP.items() if k not in os.environ}):
                MlflowClient(uri).search_experiments(max_results=1)
            for key, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)
        else:
            ensure_store(uri)
    except TrackingUnavailable:  # already says what is wrong and the fix
        raise
    except Exception as err:  # connection refused, timeout, HTTP error, unwritable or full disk
        errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(err))  # e.g. "Connection refused"
        reason = errno.group(1) if errno else (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        if uri.startswith(("http://", "https://")):
            fix = "start the server (mlflow server --host 127.0.0.1 --port <port>)"
        else:
            fix = "check that its folder is writable and the disk has space"
        if source is not None and uri != embedded:
            fix += f", or unset {source} to log to the embedded store {embedded}"
        raise TrackingUnavailable(f"MLflow store {uri} does not answer ({reason}): {fix}") from None
    return uri


def artifact_location(uri: str) -> str | None:
    """Keep artefacts of the embedded store beside it; a server decides for itself."""
    if uri == f"sqlite:///{repo_root() / DB_FILE}":
        return (repo_root() / ARTIFACT_DIR).as_uri()
    return None
