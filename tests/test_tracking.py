"""MLflow tracking: where the store is, run ids beside checkpoints, attaching results to a run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cnnscope import tracking, tracking_store
from cnnscope.io import git_commit


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module: creating the tables takes seconds."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    tracking.client(uri).create_experiment("tests")
    return uri


def test_default_store_is_under_dvc_root_when_dvc_runs_the_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)  # a queued experiment runs in a temporary copy elsewhere
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert tracking_store.artifact_location(tracking.tracking_uri()) == (tmp_path.resolve() / "mlartifacts").as_uri()


def test_default_store_is_at_the_git_root_without_dvc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo / "tests")
    assert tracking.tracking_uri() == f"sqlite:///{repo / 'mlflow.db'}"


def test_config_then_environment_override_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking.tracking_uri() == "http://mlflow.example:5000"
    assert tracking.tracking_uri("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert tracking_store.artifact_location("http://mlflow.example:5000") is None  # the server decides


def test_tags_name_variant_seed_code_data_and_dvc_experiment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_EXP_NAME", "lucky-hare")
    tags = tracking.run_tags("dummy", 2, "default", "abc123")
    assert tags["variant"] == "dummy" and tags["seed"] == "2" and tags["data_sha256"] == "abc123"
    assert tags["dvc_exp_name"] == "lucky-hare" and tags["git_commit"]


def test_run_id_file_round_trip(tmp_path: Path) -> None:
    assert tracking.read_run_id(tmp_path) is None
    tracking.write_run_id(tmp_path, "0123abc")
    assert tracking.read_run_id(tmp_path) == "0123abc"


def test_later_stages_attach_metrics_and_artifacts_to_an_existing_run(store: str, tmp_path: Path) -> None:
    logger = tracking.mlflow_logger("tests", "unit", {"variant": "v"}, uri=store)
    run_id = logger.run_id
    assert run_id is not None
    tracking.log_params(logger, {"trainer": {"max_epochs": 3}, "model": {"name": "mnist_cnn"}})
    figure = tmp_path / "fig.png"
    figure.write_bytes(b"\x89PNG")
    tracking.log_metrics(run_id, {"kl_divergence": 0.25}, uri=store)
    tracking.log_artifact(run_id, figure, uri=store, artifact_path="compare")
    tracking.end_run(run_id, "FINISHED", uri=store)
    client = tracking.client(store)
    run = client.get_run(run_id)
    assert run.data.params == {"trainer/max_epochs": "3", "model/name": "mnist_cnn"}
    assert run.data.metrics["kl_divergence"] == 0.25 and run.data.tags["variant"] == "v"
    assert [a.path for a in client.list_artifacts(run_id, "compare")] == ["compare/fig.png"]
    assert run.info.status == "FINISHED"
    # a resumed run continues the same MLflow run instead of opening a second one
    assert tracking.mlflow_logger("tests", "unit", {}, uri=store, run_id=run_id).run_id == run_id
    assert len(client.search_runs([run.info.experiment_id])) == 1


@pytest.mark.slow
def test_core_library_imports_without_mlflow() -> None:
    code = (
        "import sys, cnnscope.training, cnnscope.models, cnnscope.tracking;"
        "assert 'mlflow' not in sys.modules, 'mlflow imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_sqlite_store_in_a_missing_folder_is_an_error_not_a_new_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo or another machine's path in MLFLOW_TRACKING_URI must not create folders anywhere."""
    missing = tmp_path / "no" / "such"
    uri = f"sqlite:///{missing / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    needles = rf"{missing} does not exist; create it \(mkdir -p {missing}\).* or unset MLFLOW_TRACKING_URI"
    with pytest.raises(tracking.TrackingUnavailable, match=needles):
        tracking.preflight()
    with pytest.raises(tracking.TrackingUnavailable, match="does not exist"):
        tracking.client(uri)
    assert not (tmp_path / "no").exists()
    missing.mkdir(parents=True)  # given explicitly and made by the user: allowed, wherever it is
    assert tracking.preflight() == uri and (missing / "mlflow.db").is_file()


def test_a_model_s_run_id_lives_beside_it_and_only_while_its_checkpoint_is_the_same(tmp_path: Path) -> None:
    from cnnscope import tracking

    model = tmp_path / "models" / "benchmark" / "seed0"
    model.mkdir(parents=True)
    (model / "best.ckpt").write_bytes(b"weights of the trained network")
    tracking.record_model_run(model, "abc123")
    assert tracking.model_run_id(model) == "abc123"
    assert list(model.iterdir()) == [model / "best.ckpt"]  # nothing random inside the DVC output
    (model / "best.ckpt").write_bytes(b"weights restored from another run")  # e.g. DVC's run cache
    assert tracking.model_run_id(model) is None


@pytest.mark.parametrize(
    ("raised", "status"),
    [(None, "FINISHED"), (RuntimeError, "FAILED"), (KeyboardInterrupt, "KILLED"), (SystemExit, "KILLED")],
)
def test_the_runs_of_a_stage_end_with_it(store: str, raised: type[BaseException] | None, status: str) -> None:
    """The one pattern of every stage: the runs it owns (train's) or recorded (compare's, oip's) are
    FINISHED only when its block finished, FAILED on an error, KILLED on Ctrl-C or exit."""
    client = tracking.client(store)
    owned = str(client.create_run(client.get_experiment_by_name("tests").experiment_id).info.run_id)
    recorded: list[str | None] = []

    def stage() -> None:
        with tracking.stage_tracking("tests", store) as run:
            run.own(owned)
            recorded.append(run.record("oip", "unit", lambda: owned, {"oip": {"steps": 3}}, {"m": 1.0}, []))
            assert client.get_run(owned).info.status == "RUNNING"  # not before the block ends
            if raised is not None:
                raise raised()

    if raised is None:
        stage()
    else:
        with pytest.raises(raised):
            stage()
    (child,) = recorded
    assert child is not None and client.get_run(child).data.params == {"oip/steps": "3"}
    assert client.get_run(child).data.tags["mlflow.parentRunId"] == owned
    assert {client.get_run(r).info.status for r in (owned, child)} == {status}


def test_a_stage_checks_the_store_before_its_work(tmp_path: Path) -> None:
    entered = []
    with pytest.raises(tracking.TrackingUnavailable, match="does not exist"):  # noqa: SIM117
        with tracking.stage_tracking("tests", f"sqlite:///{tmp_path / 'no' / 'mlflow.db'}"):
            entered.append(True)
    assert not entered and not (tmp_path / "no").exists()


def test_a_new_store_appears_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage stopped while MLflow makes a new store's tables must leave no half-migrated ``mlflow.db``
    for the next stage to trip on: the tables are made in a scratch database, and the store appears
    only when it is finished. The finished store is MLflow's own: it logs, and has MLflow's default
    experiment."""
    import mlflow.tracking

    database = tmp_path / "mlflow.db"
    uri = f"sqlite:///{database}"

    class StoppedAfterMigrating(mlflow.tracking.MlflowClient):  # type: ignore[misc]
        def search_experiments(self, *args: object, **kwargs: object) -> object:
            super().search_experiments(*args, **kwargs)  # the tables are made...
            raise KeyboardInterrupt  # ... and the stage is stopped (Ctrl-C) before it goes on

    with monkeypatch.context() as patch:
        patch.setattr(mlflow.tracking, "MlflowClient", StoppedAfterMigrating)
        with pytest.raises(KeyboardInterrupt):
            tracking_store.ensure_store(uri)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db.lock"]

    monkeypatch.setattr(tracking_store, "_READY", set())
    tracking_store.ensure_store(uri)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "mlflow.db.lock"]
    client = mlflow.tracking.MlflowClient(uri)
    run = client.create_run(client.create_experiment("made whole"))
    client.log_metric(run.info.run_id, "m", 1.0)
    assert {e.name for e in client.search_experiments()} == {"Default", "made whole"}
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}


def test_only_the_stage_that_makes_the_store_starts_mlflow_under_its_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parallel stages must not queue behind one another's MLflow client start-up (it checks the
    schema, about a second): the store's file lock is held while the first stage makes the tables,
    and a stage that finds them made only looks, then starts its client with the lock free."""
    import mlflow.tracking
    from filelock import FileLock, Timeout

    database = tmp_path / "mlflow.db"
    under_lock: list[bool] = []

    class Spy(mlflow.tracking.MlflowClient):  # type: ignore[misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            try:
                with FileLock(f"{database}.lock", timeout=0):
                    under_lock.append(False)
            except Timeout:
                under_lock.append(True)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(mlflow.tracking, "MlflowClient", Spy)
    for _ in range(2):  # a first stage on a fresh store, then another stage process
        monkeypatch.setattr(tracking_store, "_READY", set())
        tracking_store.ensure_store(f"sqlite:///{database}")
    assert under_lock == [True, False]
    database.write_bytes(b"not a database" * 100)  # unreadable: MLflow is asked, under the lock, and says so
    monkeypatch.setattr(tracking_store, "_READY", set())
    with pytest.raises(Exception, match="not a database"):
        tracking_store.ensure_store(f"sqlite:///{database}")
    assert under_lock[2] is True


def test_a_stage_that_loses_the_race_to_create_the_experiment_uses_the_winners(store: str) -> None:
    """Two stages started side by side on a new store both find the experiment missing; the second
    create fails (it exists by then) and must read the experiment, not fail the stage."""
    from mlflow.tracking import MlflowClient

    class LateClient(MlflowClient):  # type: ignore[misc]
        def __init__(self, uri: str) -> None:
            super().__init__(uri)
            self.looked = 0

        def get_experiment_by_name(self, name: str) -> object:
            self.looked += 1
            if self.looked == 1:  # it looked before the other stage created it ...
                MlflowClient(store).create_experiment(name)  # ... which happens now
                return None
            return super().get_experiment_by_name(name)

    found = tracking._experiment_id(LateClient(store), "raced", store)
    assert found == MlflowClient(store).get_experiment_by_name("raced").experiment_id


def test_stages_that_look_up_the_study_run_side_by_side_make_one(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two stages finishing at once on a study with no parent run yet: each looks it up, and the
    look-up is slow enough (as on a busy store) that both would find none and create one each."""
    import contextlib
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.tracking import MlflowClient

    looking = threading.Barrier(2, timeout=5)
    search = MlflowClient.search_runs

    def slow_search(self: MlflowClient, *args: object, **kwargs: object) -> object:
        found = search(self, *args, **kwargs)
        if not found:
            with contextlib.suppress(threading.BrokenBarrierError):  # both inside the look-up at once, unless one waits
                looking.wait(timeout=1)
            time.sleep(0.2)
        return found

    monkeypatch.setattr(MlflowClient, "search_runs", slow_search)
    with ThreadPoolExecutor(2) as pool:
        ids = list(pool.map(lambda _: tracking.study_run("side-by-side", "s", "key-1", store), range(2)))
    exp = MlflowClient(store).get_experiment_by_name("side-by-side")
    studies = search(MlflowClient(store), [exp.experiment_id], filter_string="tags.`cnnscope.study_key` = 'key-1'")
    assert len(studies) == 1 and ids == [studies[0].info.run_id] * 2


def test_the_git_commit_is_dirty_for_code_changes_not_for_what_dvc_repro_writes(tmp_path: Path) -> None:
    """Stages record the commit with ``-dirty`` when code changed; the lock files (the root one and
    stages/<kind>/dvc.lock) and reports/ change while the pipeline runs, so they must not count."""
    ident = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    files = ["dvc.lock", "stages/train/dvc.lock", "reports/a.md", "src.py"]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("1")
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "c"]):
        subprocess.run(command, cwd=tmp_path, check=True, env={**os.environ, **ident})
    clean = git_commit(tmp_path)
    for name in files[:-1]:
        (tmp_path / name).write_text("2")
    assert git_commit(tmp_path) == clean and not clean.endswith("-dirty")
    (tmp_path / "src.py").write_text("2")
    assert git_commit(tmp_path) == f"{clean}-dirty"


def test_recording_the_commit_takes_no_lock_that_a_git_add_beside_it_could_hit(tmp_path: Path) -> None:
    """Stages record the commit while other stages are recorded: DVC stages its lock files with
    ``git add`` (``core.autostage``), which fails when ``.git/index.lock`` is held. A ``git status``
    that refreshes the index holds it (found by `runner_scaling.py`: ``train@untrained-0`` failed with
    "index.lock: File exists"); without the optional locks it does not. A file whose stat changed
    before every check makes each refresh a write."""
    ident = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for i in range(200):
        (tmp_path / f"f{i}.txt").write_text(str(i))
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "c"]):
        subprocess.run(command, cwd=tmp_path, check=True, env={**os.environ, **ident})
    stop, failed = threading.Event(), []

    def record() -> None:
        while not stop.is_set():
            os.utime(tmp_path / "f1.txt")
            git_commit(tmp_path)

    recorder = threading.Thread(target=record)
    recorder.start()
    try:
        for i in range(150):
            (tmp_path / "dvc.lock").write_text(str(i))
            done = subprocess.run(["git", "add", "dvc.lock"], cwd=tmp_path, capture_output=True, text=True)
            if done.returncode != 0:
                failed.append(done.stderr.strip())
    finally:
        stop.set()
        recorder.join()
    assert failed == []
