"""What issue 24's hostile re-run (``benchmarks/hostile_cases.py``) and issue 26 left to test:
a training job killed outright in its test phase; ``oip.maps`` of an ImageFolder source without a
declared image size, checked before any work; and a step-matched variant's training that DVC re-runs
when its reference variant's spec changes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from cnnscope import tracking
from cnnscope.compose import compose_params
from cnnscope.config import ConfigError, validate
from cnnscope.runner.dag import stage_definitions
from conftest import REPO_ROOT, synthetic_study, write_params
from pipeline import BIN, TINY, clean_env, copy_of_repo, dvc_target

try:  # the stage runner of tests/pipeline.py, under its new name or its old one
    from pipeline import run_stage_as_dvc as run_stage_main
except ImportError:  # pragma: no cover
    from pipeline import run_stage_main  # type: ignore[attr-defined,no-redef]

# ---------------------------------------------------------------- kill -9 in the test phase (issue 24, item 5)

#: Starts ``pipelines/train.py`` with Lightning's ``on_test_start`` hook replaced by one that
#: writes a marker file and waits: the test knows the process is in its test phase, with no sleep
#: in the code under test.
_IN_TEST_PHASE = """
import runpy, sys, time
from pathlib import Path
from typing import Any
from cnnscope.training.module import CNNModule

marker = Path(sys.argv[1])

def on_test_start(self):
    marker.write_text("in the test phase")
    time.sleep(3600)

CNNModule.on_test_start = on_test_start
script, sys.argv = sys.argv[2], [sys.argv[2], *sys.argv[3:]]
runpy.run_path(script, run_name="__main__")
"""


def _outputs(root: Path) -> dict[str, str]:
    """The stage's outputs (model folder, metrics, plots) with their SHA-256."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in ("models", "metrics", "plots")
        for p in sorted((root / folder).rglob("*"))
        if p.is_file() and ".partial" not in str(p)
    }


def _set_epochs(root: Path, epochs: int) -> None:
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["trainer"]["max_epochs"] = epochs
    (root / "params.yaml").write_text(yaml.safe_dump(raw))


@pytest.fixture
def train_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Synthetic prepared data and a small CPU study with an MLflow store of its own."""
    raw = synthetic_study(
        tmp_path,
        {"max_epochs": 1, "patience": 5},
        {"variants": ["benchmark", "untrained"], "seeds": [0], "oip_seeds": [0], "contrasts": []},
    )
    write_params(tmp_path, raw)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_a_job_killed_in_its_test_phase_is_not_finished_and_keeps_the_last_good_model(train_dir: Path) -> None:
    train = ["--variant", "benchmark", "--seed", "0", "--no-progress"]
    assert run_stage_main("train", train, train_dir) == 0  # the last good model
    before = _outputs(train_dir)
    good_run = tracking.model_run_id(train_dir / "models/benchmark/seed0")
    uri = f"sqlite:///{train_dir / 'mlflow.db'}"
    _set_epochs(train_dir, 2)  # another job: it trains anew in models/benchmark/.seed0.partial/
    marker = train_dir / "in-test-phase"
    command = [sys.executable, "-c", _IN_TEST_PHASE, str(marker), str(REPO_ROOT / "pipelines/train.py"), *train]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    proc = subprocess.Popen(
        command, cwd=train_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while not marker.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if not marker.is_file():
        proc.kill()
        pytest.fail(f"the job did not reach its test phase: {proc.communicate(timeout=60)[1][-2000:]}")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    work = train_dir / "models/benchmark/.seed0.partial"
    killed = (work / "mlflow_run_id.txt").read_text().strip()
    assert tracking.client(uri).get_run(killed).info.status == "RUNNING"  # not FINISHED: the job did not finish
    assert tracking.client(uri).get_run(str(good_run)).info.status == "FINISHED"
    assert _outputs(train_dir) == before, "the killed job changed the last good model, its metrics or plots"
    assert not [p for p in train_dir.rglob("*") if p.name.endswith((".tmp", ".old"))]
    assert json.loads((work / "run_state.json").read_text())["complete"] is False
    # the next run of another job abandons the killed one and marks its MLflow run KILLED
    _set_epochs(train_dir, 1)
    assert run_stage_main("train", train, train_dir) == 0
    assert tracking.client(uri).get_run(killed).info.status == "KILLED"
    assert not work.exists()


# ---------------------------------------------------------------- oip.maps of an ImageFolder source (issue 24)


def _tree(root: Path, size: int, mode: str = "L") -> Path:
    for k in range(3):
        (root / f"class{k}").mkdir(parents=True)
        for i in range(4):
            Image.new(mode, (size, size), color=k * 40 + i).save(root / f"class{k}" / f"{i}.png")
    return root


def _imagefolder(root: Path, *more: str) -> dict[str, Any]:
    params = compose_params(["data=imagefolder", f"data.root={root}", "data.image_size=null", "data.probes=[]", *more])
    return params


def test_oip_maps_of_an_imagefolder_without_an_image_size_fail_at_composition(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree", size=24)
    _imagefolder(root, "oip.maps=[0,127]")  # mnist_cnn's deepest layer has 128 maps at any input size
    with pytest.raises(ConfigError, match=r"oip\.maps=\[0, 500\]: \[500\] out of range .* 128 maps"):
        _imagefolder(root, "oip.maps=[0,500]")
    with pytest.raises(ConfigError, match=r"oip\.wavelengths=\[1, 30\]: each must be 1\.\.24 pixels"):
        _imagefolder(root, "oip.wavelengths=[1,30]")


def test_oip_maps_of_an_imagefolder_tarball_are_checked_from_its_first_image(tmp_path: Path) -> None:
    import tarfile

    tree = _tree(tmp_path / "tree", size=20, mode="RGB")
    tarball = tmp_path / "images.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tree, arcname="images")
    with pytest.raises(ConfigError, match=r"oip\.maps"):
        _imagefolder(tarball, "oip.maps=[500]")


def test_the_validate_stage_rejects_oip_maps_of_an_imagefolder_before_prepare(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree", size=24)
    params = _imagefolder(root)
    params["oip"]["maps"] = [0, 500]  # as a hand-edited params.yaml would hold it
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_stage_main("validate", [], tmp_path) == 2
    assert not (tmp_path / ".validated").exists() and not (tmp_path / "data").exists()


def test_the_image_suffixes_are_those_of_the_imagefolder_reader() -> None:
    from cnnscope.config_sizes import IMAGE_SUFFIXES
    from cnnscope.data.sources import IMAGE_SUFFIXES as READ

    assert IMAGE_SUFFIXES == READ


def test_an_unreadable_imagefolder_is_left_to_prepare(tmp_path: Path) -> None:
    """No image, or a folder that does not exist: nothing to check the maps against here; the
    prepare stage names the problem."""
    raw = _imagefolder(_tree(tmp_path / "tree", size=24))
    (tmp_path / "empty" / "class0").mkdir(parents=True)
    for root in (tmp_path / "missing", tmp_path / "empty"):
        raw["data"]["root"] = str(root)
        raw["oip"]["maps"] = [0, 500]
        validate(raw)


# ---------------------------------------------------------------- the step-matched variant's params (issue 26)


def test_the_step_matched_variant_carries_its_reference_spec_in_its_own_params() -> None:
    stages = stage_definitions(REPO_ROOT)
    assert "study.variant_specs.${item.variant}" in stages["train"]["params"]
    base = compose_params()["study"]["variant_specs"]
    wider = compose_params(["+study.variant_specs.benchmark.model.width=2.0"])["study"]["variant_specs"]
    assert base["dummy_steps"]["match_steps_spec"] == base["benchmark"]
    assert wider["dummy_steps"] != base["dummy_steps"] and wider["dummy"] == base["dummy"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("study.variant_specs.dummy_steps.match_steps_spec=null", "must be a copy of study.variant_specs.benchmark"),
        ("+study.variant_specs.dummy.match_steps_spec={}", "match_steps_spec is set but match_steps_of is null"),
        ("study.variant_specs.dummy_steps.match_steps_of=nosuch", "must name another trained variant"),
        ("study.variant_specs.dummy_steps.match_steps_of=dummy_steps", "must name another trained variant"),
    ],
)
def test_a_missing_or_stale_reference_copy_fails_at_composition(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        compose_params([override])


def test_a_hand_edited_reference_spec_without_its_copy_is_rejected() -> None:
    raw = compose_params()
    raw["study"]["variant_specs"]["benchmark"]["model"] = {"width": 2.0}  # the copy still says {}
    with pytest.raises(ConfigError, match=r"dummy_steps\.match_steps_spec must be a copy"):
        validate(raw)


@pytest.mark.slow
def test_changing_the_reference_spec_makes_only_the_step_matched_training_stale(tmp_path: Path) -> None:
    """``dvc status`` on recorded train stages (their outputs stand in for trained ones: no training)."""
    repo = copy_of_repo(tmp_path / "repo")
    compose = [str(BIN / "python"), "-m", "cnnscope.compose", *TINY, "study.variants=[benchmark,dummy,dummy_steps]"]
    subprocess.run(compose, cwd=repo, env=clean_env(), check=True, capture_output=True)
    (repo / "data/prepared").mkdir(parents=True)
    (repo / "data/prepared/dataset.pt").write_text("stands in for the prepared data")
    targets = ["train@dummy-0", "train@dummy_steps-0"]
    for variant in ("dummy", "dummy_steps"):
        (repo / f"models/{variant}/seed0").mkdir(parents=True)
        (repo / f"models/{variant}/seed0/best.ckpt").write_text(variant)
        for path in (f"metrics/train/{variant}_seed0.json", f"plots/train/{variant}_seed0.csv"):
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).write_text("{}" if path.endswith("json") else "epoch,val_acc\n0,0.1\n")

    def dvc(*args: str) -> str:
        proc = subprocess.run([str(BIN / "dvc"), *args], cwd=repo, env=clean_env(), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    dvc("commit", "-f", *map(dvc_target, targets))
    assert json.loads(dvc("status", "--json", *map(dvc_target, targets))) == {}
    subprocess.run([*compose, "+study.variant_specs.benchmark.model.width=2.0"], cwd=repo, env=clean_env(), check=True)
    stale = json.loads(dvc("status", "--json", *map(dvc_target, targets)))
    assert list(stale) == [dvc_target("train@dummy_steps-0")], stale
    assert "study.variant_specs.dummy_steps" in json.dumps(stale)


# ---------------------------------------------------------------- a damaged prepared dataset (hostile_cases.py)


@pytest.mark.parametrize("damage", ["truncated", "not-a-checkpoint"])
def test_a_damaged_prepared_dataset_is_one_line_naming_the_fix(
    train_dir: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    """hostile_cases.py's truncated-dataset case: a traceback from torch.load before this."""
    dataset = train_dir / "data/prepared/dataset.pt"
    data = dataset.read_bytes()
    dataset.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"not a checkpoint at all")
    capsys.readouterr()
    assert run_stage_main("train", ["--variant", "benchmark", "--seed", "0", "--no-progress"], train_dir) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("cnnscope: error: ") and "dataset.pt cannot be read" in last and "dvc repro prepare" in last
    assert not (train_dir / "models").exists()


@pytest.mark.parametrize(
    ("override", "key"), [("workers=-1", "runner.workers=-1"), ("gpu_share=0", "runner.gpu_share=0")]
)
def test_a_runner_count_out_of_range_is_refused_before_any_work(override: str, key: str) -> None:
    """hostile_cases.py: `cnnscope repro -o runner.workers=-1` said "Everything is up to date" and exited 0."""
    from cnnscope.errors import CnnscopeError
    from cnnscope.runner.cluster import runner_config

    with pytest.raises(CnnscopeError, match=f"{key} is out of range"):
        runner_config("local", [override])
    assert runner_config("local", ["workers=2"])["workers"] == 2


@pytest.mark.parametrize("override", ["first_run_seconds.oip=-1", "first_run_seconds.oip=slow"])
def test_a_first_run_guess_that_is_not_seconds_is_refused(override: str) -> None:
    from cnnscope.errors import CnnscopeError
    from cnnscope.runner.cluster import runner_config

    with pytest.raises(CnnscopeError, match=r"first_run_seconds=.* must map stage kinds to seconds"):
        runner_config("local", [override])
    for cluster in ("local", "slurm", "pbs"):  # every cluster orders a first run the same way
        assert runner_config(cluster)["first_run_seconds"]["compare"] > 0
