"""Review in MLflow: a small pipeline's study run, its variant runs, their metrics and figures
are served by a real ``mlflow server`` over the embedded store (REST API, 127.0.0.1 only). The
pipeline is the session's ``tiny_study``, shared with the shipped-evidence tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from conftest import TINY_STUDY_GROUP
from pipeline import MLFLOW_SERVER_ENV, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(TINY_STUDY_GROUP)]


class MlflowServer:
    def __init__(self, store: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{store}"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        environment = os.environ | MLFLOW_SERVER_ENV
        self.process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"mlflow server exited: {self.process.stderr.read()}") from None  # type: ignore[union-attr]
                time.sleep(0.5)
        raise TimeoutError("mlflow server did not answer /health within 90 s")

    def get(self, endpoint: str, **query: str) -> Any:
        with urllib.request.urlopen(f"{self.base}{endpoint}?{urllib.parse.urlencode(query)}", timeout=10) as reply:
            body = reply.read()
        return json.loads(body) if endpoint.startswith("/api/") else body

    def post(self, path: str, payload: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            f"{self.base}{path}", json.dumps(payload).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def test_study_and_variant_runs_are_served(tiny_study: tuple[Path, dict[str, Any]]) -> None:
    workdir, params = tiny_study
    server = MlflowServer(workdir / "mlflow.db")
    try:
        experiment = server.get("/api/2.0/mlflow/experiments/get-by-name", experiment_name="cnnscope")
        exp_id = experiment["experiment"]["experiment_id"]
        runs = server.post("/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id]})["runs"]
        studies = [r for r in runs if tags(r).get("cnnscope.kind") == "study"]
        assert len(studies) == 1, "one study run per pipeline run"
        study_id = studies[0]["info"]["run_id"]
        children = [r for r in runs if tags(r).get("mlflow.parentRunId") == study_id]
        trained = [r for r in children if "cnnscope.kind" not in tags(r)]
        study = params["study"]
        jobs = sorted((v, str(s)) for v in study["variants"] for s in study["seeds"])
        assert sorted((tags(r)["variant"], tags(r)["seed"]) for r in trained) == jobs  # one run per job
        assert [tags(r)["cnnscope.kind"] for r in children if "cnnscope.kind" in tags(r)] == ["compare"]
        for run in trained:
            name = f"{tags(run)['variant']}-seed{tags(run)['seed']}"
            metrics = {m["key"] for m in run["data"]["metrics"]}
            assert {"test_acc", "test_loss"} <= metrics, name
            assert run["info"]["status"] == "FINISHED"
            files = server.get("/api/2.0/mlflow/artifacts/list", run_id=run["info"]["run_id"]).get("files", [])
            assert "confusion.png" in {Path(f["path"]).name for f in files}, name
            (oip,) = [r for r in runs if tags(r).get("mlflow.parentRunId") == run["info"]["run_id"]]
            assert tags(oip)["cnnscope.kind"] == "oip" and oip["info"]["status"] == "FINISHED", name
            assert "oip/dead_maps" in {m["key"] for m in oip["data"]["metrics"]}, name
            files = server.get("/api/2.0/mlflow/artifacts/list", run_id=oip["info"]["run_id"]).get("files", [])
            assert "oip_grid.png" in {Path(f["path"]).name for f in files}, name
        benchmark = next(r["info"]["run_id"] for r in trained if tags(r)["variant"] == "benchmark")
        png = server.get("/get-artifact", path="confusion.png", run_uuid=benchmark)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        report = server.get("/api/2.0/mlflow/artifacts/list", run_id=study_id, path="report")
        assert "report/README.md" in {f["path"] for f in report["files"]}
        atlas = server.get("/api/2.0/mlflow/artifacts/list", run_id=study_id, path="atlas")
        assert "atlas/overview.html" in {f["path"] for f in atlas["files"]}  # the atlas stage attaches its site
        study_metrics = {m["key"] for m in studies[0]["data"]["metrics"]}
        assert "test_acc.benchmark" in study_metrics
    finally:
        server.stop()
