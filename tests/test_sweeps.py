"""Sweeps, tested small: a 2-point DVC queue sweep and a 2-trial Optuna multirun both land in MLflow,
and the SLURM launcher preset composes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from pipeline import TINY, clean_env, copy_of_repo, dvc, dvc_target

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow
TRAIN = dvc_target("train@benchmark-0")


def test_dvc_queue_sweep_runs_in_isolation_and_lands_in_mlflow(tmp_path: Path) -> None:
    """Each queued experiment runs in its own workspace, with its own results and MLflow runs. The
    target `oip@benchmark-0` (validate, prepare, train, oip: the stages whose records the test reads)
    keeps the two experiments to 4 stages each instead of the whole tiny study."""
    repo = copy_of_repo(tmp_path / "repo")
    sweep = ["-S", "model.lr=0.001,0.01", *(a for o in TINY for a in ("-S", o))]
    dvc(repo, "exp", "run", "--queue", *sweep, dvc_target("oip@benchmark-0"))
    dvc(repo, "queue", "start", "-j", "2")
    deadline = time.monotonic() + 900
    while "Running" in (status := dvc(repo, "queue", "status")) or "Queued" in status:
        assert time.monotonic() < deadline, status
        time.sleep(5)
    assert status.count("Success") == 2, status
    table = json.loads(dvc(repo, "exp", "show", "--json"))
    experiments = [e for rev in table for e in (rev.get("experiments") or [])]
    lrs, accuracies = set(), set()
    for exp in experiments:
        data = exp["revs"][0]["data"]
        lrs.add(data["params"]["params.yaml"]["data"]["model"]["lr"])
        accuracies.add(data["metrics"]["metrics/train/benchmark_seed0.json"]["data"]["test_acc"])
    assert lrs == {0.001, 0.01} and len(accuracies) == 2, "each experiment has its own results"
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")  # the real repository's store, not the copies'
    runs = client.search_runs([client.get_experiment_by_name("cnnscope").experiment_id])
    studies = {r.data.tags["dvc_exp_name"] for r in runs if r.data.tags.get("cnnscope.kind") == "study"}
    assert len(studies) == 2 and "" not in studies
    training = [r for r in runs if "cnnscope.kind" not in r.data.tags]
    assert sum(r.data.tags.get("variant") == "benchmark" for r in training) == 2
    oip = {r.data.tags["dvc_exp_name"] for r in runs if r.data.tags.get("cnnscope.kind") == "oip"}
    assert oip == studies, "each experiment's oip runs are its own"


def test_optuna_multirun_logs_every_trial(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [sys.executable, "-m", "cnnscope.tune", "-m", "+hparams_search=optuna", "hydra.sweeper.n_trials=2"]
    # a short trial (1 epoch on 1,000 digits): the test is about the sweep reaching MLflow, not the training
    command += ["trainer.max_epochs=1", "data.train_size=1000", f"hydra.sweep.dir={tmp_path / 'multirun'}"]
    command += [f"tracking.uri={store}"]
    result = subprocess.run(command, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("cnnscope-tune").experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.params["model/lr"] for r in runs}) == 2, "the sweeper varied the learning rate"
    assert all("best_val_acc" in r.data.metrics or "val_acc" in r.data.metrics for r in runs)


def test_slurm_launcher_preset_composes() -> None:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("config", overrides=["+hparams_search=optuna", "+launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.direction == "maximize"


def test_switching_studies_back_restores_training_from_the_run_cache(tmp_path: Path) -> None:
    # train outputs are not `persist`, so DVC's run cache holds every trained job: going back to a
    # configuration trained before restores its networks instead of retraining them
    repo = copy_of_repo(tmp_path / "repo")

    def train(*overrides: str) -> tuple[str, bytes]:
        compose = [str(BIN / "python"), "-m", "cnnscope.compose", *TINY, *overrides]
        subprocess.run(compose, cwd=repo, env=clean_env(), check=True, capture_output=True)
        log = dvc(repo, "repro", TRAIN)
        return log, (repo / "models/benchmark/seed0/best.ckpt").read_bytes()

    first_log, first = train("study.name=a")
    assert f"Running stage '{TRAIN}'" in first_log
    other_log, other = train("study.name=b", "model.lr=0.01")
    assert f"Running stage '{TRAIN}'" in other_log and other != first
    back_log, back = train("study.name=a")
    assert f"Running stage '{TRAIN}'" not in back_log, back_log
    assert "is cached" in back_log and back == first
