"""Typed schema of ``params.yaml``, and the one way stages load it.

``conf/`` (Hydra) composes into ``params.yaml``; every stage script reads ``params.yaml`` through
:func:`load_params`, which merges it onto these dataclasses with OmegaConf. A misspelt key or a
value of the wrong type or outside an enum fails there — before any work starts — with a message
naming the key and, for choices, the allowed values.

The YAML in ``conf/`` is the one home of default values; the dataclasses here are the schema
(types, documentation, checks) and hold none, so a default can never disagree with itself and a
``params.yaml`` that lacks a key fails instead of silently taking a second default. (Only the
entries of lists and maps — a probe, a variant — have field defaults, which YAML cannot give.)
The choices of ``data.name`` and ``model.name`` are the names of the registries that implement them
(:data:`DATA_SOURCES`, :data:`MODEL_NAMES`; ``tests/test_config.py`` checks they agree), listed here
so that importing this module imports neither torch nor the registries (a stage's ``--help`` or a
tool that only reads the configuration stays fast). ``oip.noise`` and ``oip.suppression`` are
checked against the OIP package's registries by :func:`cnnscope.compose.compose_params` and by the
OIP code itself, not here: importing ``cnnscope.oip`` from this module would make every stage (training
included) depend on the OIP code in ``dvc.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnscope.config_analysis import (  # the analysis stages' sections, imported from here too
    AtlasConfig,
    CompareConfig,
    ExemplarsConfig,
    ExtractConfig,
    OIPConfig,
    TrajectoryConfig,
)
from cnnscope.errors import CnnscopeError
from cnnscope.runtime import set_threads

PARAMS_FILE = Path("params.yaml")

#: Keys that were renamed: an old key in ``params.yaml`` or an override fails naming the new one.
RENAMED = {
    "oip.seeds": "oip.restarts",
    "compare.probe_test_fraction": "compare.linear_probe_test_fraction",
}

#: ``data.name``: the readers of :data:`cnnscope.data.sources.SOURCES`, in its order.
DATA_SOURCES = ("embedded", "mnist", "fashion_mnist", "cifar10", "imagefolder")
#: ``model.name``: the builders of :data:`cnnscope.models.registry.MODELS`, in its order.
MODEL_NAMES = ("mnist_cnn", "cifar_cnn", "edge_filters", "mlp")
#: ``model.init``: the initialisations of :data:`cnnscope.models.networks.INITS`, in its order.
INIT_NAMES = ("kaiming", "torch_default")


class ConfigError(CnnscopeError, ValueError):
    """A configuration value is wrong; the message says which key and what is allowed."""


def _choices(name: str, names: Iterable[str]) -> Any:
    """A string enum whose members are ``names``: OmegaConf checks values against it and lists the
    members when one is wrong."""
    return Enum(name, [(n, n) for n in names], type=str)


if TYPE_CHECKING:  # mypy cannot follow enums built from data: it sees string enums without members

    class DataSource(str, Enum): ...

    class ModelName(str, Enum): ...

    class InitName(str, Enum): ...

else:
    DataSource = _choices("DataSource", DATA_SOURCES)
    ModelName = _choices("ModelName", MODEL_NAMES)
    InitName = _choices("InitName", INIT_NAMES)


class ValSource(str, Enum):
    train = "train"
    test = "test"


class OptimizerName(str, Enum):
    adam = "adam"
    sgd = "sgd"


class LRSchedule(str, Enum):
    none = "none"
    step = "step"
    cosine = "cosine"


@dataclass
class ProbeSpec:
    """A held-out probe image: the ``index``-th image of class ``label`` in the source's test
    split, or — with ``label: null`` — the image at position ``index`` of that split."""

    label: str | None = None
    index: int = 0
    name: str | None = None


@dataclass
class DataConfig:
    name: DataSource
    #: Folder holding the source in torchvision's layout (``MNIST/raw``…), an ImageFolder tree or
    #: a tarball of one. Relative paths are relative to the repository root.
    root: str | None
    #: Side length images are resized to (``imagefolder``; null keeps the source's size).
    image_size: int | None
    #: 1 (grey) or 3 (RGB) for ``imagefolder``; null keeps what the files are.
    channels: int | None
    #: Let torchvision download a missing dataset (needs network).
    download: bool
    #: Fraction held out for validation (early stopping, checkpoint choice)…
    val_fraction: float
    #: …taken from the training pool (``train``) or from the source's test split (``test``, which
    #: keeps every training image for training, as the frog study's 50k-vs-10k comparison does).
    val_from: ValSource
    #: Fraction held out as a test split for sources that have none (embedded, flat ImageFolder).
    test_fraction: float
    #: Cap on the training split (null: everything left after val); the seed study's 50k.
    train_size: int | None
    #: Nested, stratified training subsets: a value ≤ 1 is a fraction of the training split, a
    #: larger one a count. Each is contained in every larger one.
    subsets: list[float]
    probes: list[ProbeSpec]
    split_seed: int
    out_dir: str


@dataclass
class ModelConfig:
    name: ModelName
    width: float
    hidden: int
    batch_norm: bool
    dropout: float
    #: Convolutions (mnist_cnn: 1-3), convolutions per stage (cifar_cnn) or trainable convolutions
    #: after the fixed kernels (edge_filters); null keeps the architecture's own.
    depth: int | None
    #: How conv and linear weights start (``conf/base/model.yaml`` says why): one setting for the
    #: whole study, since the variants share their initialisation per seed (no variant overrides it).
    init: InitName
    optimizer: OptimizerName
    lr: float
    momentum: float
    weight_decay: float
    lr_schedule: LRSchedule
    lr_step_size: int
    lr_gamma: float


@dataclass
class TrainerConfig:
    max_epochs: int
    batch_size: int
    accelerator: str
    devices: str
    num_nodes: int
    strategy: str
    #: null picks bf16-mixed on a GPU and 32-true on a CPU.
    precision: str | None
    deterministic: bool
    patience: int
    log_every_n_steps: int
    models_dir: str
    #: Weights saved along training (``models/<v>/seed<k>/checkpoints/``, read by the trajectory
    #: stage): a count ``n`` gives ``n`` log-spaced gradient steps from 0 to the last (plus the
    #: 1-2-5 steps, which every run shares); a list gives those steps exactly (sorted, ≤ the run).
    checkpoint_steps: Any


@dataclass
class VariantSpec:
    """One network of a study; it differs from the study's defaults in the fields it sets."""

    #: Training subset (a value of ``data.subsets``); null trains on the full training split.
    train_subset: float | None = None
    #: False gives the untrained null model: random initialisation, no optimisation.
    train: bool = True
    #: Overrides of ``model`` keys for this variant (e.g. ``optimizer: sgd``, ``width: 2``).
    model: dict[str, Any] = field(default_factory=dict)
    #: A step-matched control: train on ``train_subset`` for as many gradient steps as this
    #: (trained) variant's budget (``trainer.max_epochs`` epochs of its split), without early stopping,
    #: keeping the final weights; null trains for ``trainer.max_epochs`` epochs as usual.
    match_steps_of: str | None = None
    #: The spec of ``match_steps_of``, copied by interpolation (``${..${.match_steps_of}}`` in
    #: ``conf/study/``): a step-matched variant's step budget follows its reference's data, so DVC
    #: must re-run ``train@<variant>-<seed>`` when that spec changes, and a train stage lists only its
    #: own variant's spec as a param. Null exactly when ``match_steps_of`` is.
    match_steps_spec: dict[str, Any] | None = None


@dataclass
class StudyConfig:
    name: str
    #: The variants trained, in report order; each must be a key of ``variant_specs``.
    variants: list[str]
    variant_specs: dict[str, VariantSpec]
    seeds: list[int]
    #: The training seeds whose networks get OIPs, a non-empty subset of ``seeds``. OIPs are the
    #: costliest stage on a CPU (benchmarks/README.md), so a study can keep three training seeds for
    #: its verdicts and synthesise OIPs for fewer; OIP numbers then carry the verdict *too few seeds*.
    #: ``conf/study/default.yaml`` sets it to ``seeds``.
    oip_seeds: list[int]
    #: ``[variant, reference]`` pairs the study is about (difference CIs, claims); every variant is
    #: also compared with the null model(s), the variants with ``train: false``.
    contrasts: list[list[str]]


@dataclass
class TrackingConfig:
    #: MLflow experiment name; runs of one study share it.
    experiment: str
    #: Tracking URI; null means ``$MLFLOW_TRACKING_URI`` or ``sqlite:///<repo>/mlflow.db``.
    uri: str | None


@dataclass
class RuntimeConfig:
    #: Threads for torch and BLAS in every stage process (results depend on it: see conf/runtime/).
    threads: int


@dataclass
class Params:
    data: DataConfig
    model: ModelConfig
    trainer: TrainerConfig
    study: StudyConfig
    extract: ExtractConfig
    compare: CompareConfig
    oip: OIPConfig
    exemplars: ExemplarsConfig
    atlas: AtlasConfig
    trajectory: TrajectoryConfig
    tracking: TrackingConfig
    runtime: RuntimeConfig


def validate(raw: Mapping[str, Any]) -> Params:
    """Merge ``raw`` (a whole ``params.yaml``, or its ``DictConfig``) onto the schema; raise
    :class:`ConfigError` naming the offending key."""
    from omegaconf import OmegaConf  # here: a stage process imports this module before it hands off (handoff)
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    check_renamed(_dotted_keys(raw))
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Params), raw)
        params: Params = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except MissingMandatoryValue as err:
        raise ConfigError(
            f"'{err.full_key}' is not set: params.yaml must hold every key of conf/ — regenerate it with "
            "`make params` (python -m cnnscope.compose) and set the key there or in conf/"
        ) from None
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(f"invalid configuration at '{key}': {str(err.msg).splitlines()[0]}") from None
    from cnnscope.config_checks import check_semantics, check_values  # they import this module

    check_values(params)
    check_semantics(params)
    return params


def check_renamed(keys: Iterable[str]) -> None:
    """Fail on a key of :data:`RENAMED` (or one below it), naming its new name."""
    for key in keys:
        for before, after in RENAMED.items():
            if key == before or key.startswith(f"{before}."):
                raise ConfigError(f"{before} was renamed to {after}: write {after}{key[len(before) :]} instead")


def _dotted_keys(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every key path of a nested mapping (a ``DictConfig`` is one), dotted (``oip.restarts``)."""
    keys = []
    for key, value in tree.items():
        path = f"{prefix}{key!s}"
        keys.append(path)
        if isinstance(value, Mapping):
            keys += _dotted_keys(value, f"{path}.")
    return keys


def snapshot_steps(oip: OIPConfig) -> list[int]:
    """The steps at which the OIP stage records images: ``oip.snapshots`` with every step past the
    run taken at its last step, ``oip.steps``, once. A sweep over ``oip.steps`` therefore needs no
    matching ``oip.snapshots``: ``[0, 5, 15, 30]`` with ``oip.steps=20`` records ``[0, 5, 15, 20]``."""
    return sorted({min(int(s), oip.steps) for s in oip.snapshots})


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate ``params.yaml`` (the only configuration stage scripts use) and apply its
    ``runtime.threads``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: run stages from the repository root (dvc repro does)")
    import yaml

    with path.open() as fh:
        raw = yaml.safe_load(fh) or {}
    params = validate(raw)
    # Every stage reads its params here first, so this is where the recorded thread count takes
    # effect, before any tensor work.
    set_threads(params.runtime.threads)
    return params


def check_variant(study: StudyConfig, variant: str) -> None:
    """The one check (and wording) for a ``--variant`` that the study does not run."""
    if variant not in study.variants:
        raise ConfigError(
            f"unknown variant {variant!r}; study '{study.name}' runs: {', '.join(study.variants)} (study.variants)"
        )


def variant_model_config(params: Params, variant: str) -> ModelConfig:
    """The model configuration of ``variant``: the study's ``model`` with the variant's overrides."""
    from omegaconf import OmegaConf

    check_variant(params.study, variant)
    merged = OmegaConf.merge(OmegaConf.structured(params.model), params.study.variant_specs[variant].model)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def to_container(params: Params | DataConfig) -> dict[str, Any]:
    """Plain-dict form of ``params`` or one of its sections (enums as strings), for logging and
    manifests: what ``OmegaConf.to_container(OmegaConf.structured(params), enum_to_str=True)`` gives
    (tests/test_config.py checks it on every preset), walked directly. Building the structured
    config only to flatten it again cost tens of milliseconds per call, and every stage makes
    several (benchmarks/README.md, "Per-stage fixed costs")."""
    return _plain(params)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
