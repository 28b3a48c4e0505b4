"""The runner on the real pipeline. A tiny study run by ``cnnscope repro`` on a separate Dask
scheduler and two worker processes (as on a cluster), logging to a real ``mlflow server``, and the
same study run at the same time by plain ``dvc repro`` in a second clone at another path, give the
same ``dvc.lock`` and the same report bytes; the first clone's outputs, pushed to a DVC remote, are
pulled by a third clone that then has nothing to run."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from cnnscope import tracking_store
from cnnscope.runner.dag import pipeline_files
from pipeline import BIN, MLFLOW_SERVER_ENV, TINY, clean_env, copy_of_repo, dask_worker, dvc, free_port

pytestmark = pytest.mark.slow
GIT_ID = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def tiny_clone(target: Path) -> Path:
    """A copy of the repository set to the tiny study with one network (every stage kind, 12 stages): the
    study runs twice here, and the untrained control adds nothing the other study tests lack."""
    repo = copy_of_repo(target)
    compose = [str(BIN / "python"), "-m", "cnnscope.compose", *TINY, "study.variants=[benchmark]"]
    subprocess.run(compose, cwd=repo, env=clean_env(), check=True, capture_output=True)
    subprocess.run(["git", "commit", "-qam", "tiny study"], cwd=repo, env=clean_env() | GIT_ID, check=True)
    return repo


def outs(repo: Path) -> dict[str, object]:
    """Every stage's output hashes in the lock files (the entries' order follows the finishing order)."""
    locks = [path.with_suffix(".lock") for path in pipeline_files(repo)]
    entries = [yaml.safe_load(lock.read_text())["stages"] for lock in locks if lock.is_file()]
    return {stage: entry.get("outs") for lock in entries for stage, entry in lock.items()}


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@contextlib.contextmanager
def dask_cluster(address_file: Path, workers: int) -> Iterator[str]:
    """A `dask scheduler` and one-thread `dask worker` processes, as started on a cluster; its address."""
    env = clean_env() | {"DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0"}
    command = [str(BIN / "dask"), "scheduler", "--port", "0", "--no-dashboard", "--scheduler-file", str(address_file)]
    processes = [subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not address_file.exists():
            assert time.monotonic() < deadline, "dask scheduler did not start"
            time.sleep(0.2)
        time.sleep(0.5)
        processes += [
            subprocess.Popen(dask_worker(address_file), env=env, stderr=subprocess.DEVNULL) for _ in range(workers)
        ]
        time.sleep(3)
        yield str(json.loads(address_file.read_text())["address"])
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(30)


def runs(uri: str) -> list[object]:
    client = MlflowClient(uri)
    return [run for exp in client.search_experiments() for run in client.search_runs([exp.experiment_id])]


def test_runner_and_dvc_repro_agree_across_clones_and_share_through_a_remote(tmp_path: Path) -> None:
    parallel = tiny_clone(tmp_path / "a" / "clone")
    serial = tmp_path / "another" / "deeper" / "path"  # a clone of the same commit (provenance records it)
    subprocess.run(["git", "clone", "-q", str(parallel), str(serial)], check=True)
    # the serial clone runs meanwhile (its own folder, DVC cache and MLflow store): the servers' start-up
    # and the runner's waits for DVC's repository lock leave room for its one stage at a time
    background = ThreadPoolExecutor(1)
    serial_run = background.submit(dvc, serial, "repro")
    port = free_port()
    server_db = f"sqlite:///{tmp_path / 'server.db'}"
    tracking_store.ensure_store(server_db)  # its tables made as a stage makes them: seconds sooner than in place
    store = [f"--backend-store-uri={server_db}", f"--default-artifact-root={tmp_path / 'art'}"]
    command = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), *store]
    environment = clean_env() | MLFLOW_SERVER_ENV
    server = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                MlflowClient(uri).search_experiments()
                break
            except Exception:
                assert time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(1)
        env = clean_env() | {"MLFLOW_TRACKING_URI": uri}
        with dask_cluster(tmp_path / "scheduler.json", workers=2) as address:  # as on a cluster: separate processes
            command = [str(BIN / "cnnscope"), "repro", "--scheduler", address]
            done = subprocess.run(
                command, cwd=parallel, env=env, capture_output=True, text=True, timeout=1500, check=False
            )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "on 2 workers" in done.stderr
        server_runs = runs(uri)
    finally:
        server.terminate()
        server.wait(30)
        serial_run.result()
        background.shutdown()

    assert outs(parallel) == outs(serial)  # models, activations, OIPs...: the same bytes at both paths
    study = yaml.safe_load((parallel / "params.yaml").read_text())["study"]["name"]
    assert tree_digest(parallel / "reports" / study) == tree_digest(serial / "reports" / study)
    assert "Data and pipelines are up to date." in dvc(parallel, "status")
    plots = json.loads(dvc(parallel, "plots", "show", "--json"))  # README: `dvc plots show` draws them all
    assert not plots.get("errors") and len(plots["data"]) > 2, plots.get("errors")
    # every stage's MLflow run reached the server (as many as the serial run's embedded store has), none left RUNNING
    local_runs = runs(f"sqlite:///{serial / 'mlflow.db'}")
    assert len(server_runs) == len(local_runs) > 3
    assert {r.info.status for r in server_runs} == {"FINISHED"}  # type: ignore[attr-defined]

    remote = tmp_path / "remote"
    dvc(parallel, "remote", "add", "-d", "shared", str(remote))
    dvc(parallel, "push")
    subprocess.run(["git", "add", "-A"], cwd=parallel, check=True)
    subprocess.run(["git", "commit", "-qm", "results"], cwd=parallel, env=clean_env() | GIT_ID, check=True)
    pulled = tmp_path / "third" / "clone"
    subprocess.run(["git", "clone", "-q", str(parallel), str(pulled)], check=True)
    dvc(pulled, "pull")
    assert "Data and pipelines are up to date." in dvc(pulled, "status")
    again = subprocess.run(
        [str(BIN / "cnnscope"), "repro"], cwd=pulled, env=clean_env(), capture_output=True, text=True, check=False
    )
    assert again.returncode == 0 and "Everything is up to date" in again.stdout
    shutil.rmtree(remote)


WRITER = """import sys
from cnnscope import tracking
uri, worker = sys.argv[1], sys.argv[2]
for i in range(6):  # as a stage does: the store checked, one run recorded, ended with the stage
    with tracking.stage_tracking("parallel", uri) as run:
        run.record("oip", f"{worker}-{i}", lambda: None, {"i": i}, {"m": float(i)}, [], {})
"""


def test_parallel_writers_lose_no_run_to_a_locked_sqlite_store(tmp_path: Path) -> None:
    """Four stage processes at once on the embedded SQLite store, as parallel workers do: every run
    is recorded and finished (cnnscope retries "database is locked")."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    writers = [
        subprocess.Popen(
            [str(BIN / "python"), str(script), uri, f"w{k}"],
            cwd=tmp_path,
            env=clean_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(4)
    ]
    errors = [w.communicate(timeout=600)[1] for w in writers]
    assert all(w.returncode == 0 for w in writers), errors
    assert not any("could not" in e for e in errors), errors  # no run given up
    recorded = runs(uri)
    assert len(recorded) == 24 and {r.info.status for r in recorded} == {"FINISHED"}  # type: ignore[attr-defined]
