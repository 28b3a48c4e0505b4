"""Typed schema of ``params.yaml``, and the one way stages load it.

``conf/`` (Hydra) composes into ``params.yaml``; every stage script reads ``params.yaml`` through
:func:`load_params`, which merges it onto these dataclasses with OmegaConf. A misspelt key or a
value of the wrong type or outside an enum fails there — before any work starts — with a message
naming the key and, for choices, the allowed values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cnnscope.errors import CnnscopeError

PARAMS_FILE = Path("params.yaml")


class ConfigError(CnnscopeError, ValueError):
    """A configuration value is wrong; the message says which key and what is allowed."""


class DataSource(str, Enum):
    embedded = "embedded"
    mnist = "mnist"
    fashion_mnist = "fashion_mnist"
    cifar10 = "cifar10"
    imagefolder = "imagefolder"


class ValSource(str, Enum):
    train = "train"
    test = "test"


class ModelName(str, Enum):
    mnist_cnn = "mnist_cnn"
    cifar_cnn = "cifar_cnn"
    edge_filters = "edge_filters"


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
    name: DataSource = DataSource.embedded
    #: Folder holding the source in torchvision's layout (``MNIST/raw``…), an ImageFolder tree or
    #: a tarball of one. Relative paths are relative to the repository root.
    root: str | None = None
    #: Side length images are resized to (``imagefolder``; null keeps the source's size).
    image_size: int | None = None
    #: 1 (grey) or 3 (RGB) for ``imagefolder``; null keeps what the files are.
    channels: int | None = None
    #: Let torchvision download a missing dataset (needs network).
    download: bool = False
    #: Fraction held out for validation (early stopping, checkpoint choice)…
    val_fraction: float = 0.1
    #: …taken from the training pool (``train``) or from the source's test split (``test``, which
    #: keeps every training image for training, as the frog study's 50k-vs-10k comparison does).
    val_from: ValSource = ValSource.train
    #: Fraction held out as a test split for sources that have none (embedded, flat ImageFolder).
    test_fraction: float = 0.2
    #: Cap on the training split (null: everything left after val); the seed study's 50k.
    train_size: int | None = None
    #: Nested, stratified training subsets: a value ≤ 1 is a fraction of the training split, a
    #: larger one a count. Each is contained in every larger one.
    subsets: list[float] = field(default_factory=lambda: [0.2])
    probes: list[ProbeSpec] = field(default_factory=list)
    split_seed: int = 0
    out_dir: str = "data/prepared"


@dataclass
class ModelConfig:
    name: ModelName = ModelName.mnist_cnn
    width: float = 1.0
    hidden: int = 64
    batch_norm: bool = False
    dropout: float = 0.0
    #: Convolutions (mnist_cnn: 1-3), convolutions per stage (cifar_cnn) or trainable convolutions
    #: after the fixed kernels (edge_filters); null keeps the architecture's own.
    depth: int | None = None
    optimizer: OptimizerName = OptimizerName.adam
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: LRSchedule = LRSchedule.none
    lr_step_size: int = 5
    lr_gamma: float = 0.5


@dataclass
class TrainerConfig:
    max_epochs: int = 4
    batch_size: int = 128
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    #: null picks bf16-mixed on a GPU and 32-true on a CPU.
    precision: str | None = None
    deterministic: bool = True
    patience: int = 3
    log_every_n_steps: int = 10
    models_dir: str = "models"


@dataclass
class VariantSpec:
    """One network of a study; it differs from the study's defaults in the fields it sets."""

    #: Training subset (a value of ``data.subsets``); null trains on the full training split.
    train_subset: float | None = None
    #: False gives the untrained null model: random initialisation, no optimisation.
    train: bool = True
    #: Overrides of ``model`` keys for this variant (e.g. ``optimizer: sgd``, ``width: 2``).
    model: dict[str, Any] = field(default_factory=dict)


@dataclass
class StudyConfig:
    name: str = "default"
    #: The variants trained, in report order; each must be a key of ``variant_specs``.
    variants: list[str] = field(default_factory=lambda: ["benchmark"])
    variant_specs: dict[str, VariantSpec] = field(default_factory=lambda: {"benchmark": VariantSpec()})
    seeds: list[int] = field(default_factory=lambda: [0])


@dataclass
class ExtractConfig:
    #: Layers to capture; empty means every named layer (plus ``softmax``).
    layers: list[str] = field(default_factory=list)
    #: Size of the class-stratified evaluation sample drawn from the test split (the same images
    #: for every variant and seed).
    eval_samples: int = 1000
    #: Store activations as float16 (half the disk; ~3 significant digits) instead of float32.
    float16: bool = True
    batch_size: int = 256
    out_dir: str = "activations"


@dataclass
class CompareConfig:
    #: Equal-width histogram bins per layer, on edges shared by all variants and seeds.
    bins: int = 64
    #: Bootstrap resamples for the confidence intervals of variant differences.
    bootstrap: int = 1000
    confidence: float = 0.95
    #: Feature maps drawn per row in the feature-map grids.
    max_maps: int = 16
    #: Share of the evaluation sample held out to score the linear probes.
    probe_test_fraction: float = 0.5
    out_dir: str = "compare"


class OIPNoise(str, Enum):
    """How the starting noise of an OIP is drawn at a spatial wavelength."""

    #: Gaussian noise on a coarse grid (spacing ≈ wavelength), bilinearly upsampled.
    grid = "grid"
    #: Gaussian noise band-limited in Fourier space to frequencies ≤ 1/wavelength.
    fourier = "fourier"


class OIPSuppression(str, Enum):
    """How high frequencies are suppressed after each ascent step."""

    blur = "blur"
    fourier = "fourier"
    none = "none"


@dataclass
class OIPConfig:
    """OIP generation (``oip`` stage). The defaults keep the default study at ~1 minute on 2 CPU
    cores; the article's figures use e.g. ``seeds: 8``, ``wavelengths: [1, 2, 4, 7, 14]``,
    ``steps: 400``, ``snapshots: [0, 25, 100, 400]``."""

    #: Target layer; null means the deepest convolution's activation (``model.conv_layers[-1]``).
    layer: str | None = None
    #: Maps to optimise; empty means all.
    maps: list[int] = field(default_factory=list)
    #: Noise seeds per map and wavelength (≥ 2: robustness compares them).
    seeds: int = 2
    #: First noise seed; the same noises are used for every variant, so variants differ only by
    #: their network.
    noise_seed: int = 0
    #: Noise wavelengths in pixels (1 = pixel noise), each ≤ the image side.
    wavelengths: list[int] = field(default_factory=lambda: [1, 4])
    noise: OIPNoise = OIPNoise.grid
    steps: int = 30
    #: Ascent step on the standardised input, in units of the normalised (unit-RMS) gradient.
    step_size: float = 0.1
    suppression: OIPSuppression = OIPSuppression.blur
    #: Gaussian blur applied after every step (``suppression: blur``), in pixels.
    blur_sigma: float = 0.5
    #: Per-step damping of the Nyquist frequency (``suppression: fourier``), in [0, 1).
    fourier_damping: float = 0.1
    #: Random shift of the input by up to this many pixels at every step (0: none).
    jitter: int = 0
    #: Steps at which the image is recorded (the evolution series); each in [0, steps].
    snapshots: list[int] = field(default_factory=lambda: [0, 5, 15, 30])
    #: A map has converged when its objective moved by less than this fraction over the last
    #: tenth of the steps.
    convergence_tol: float = 0.01
    #: Maps shown in the evolution figure; empty means the most active ones.
    evolution_maps: list[int] = field(default_factory=list)
    #: Map of the wavelength comparison and per-node grid; null means the most active map.
    focus_map: int | None = None
    out_dir: str = "oip"


@dataclass
class ExemplarsConfig:
    """Dataset exemplars per map (``exemplars`` stage) and the OIPs held against them."""

    #: Layers whose maps get exemplars; empty means the last layer of each block and the deepest map.
    layers: list[str] = field(default_factory=list)
    #: Split searched (probe images excluded): ``train``, ``val``, ``test`` or a subset key.
    split: str = "test"
    #: Top images kept per map, ranked by the map's maximum over positions.
    k: int = 9
    #: Images at the median activation shown for contrast.
    median_images: int = 3
    #: Size of the uniform random sample of the split the median is taken over (flat memory).
    median_sample: int = 1000
    batch_size: int = 256
    #: An OIP is flagged when it drives its map this many times above the top exemplar while its
    #: path through the earlier layers is unlike the exemplars'.
    far_above: float = 2.0
    out_dir: str = "exemplars"


@dataclass
class AtlasConfig:
    """The unit atlas (``atlas`` stage): a static HTML site at ``<out_dir>/<study.name>/``."""

    out_dir: str = "atlas"
    #: Maps per network in the report's and the MLflow overview's OIP-beside-exemplars figure.
    figure_maps: int = 4


@dataclass
class TrackingConfig:
    #: MLflow experiment name; runs of one study share it.
    experiment: str = "cnnscope"
    #: Tracking URI; null means ``$MLFLOW_TRACKING_URI`` or ``sqlite:///<repo>/mlflow.db``.
    uri: str | None = None


@dataclass
class Params:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    oip: OIPConfig = field(default_factory=OIPConfig)
    exemplars: ExemplarsConfig = field(default_factory=ExemplarsConfig)
    atlas: AtlasConfig = field(default_factory=AtlasConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


def validate(raw: dict[str, Any] | DictConfig) -> Params:
    """Merge ``raw`` onto the schema; raise :class:`ConfigError` naming the offending key."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Params), raw)
        params: Params = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(f"invalid configuration at '{key}': {err.msg}") from None
    _check_semantics(params)
    return params


def _check_semantics(params: Params) -> None:
    """Cross-field rules that types alone cannot express."""
    study = params.study
    unknown = [v for v in study.variants if v not in study.variant_specs]
    if unknown:
        raise ConfigError(
            f"study.variants names {unknown} but study.variant_specs defines only {sorted(study.variant_specs)}"
        )
    subsets = [float(s) for s in params.data.subsets]
    for name in study.variants:
        spec = study.variant_specs[name]
        if spec.train_subset is not None and float(spec.train_subset) not in subsets:
            raise ConfigError(
                f"study.variant_specs.{name}.train_subset={spec.train_subset} is not one of "
                f"data.subsets={params.data.subsets}"
            )
        bad = sorted(set(spec.model) - set(ModelConfig.__dataclass_fields__))
        if bad:
            raise ConfigError(
                f"study.variant_specs.{name}.model sets unknown keys {bad}; "
                f"model keys are: {', '.join(ModelConfig.__dataclass_fields__)}"
            )
    for key in ("val_fraction", "test_fraction"):
        value = getattr(params.data, key)
        if not 0 <= value < 1:
            raise ConfigError(f"data.{key}={value} must be in [0, 1)")
    if any(s <= 0 for s in subsets):
        raise ConfigError(f"data.subsets={params.data.subsets}: sizes must be positive")


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate ``params.yaml`` (the only configuration stage scripts use)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: run stages from the repository root (dvc repro does)")
    with path.open() as fh:
        raw = yaml.safe_load(fh) or {}
    return validate(raw)


def variant_model_config(params: Params, variant: str) -> ModelConfig:
    """The model configuration of ``variant``: the study's ``model`` with the variant's overrides."""
    if variant not in params.study.variant_specs:
        raise ConfigError(f"unknown variant {variant!r}; the study defines: {', '.join(params.study.variants)}")
    merged = OmegaConf.merge(OmegaConf.structured(params.model), params.study.variant_specs[variant].model)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def to_container(params: Params) -> dict[str, Any]:
    """Plain-dict form of ``params`` (enums as strings), for logging and manifests."""
    return OmegaConf.to_container(OmegaConf.structured(params), enum_to_str=True)  # type: ignore[return-value]
