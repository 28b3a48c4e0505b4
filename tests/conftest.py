"""Shared fixtures: a small prepared dataset and checkpoints in the pipeline's own formats.

Tests build their inputs with the same code paths the stages use (``PreparedData.save``,
``models.save_checkpoint``), so a change to a format breaks the tests that depend on it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import lightning.pytorch  # noqa: F401  # before any test captures stderr: its log handler keeps the stream it saw
import pytest
import torch
import yaml

from cnnscope.activations import ActivationSet, ImageGroup, extract_activations, resolve_layers
from cnnscope.compose import model_knobs
from cnnscope.data.prepared import PreparedData
from cnnscope.layout import run_dir
from cnnscope.models import LayeredCNN, build_model, save_checkpoint

if TYPE_CHECKING:
    from cnnscope.analysis.measures import MeasureSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def synthetic_prepared(n_per_class: int = 20, channels: int = 1, size: int = 28, seed: int = 0) -> PreparedData:
    """Ten classes of noisy bars (class k: a bright bar at row 2k+4), split 60/20/20 plus 5 probes."""
    gen = torch.Generator().manual_seed(seed)
    n = 10 * n_per_class
    labels = torch.arange(10).repeat_interleave(n_per_class)
    images = (torch.rand(n, channels, size, size, generator=gen) * 60).to(torch.uint8)
    for i, k in enumerate(labels.tolist()):
        row = (2 * k + 4) % size
        images[i, :, row : row + 2, 3:-3] = 230
    order = torch.randperm(n, generator=gen)
    n_train, n_val = int(0.6 * n), int(0.2 * n)
    train, val, test = order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
    probe, test = test[:5], test[5:]
    scaled = images[train].float() / 255
    return PreparedData(
        images=images,
        labels=labels,
        classes=[str(k) for k in range(10)],
        mean=scaled.mean(dim=(0, 2, 3)).tolist(),
        std=scaled.std(dim=(0, 2, 3)).tolist(),
        splits={"train": train, "val": val, "test": test, "probe": probe},
        subsets={"0.2": train[: n_train // 5]},
        probe_names=[f"probe{i}" for i in range(5)],
    )


def synthetic_study(root: Path, trainer: dict[str, Any], study: dict[str, Any]) -> dict[str, Any]:
    """Synthetic prepared data (with its manifest) under ``root`` and the repository's params with
    ``trainer``/``study`` overrides, a quarter-width model and an MLflow store of its own; returns
    the params (the caller edits more and writes ``root/params.yaml`` with :func:`write_params`)."""
    from cnnscope.config import load_params, to_container
    from cnnscope.io import file_sha256
    from cnnscope.layout import MANIFEST

    dataset = synthetic_prepared().save(root / "data" / "prepared")
    manifest = {"dataset_sha256": file_sha256(dataset), "source": "synthetic", "classes": [str(k) for k in range(10)]}
    (dataset.parent / MANIFEST).write_text(json.dumps(manifest))
    raw = to_container(load_params(REPO_ROOT / "params.yaml"))
    raw["trainer"].update(batch_size=32, accelerator="cpu", devices="1", **trainer)
    raw["tracking"]["uri"] = f"sqlite:///{root / 'mlflow.db'}"
    raw["study"].update(study)
    raw["model"]["width"] = 0.25
    return raw


def write_params(root: Path, raw: dict[str, Any]) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(raw))


@pytest.fixture
def prepared() -> PreparedData:
    return synthetic_prepared()


@pytest.fixture
def prepared_dir(tmp_path: Path, prepared: PreparedData) -> Path:
    out = tmp_path / "prepared"
    prepared.save(out)
    return out


@functools.cache
def _conf_knobs(name: str) -> dict[str, Any]:
    return model_knobs(name)


@functools.cache
def conf_section(name: str) -> dict[str, Any]:
    """``conf/<name>/default.yaml``: the library has no defaults (conf/ is their only home), so a
    test takes each setting it does not vary from here, as a stage takes it from params.yaml."""
    return dict(yaml.safe_load((REPO_ROOT / "conf" / name / "default.yaml").read_text()))


def measure_settings(**over: Any) -> MeasureSettings:
    """The measures' settings as conf/compare sets them, ``over`` replacing some (small samples
    need smaller batches and fewer draws)."""
    from cnnscope.analysis.measures import MeasureSettings

    return dataclasses.replace(MeasureSettings.from_config(SimpleNamespace(**conf_section("compare"))), **over)


def exemplar_knobs(**over: object) -> dict[str, Any]:
    """:func:`~cnnscope.activations.exemplars.find_exemplars`' settings as conf/exemplars sets them,
    ``over`` overriding some."""
    cfg = conf_section("exemplars")
    conf = {"k": cfg["k"], "n_median": cfg["median_images"], "median_sample": cfg["median_sample"]}
    return {**conf, "batch_size": cfg["batch_size"], **over}


def knobs(name: str, **arch: object) -> dict[str, Any]:
    """The architecture keys of ``name`` as conf/ sets them, ``arch`` overriding some."""
    return {**_conf_knobs(name), **arch}


def random_model(prepared: PreparedData, name: str = "mnist_cnn", seed: int = 0, **arch: object) -> LayeredCNN:
    """An untrained ``name`` sized for ``prepared`` (``arch``: overrides of conf/'s architecture keys),
    its weights drawn from ``torch.manual_seed(seed)``."""
    architecture = knobs(name, **arch)
    torch.manual_seed(seed)
    return build_model(
        name,
        in_channels=prepared.channels,
        num_classes=prepared.num_classes,
        image_size=prepared.image_size,
        mean=prepared.mean,
        std=prepared.std,
        **architecture,
    )


@pytest.fixture
def mnist_checkpoint(tmp_path: Path, prepared: PreparedData) -> Path:
    """An (untrained) ``mnist_cnn`` checkpoint in the layout the train stage writes."""
    return save_checkpoint(random_model(prepared), tmp_path / "model.ckpt")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


def write_activation_set(
    model: LayeredCNN,
    prepared: PreparedData,
    out: Path,
    eval_ids: torch.Tensor,
    probe_ids: torch.Tensor,
    layers: tuple[str, ...] = (),
) -> ActivationSet:
    """``layers`` (default: all) of ``model`` on ``eval_ids`` and the named ``probe_ids``, stored as
    the extract stage does."""
    groups = {
        "probe": ImageGroup(
            prepared.images[probe_ids], probe_ids, prepared.labels[probe_ids], [f"p{i}" for i in range(len(probe_ids))]
        ),
        "eval": ImageGroup(prepared.images[eval_ids], eval_ids, prepared.labels[eval_ids]),
    }
    float16 = conf_section("extract")["float16"]
    extract_activations(model, groups, resolve_layers(model, layers), out, 16, float16, classes=prepared.classes)
    return ActivationSet(out)


#: The feature maps, one dense layer and the softmax: every kind of table, few probes to fit.
STUDY_LAYERS = ("relu1", "relu2", "relu3", "relu_fc1", "softmax")


@pytest.fixture(scope="module")
def study_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], ActivationSet]:
    """A tiny study: variants ``benchmark``, ``dummy``, ``untrained`` × seeds 0, 1 of random
    narrow ``mnist_cnn`` networks (each its own weights) on 40 test images and four probes, two of one class."""
    prepared = synthetic_prepared()
    root = tmp_path_factory.mktemp("activations")
    test = prepared.splits["test"]
    labels = prepared.labels[test]
    first = labels[0]
    same = test[labels == first][:2]
    others = test[labels != first][:2]
    probe_ids = torch.cat([same, others])
    sets = {}
    for i, (variant, seed) in enumerate((v, s) for v in ("benchmark", "dummy", "untrained") for s in (0, 1)):
        model = random_model(prepared, seed=i, width=0.125, hidden=16)  # small: the test is about bookkeeping
        sets[variant, seed] = write_activation_set(model, prepared, run_dir(root, variant, seed), test[:40], probe_ids)
    return sets


#: The xdist group of the tests that read :func:`tiny_study` (``make test`` runs ``--dist loadgroup``,
#: so they share one worker and one pipeline run).
TINY_STUDY_GROUP = "tiny_study"


def pytest_configure(config: pytest.Config) -> None:
    """``xdist_group`` is pytest-xdist's marker; declared here too, so ``-p no:xdist`` runs under
    ``--strict-markers`` as well."""
    config.addinivalue_line("markers", "xdist_group(name): run on the worker of the group (--dist loadgroup)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The ``slow`` tests first (otherwise in collection order): xdist hands tests out in this order, and
    a minutes-long test that starts last runs alone on one core while the other idles."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One tiny study run through every stage as DVC would (``pipeline.run_pipeline``): ``benchmark``,
    ``dummy`` and the ``untrained`` control × seeds 0, 1, 2 with the benchmark − dummy contrast, its
    own embedded MLflow store in the folder. Shared, read-only, by every test that reads a whole
    pipeline's results (the shipped evidence, the MLflow review): copy what you tamper with."""
    from pipeline import run_pipeline

    workdir = tmp_path_factory.mktemp("tiny_study")
    overrides = [
        "study.variants=[benchmark,dummy,untrained]",
        "study.contrasts=[[benchmark,dummy]]",
        "study.seeds=[0,1,2]",
    ]
    return workdir, run_pipeline(workdir, overrides)
