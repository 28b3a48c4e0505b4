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

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

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


class ConfigError(CnnscopeError, ValueError):
    """A configuration value is wrong; the message says which key and what is allowed."""


def _choices(name: str, names: Iterable[str]) -> Any:
    """A string enum whose members are ``names``: OmegaConf checks values against it and lists the
    members when one is wrong."""
    return Enum(name, [(n, n) for n in names], type=str)


if TYPE_CHECKING:  # mypy cannot follow enums built from data: it sees string enums without members

    class DataSource(str, Enum): ...

    class ModelName(str, Enum): ...

else:
    DataSource = _choices("DataSource", DATA_SOURCES)
    ModelName = _choices("ModelName", MODEL_NAMES)


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
class ExtractConfig:
    #: Layers to capture; empty means every named layer (plus ``softmax``).
    layers: list[str]
    #: Size of the class-stratified evaluation sample drawn from the test split (the same images
    #: for every variant and seed).
    eval_samples: int
    #: Store activations as float16 (half the disk; ~3 significant digits) instead of float32.
    float16: bool
    batch_size: int
    out_dir: str


@dataclass
class CompareConfig:
    #: Equal-width histogram bins per layer, on edges shared by all variants and seeds.
    bins: int
    #: Bootstrap resamples for the confidence intervals of variant differences.
    bootstrap: int
    confidence: float
    #: Feature maps drawn per row in the feature-map grids.
    max_maps: int
    #: Share of the evaluation sample held out to score the linear probes (:mod:`cnnscope.analysis.linear_probe`).
    linear_probe_test_fraction: float
    out_dir: str
    #: Each (network, layer) is divided by this quantile of its non-zero |x| (scale-free entropy).
    scale_quantile: float
    #: Images per minibatch of the debiased CKA (memory flat in the number of images).
    cka_batch: int
    #: Feature maps matched map by map across networks; empty means every feature map.
    matching_layers: list[str]
    #: Spatial linear probe: each map average-pooled to ``probe_grid × probe_grid``.
    probe_grid: int
    #: Random draws for the class-pattern (FCP) chance level.
    fcp_draws: int
    #: Image bootstrap resamples of the within/between active-node overlap.
    overlap_resamples: int
    #: The two classes (by name) whose mutual confusion is reported (the article's 4 and 9).
    confusion_pair: list[str]
    #: Seed of the one random order of the evaluation sample that every batched or split measure
    #: follows (:mod:`cnnscope.analysis.sample_order`; the stored sample is sorted by class).
    sample_order_seed: int
    #: Smallest effect size of interest per claim measure (:mod:`cnnscope.analysis.verdicts`); reasons
    #: in ``conf/compare/default.yaml``.
    sesoi: dict[str, float]


class OIPParameterization(str, Enum):
    """What an OIP ascent steps: the pixels (the seed article's recipe) or the image's spectrum."""

    pixel = "pixel"
    fourier = "fourier"


@dataclass
class OIPConfig:
    """OIP generation (``oip`` stage). ``conf/oip/default.yaml`` is sized for the default study on
    a CPU; the articles' settings are the ``mnist_oip`` preset (``conf/experiment/mnist_oip.yaml``)."""

    #: Target layer; null means the deepest convolution's activation (``model.conv_layers[-1]``).
    layer: str | None
    #: Maps to optimise; empty means all.
    maps: list[int]
    #: Noise restarts per map and wavelength: ascents from independent noises (≥ 2: robustness
    #: compares them). Not training seeds (``study.seeds``).
    restarts: int
    #: Noise seed of the first restart (restart ``i`` uses ``noise_seed + i``); the same noises are
    #: used for every variant, so variants differ only by their network.
    noise_seed: int
    #: Noise wavelengths in pixels (1 = pixel noise), each ≤ the image side.
    wavelengths: list[int]
    #: How the starting noise is drawn: a key of :data:`cnnscope.oip.param.NOISE_KINDS`.
    noise: str
    steps: int
    #: Ascent step on the standardised input, in units of the normalised (unit-RMS) gradient.
    step_size: float
    #: High-frequency suppression after each step: one of :data:`cnnscope.oip.transforms.SUPPRESSIONS`.
    suppression: str
    #: Gaussian blur applied after every step (``suppression: blur``), in pixels.
    blur_sigma: float
    #: Per-step damping of the Nyquist frequency (``suppression: fourier``), in [0, 1).
    fourier_damping: float
    #: Random shift of the input by up to this many pixels at every step (0: none).
    jitter: int
    #: Random zoom by up to ± this fraction at every step, in [0, 1) (0: none).
    scale: float
    #: Random rotation by up to ± this many degrees at every step (0: none).
    rotate: float
    #: ``pixel``: blur and re-standardise after each step; ``fourier``: spectral variables with
    #: 1/f scaling through a sigmoid to valid pixels (suppression, blur_sigma and
    #: fourier_damping then do not apply).
    parameterization: OIPParameterization
    #: ``fourier`` only: optimise in the decorrelated colour space of the training split's pixels.
    decorrelate: bool
    #: ``fourier`` only: amplitude decay of the spectrum, 1 / f ** decay (1: natural images).
    decay: float
    #: ``fourier`` only: amplitude of the starting noise relative to the data's colour contrast.
    init_scale: float
    #: Shrink the step along a half cosine to 0 over the run, so the ascent settles.
    anneal: bool
    #: Steps at which the image is recorded (the evolution series), each ≥ 0; a step past ``steps`` is
    #: taken at the last step (:func:`snapshot_steps`), so a sweep over ``steps`` needs no new list.
    snapshots: list[int]
    #: A map has converged when its objective moved by less than this fraction over the last
    #: tenth of the steps.
    convergence_tol: float
    #: Maps shown in the evolution figure; empty means the most active ones.
    evolution_maps: list[int]
    #: Map of the wavelength comparison and per-node grid; null means the most active map.
    focus_map: int | None
    out_dir: str


@dataclass
class ExemplarsConfig:
    """Dataset exemplars per map (``exemplars`` stage) and the OIPs held against them."""

    #: Layers whose maps get exemplars; empty means the last layer of each block and the deepest map.
    layers: list[str]
    #: Split searched (probe images excluded): ``train``, ``val``, ``test`` or a subset key.
    split: str
    #: Top images kept per map, ranked by the map's maximum over positions.
    k: int
    #: Images at the median activation shown for contrast.
    median_images: int
    #: Size of the uniform random sample of the split the median is taken over (flat memory).
    median_sample: int
    batch_size: int
    #: An OIP is flagged when it drives its map this many times above the top exemplar while its
    #: path through the earlier layers is unlike the exemplars'.
    far_above: float
    out_dir: str


@dataclass
class AtlasConfig:
    """The unit atlas (``atlas`` stage): a static HTML site at ``<out_dir>/<study.name>/``."""

    out_dir: str
    #: Maps per network in the report's and the MLflow overview's OIP-beside-exemplars figure.
    figure_maps: int


@dataclass
class TrajectoryConfig:
    """The ``trajectory`` stage: every map layer measured at each checkpoint saved along training."""

    #: Class-stratified images of the test split, put in one seeded order (``order_seed``) before
    #: minibatching: the measures' minibatches must not follow the stored (class-sorted) order.
    eval_samples: int
    order_seed: int
    #: Images per minibatch (debiased CKA needs ≥ 4); memory is flat in ``eval_samples``.
    batch_size: int
    #: The first this-many images of that order carry the spatial probe (half fit, half scored).
    probe_samples: int
    #: Bins of the normalised entropy, equal-width on [−entropy_range, entropy_range] in units of
    #: each checkpoint's robust scale (shared by every checkpoint, variant and seed).
    bins: int
    entropy_range: float
    #: Maps of the deepest layer followed over training: the most active of the final network.
    maps: int
    #: Ascent steps of each checkpoint's OIPs (two restarts at ``oip.wavelengths``' longest).
    oip_steps: int
    out_dir: str


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


def validate(raw: dict[str, Any] | DictConfig) -> Params:
    """Merge ``raw`` (a whole ``params.yaml``) onto the schema; raise :class:`ConfigError` naming
    the offending key."""
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
    check_values(params)
    _check_semantics(params)
    return params


def check_renamed(keys: Iterable[str]) -> None:
    """Fail on a key of :data:`RENAMED` (or one below it), naming its new name."""
    for key in keys:
        for before, after in RENAMED.items():
            if key == before or key.startswith(f"{before}."):
                raise ConfigError(f"{before} was renamed to {after}: write {after}{key[len(before) :]} instead")


def _dotted_keys(tree: Mapping[str, Any] | DictConfig, prefix: str = "") -> list[str]:
    """Every key path of a nested mapping, dotted (``oip.restarts``)."""
    keys = []
    for key, value in tree.items():
        path = f"{prefix}{key!s}"
        keys.append(path)
        if isinstance(value, Mapping | DictConfig):
            keys += _dotted_keys(value, f"{path}.")
    return keys


def _check_semantics(params: Params) -> None:
    """Cross-field rules that types alone cannot express."""
    study = params.study
    unknown = [v for v in study.variants if v not in study.variant_specs]
    if unknown:
        raise ConfigError(
            f"study.variants names {unknown} but study.variant_specs defines only {sorted(study.variant_specs)}"
        )
    for pair in study.contrasts:
        if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(study.variants):
            raise ConfigError(
                f"study.contrasts entry {list(pair)} must name two different variants of study.variants "
                f"({', '.join(study.variants)}), as [variant, reference]; drop it or add the variants"
            )
    stray = [s for s in study.oip_seeds if s not in study.seeds]
    if not study.oip_seeds or stray:
        raise ConfigError(
            f"study.oip_seeds={list(study.oip_seeds)} must be a non-empty subset of study.seeds="
            f"{list(study.seeds)}: OIPs are made of trained networks; list some of those seeds"
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
    _check_oip(params.oip)
    _check_steps(params)


#: Training-pool and test-split sizes of the fixed sources, for the checks that need a run's length
#: before ``prepare`` has run (an ``imagefolder`` is checked when training starts instead).
SOURCE_SIZES: dict[str, tuple[int, int | None]] = {
    "embedded": (5000, None),
    "mnist": (60000, 10000),
    "fashion_mnist": (60000, 10000),
    "cifar10": (50000, 10000),
}


def planned_steps(params: Params, variant: str) -> int | None:
    """Gradient steps ``variant`` will take at most, from the source's known size (the same
    splitting arithmetic as :mod:`cnnscope.data.prepare`); None when the size is unknown here."""
    d, spec = params.data, params.study.variant_specs[variant]
    if spec.match_steps_of is not None:
        return planned_steps(params, spec.match_steps_of)
    sizes = SOURCE_SIZES.get(str(getattr(d.name, "value", d.name)))
    if sizes is None:
        return None
    pool = sizes[0] - (round(d.test_fraction * sizes[0]) if sizes[1] is None else 0)
    pool -= round(d.val_fraction * pool) if d.val_from == ValSource.train else 0
    n = min(pool, d.train_size or pool)
    if spec.train_subset is not None:
        n = min(n, round(spec.train_subset * n) if spec.train_subset <= 1 else int(spec.train_subset))
    return params.trainer.max_epochs * -(-n // params.trainer.batch_size)


def _check_steps(params: Params) -> None:
    """``trainer.checkpoint_steps`` and the step-matched variants (``match_steps_of``), before any work."""
    steps, specs = params.trainer.checkpoint_steps, params.study.variant_specs
    if isinstance(steps, bool) or not isinstance(steps, int | list | tuple):
        raise ConfigError(f"trainer.checkpoint_steps={steps!r} must be a count (≥ 2) or a list of gradient steps")
    if isinstance(steps, int) and steps < 2:
        raise ConfigError(f"trainer.checkpoint_steps={steps} must be ≥ 2 (step 0 and the last, log-spaced between)")
    if isinstance(steps, list | tuple):
        if not steps or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in steps):
            raise ConfigError(f"trainer.checkpoint_steps={list(steps)} must be a non-empty list of steps ≥ 0")
        if list(steps) != sorted(set(steps)):
            raise ConfigError(f"trainer.checkpoint_steps={list(steps)} must be sorted, each step once")
    for name in params.study.variants:
        spec, ref = specs[name], specs[name].match_steps_of
        if ref is not None:
            if ref not in specs or not specs[ref].train or specs[ref].match_steps_of is not None or not spec.train:
                raise ConfigError(
                    f"study.variant_specs.{name}.match_steps_of={ref!r} must name another trained variant of "
                    f"study.variant_specs ({', '.join(specs)}) that is not itself step-matched"
                )
            if spec.train_subset is None or spec.train_subset == 1 or spec.train_subset == specs[ref].train_subset:
                raise ConfigError(
                    f"study.variant_specs.{name} is step-matched to {ref} but trains on "
                    f"{'the full split' if spec.train_subset in (None, 1) else 'the same data'} "
                    f"(train_subset={spec.train_subset}): set train_subset to a smaller nested subset of data.subsets"
                )
        explicit = list(steps) if isinstance(steps, list | tuple) else None
        total = planned_steps(params, name) if spec.train and explicit else None
        if explicit and total is not None and explicit[-1] > total:
            raise ConfigError(
                f"trainer.checkpoint_steps={explicit} goes beyond the run of variant {name}: it takes at most "
                f"{total} gradient steps; drop the later steps or give a count (log-spaced over each run)"
            )


def _check_oip(oip: OIPConfig) -> None:
    """The OIP parameterisation's options: ranges, and decorrelation only where it applies."""
    if oip.decorrelate and oip.parameterization != OIPParameterization.fourier:
        raise ConfigError(
            "oip.decorrelate=true needs oip.parameterization=fourier (the pixel recipe has no colour space)"
        )
    if not 0 <= oip.scale < 1:
        raise ConfigError(f"oip.scale={oip.scale} must be in [0, 1) (a relative zoom)")
    if not 0 <= oip.rotate <= 180:
        raise ConfigError(f"oip.rotate={oip.rotate} must be 0..180 degrees")
    if oip.decay < 0:
        raise ConfigError(f"oip.decay={oip.decay} must be >= 0 (1 = natural images' 1/f spectrum)")
    if oip.init_scale <= 0:
        raise ConfigError(f"oip.init_scale={oip.init_scale} must be > 0 (1 = the data's colour contrast)")


# ---------------------------------------------------------------- value checks (issue 16)
# Types alone let through values no stage can use (a negative learning rate, zero epochs or bins,
# NaN anywhere) and names that escape the repository; each would fail late — after minutes of work,
# with a traceback or a silently wrong result — or delete something. They fail here, up front.

#: Accelerators Lightning accepts by name.
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: ``study.name`` names ``reports/<name>/`` and ``<atlas.out_dir>/<name>/``, both replaced as a whole.
_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_OUTPUT_DIRS = (
    "data.out_dir",
    "trainer.models_dir",
    "extract.out_dir",
    "compare.out_dir",
    "oip.out_dir",
    "trajectory.out_dir",
    "exemplars.out_dir",
    "atlas.out_dir",
)


def _stage_ranges(params: Params) -> list[tuple[str, Any, bool, str]]:
    """The bounded numbers of the oip, exemplars and atlas stages: checked here, at composition,
    so that a value the stage would reject fails before any upstream stage runs."""
    o, x = params.oip, params.exemplars
    return [
        ("oip.restarts", o.restarts, o.restarts >= 2, "≥ 2 (robustness compares the noise restarts)"),
        ("oip.steps", o.steps, o.steps >= 1, "≥ 1 (gradient-ascent steps)"),
        ("oip.step_size", o.step_size, o.step_size > 0, "> 0"),
        ("oip.blur_sigma", o.blur_sigma, o.blur_sigma >= 0, "≥ 0 pixels"),
        ("oip.fourier_damping", o.fourier_damping, 0 <= o.fourier_damping < 1, "in [0, 1)"),
        ("oip.jitter", o.jitter, o.jitter >= 0, "≥ 0 pixels"),
        ("oip.convergence_tol", o.convergence_tol, o.convergence_tol > 0, "> 0"),
        ("exemplars.k", x.k, x.k >= 1, "≥ 1 (top images per map)"),
        ("exemplars.median_images", x.median_images, x.median_images >= 0, "≥ 0"),
        ("exemplars.median_sample", x.median_sample, x.median_sample >= 1, "≥ 1"),
        ("exemplars.batch_size", x.batch_size, x.batch_size >= 1, "≥ 1"),
        ("exemplars.far_above", x.far_above, x.far_above > 0, "> 0"),
        ("atlas.figure_maps", params.atlas.figure_maps, params.atlas.figure_maps >= 1, "≥ 1"),
    ]


def _ranges(params: Params) -> list[tuple[str, Any, bool, str]]:
    """(key, value, ok, rule) for every bounded number outside the OIP parameterisation's options
    (:func:`_check_oip`) and the data fractions (checked in :func:`_check_semantics`)."""
    t, e, c, d = params.trainer, params.extract, params.compare, params.data
    rules = [
        ("runtime.threads", params.runtime.threads, params.runtime.threads >= 1, "≥ 1"),
        ("trainer.max_epochs", t.max_epochs, t.max_epochs >= 1, "≥ 1"),
        ("trainer.batch_size", t.batch_size, t.batch_size >= 1, "≥ 1"),
        ("trainer.num_nodes", t.num_nodes, t.num_nodes >= 1, "≥ 1"),
        ("trainer.patience", t.patience, t.patience >= 0, "≥ 0"),
        ("trainer.log_every_n_steps", t.log_every_n_steps, t.log_every_n_steps >= 1, "≥ 1"),
        ("trainer.accelerator", t.accelerator, t.accelerator in ACCELERATORS, f"one of {', '.join(ACCELERATORS)}"),
        ("extract.eval_samples", e.eval_samples, e.eval_samples >= 1, "≥ 1"),
        ("extract.batch_size", e.batch_size, e.batch_size >= 1, "≥ 1"),
        ("trajectory.eval_samples", params.trajectory.eval_samples, params.trajectory.eval_samples >= 8, "≥ 8"),
        ("trajectory.batch_size", params.trajectory.batch_size, params.trajectory.batch_size >= 4, "≥ 4 (CKA)"),
        ("trajectory.probe_samples", params.trajectory.probe_samples, params.trajectory.probe_samples >= 4, "≥ 4"),
        ("trajectory.bins", params.trajectory.bins, params.trajectory.bins >= 2, "≥ 2"),
        ("trajectory.entropy_range", params.trajectory.entropy_range, params.trajectory.entropy_range > 0, "> 0"),
        ("trajectory.maps", params.trajectory.maps, params.trajectory.maps >= 1, "≥ 1"),
        ("trajectory.oip_steps", params.trajectory.oip_steps, params.trajectory.oip_steps >= 1, "≥ 1"),
        ("compare.bins", c.bins, c.bins >= 2, "≥ 2"),
        ("compare.bootstrap", c.bootstrap, c.bootstrap >= 1, "≥ 1"),
        ("compare.confidence", c.confidence, 0 < c.confidence < 1, "in (0, 1)"),
        ("compare.max_maps", c.max_maps, c.max_maps >= 1, "≥ 1"),
        (
            "compare.linear_probe_test_fraction",
            c.linear_probe_test_fraction,
            0 < c.linear_probe_test_fraction < 1,
            "in (0, 1)",
        ),
        ("compare.scale_quantile", c.scale_quantile, 0 < c.scale_quantile <= 1, "in (0, 1]"),
        ("compare.cka_batch", c.cka_batch, c.cka_batch >= 4, "≥ 4 (the unbiased HSIC needs 4 images)"),
        ("compare.probe_grid", c.probe_grid, c.probe_grid >= 1, "≥ 1"),
        ("compare.fcp_draws", c.fcp_draws, c.fcp_draws >= 1, "≥ 1"),
        ("compare.overlap_resamples", c.overlap_resamples, c.overlap_resamples >= 0, "≥ 0"),
        (
            "compare.confusion_pair",
            list(c.confusion_pair),
            len(c.confusion_pair) == 2 and len(set(c.confusion_pair)) == 2,
            "two different class names",
        ),
        ("data.image_size", d.image_size, d.image_size is None or d.image_size >= 1, "≥ 1 or null"),
        ("data.channels", d.channels, d.channels in (None, 1, 3), "1, 3 or null"),
        ("data.train_size", d.train_size, d.train_size is None or d.train_size >= 1, "≥ 1 or null"),
        *_stage_ranges(params),
    ]
    models = [("model", params.model)]
    for name in [v for v in params.study.variants if v in params.study.variant_specs]:  # others: _check_semantics
        try:
            models.append((f"study.variant_specs.{name}.model", variant_model_config(params, name)))
        except OmegaConfBaseException as err:
            raise ConfigError(f"study.variant_specs.{name}.model is invalid: {err.msg}") from None
    for prefix, m in models:
        rules += [
            (f"{prefix}.lr", m.lr, m.lr > 0, "> 0"),
            (f"{prefix}.momentum", m.momentum, 0 <= m.momentum < 1, "in [0, 1)"),
            (f"{prefix}.weight_decay", m.weight_decay, m.weight_decay >= 0, "≥ 0"),
            (f"{prefix}.dropout", m.dropout, 0 <= m.dropout < 1, "in [0, 1)"),
            (f"{prefix}.width", m.width, m.width > 0, "> 0"),
            (f"{prefix}.hidden", m.hidden, m.hidden >= 1, "≥ 1"),
            (f"{prefix}.depth", m.depth, m.depth is None or m.depth >= 1, "≥ 1 or null"),
            (f"{prefix}.lr_step_size", m.lr_step_size, m.lr_step_size >= 1, "≥ 1"),
            (f"{prefix}.lr_gamma", m.lr_gamma, 0 < m.lr_gamma <= 1, "in (0, 1]"),
        ]
    return rules


def _non_finite(tree: Any, key: str = "") -> list[str]:
    """Keys (dotted) of every NaN or infinite number in a plain config tree."""
    if isinstance(tree, float):
        return [] if math.isfinite(tree) else [key]
    if isinstance(tree, dict):
        return [k for sub, value in tree.items() for k in _non_finite(value, f"{key}.{sub}" if key else str(sub))]
    if isinstance(tree, list):
        return [k for i, value in enumerate(tree) for k in _non_finite(value, f"{key}[{i}]")]
    return []


def check_values(params: Params) -> None:
    """Reject non-finite numbers, out-of-range settings, variant names that are not plain
    identifiers and output folders outside the repository — each naming the key and the fix."""
    bad = _non_finite(to_container(params))
    if bad:
        raise ConfigError(f"{', '.join(bad)} must be a finite number (got NaN or infinity): set a real value")
    for key, value, ok, rule in _ranges(params):
        if not ok:
            raise ConfigError(f"{key}={value} is out of range: it must be {rule}")
    study = params.study
    for name in [*study.variants, *study.variant_specs]:
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"variant name {name!r} is not a plain identifier (letters, digits, '_', starting with a "
                "letter): it names folders and DVC stages, so rename it in study.variants and study.variant_specs"
            )
    if not _STUDY_NAME.fullmatch(study.name):
        raise ConfigError(
            f"study.name={study.name!r} is not a plain name (letters, digits, '_' or '-', no '/' or '..'): it "
            "names the folders reports/<name>/ and <atlas.out_dir>/<name>/, replaced as a whole; rename the study"
        )
    _check_lists(params)
    config = to_container(params)
    folders: dict[str, Path] = {}
    for key in _OUTPUT_DIRS:
        section, field_name = key.split(".")
        path = Path(config[section][field_name])
        if path.is_absolute() or ".." in path.parts:
            raise ConfigError(
                f"{key}={str(path)!r} points outside the repository: use a relative path inside it "
                "(outputs are DVC-tracked and replaced as a whole)"
            )
        if not path.parts:
            raise ConfigError(
                f"{key}={str(config[section][field_name])!r} is the repository itself: name a folder inside it "
                "(outputs are DVC-tracked and replaced as a whole)"
            )
        for other, taken in folders.items():
            if path == taken or taken in path.parents or path in taken.parents:
                raise ConfigError(
                    f"{key}={str(path)!r} and {other}={str(taken)!r} overlap: each stage's output folder is "
                    "replaced as a whole, so give them separate folders"
                )
        folders[key] = path


def _check_lists(params: Params) -> None:
    """Seeds and map indices: no duplicates, each in range (a repeated seed would be counted twice
    in every mean and make a seed-level verdict look better founded than it is)."""
    study, oip = params.study, params.oip
    lists: list[tuple[str, list[Any], str]] = [
        ("study.seeds", list(study.seeds), "each seed trains one network per variant"),
        ("study.oip_seeds", list(study.oip_seeds), "each seed's networks get OIPs once"),
        ("study.variants", list(study.variants), "each variant is trained once per seed"),
        ("oip.maps", list(oip.maps), "each map is optimised once"),
        ("oip.wavelengths", list(oip.wavelengths), "each wavelength is one noise start per restart"),
    ]
    for key, values, why in lists:
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ConfigError(f"{key}={values} repeats {repeated}: list each once ({why})")
    if not study.seeds:
        raise ConfigError("study.seeds is empty: list at least one training seed (3 for seed-level verdicts)")
    for key, seeds in [("study.seeds", list(study.seeds)), ("study.oip_seeds", list(study.oip_seeds))]:
        if seeds != sorted(seeds):  # one meaning of "the first seed": seeds[0], the smallest
            raise ConfigError(
                f"{key}={seeds} is not in increasing order: list it as {sorted(seeds)} (the first seed, "
                "whose networks the figures and the report's single-network sections show, is the smallest)"
            )
    if not oip.wavelengths:
        raise ConfigError("oip.wavelengths is empty: list at least one noise wavelength in pixels, e.g. [1, 4]")
    for key, values in [("oip.maps", oip.maps), ("oip.evolution_maps", oip.evolution_maps)]:
        if any(m < 0 for m in values):
            raise ConfigError(f"{key}={list(values)} has a negative map index: map indices start at 0")
    if oip.focus_map is not None and oip.focus_map < 0:
        raise ConfigError(f"oip.focus_map={oip.focus_map} is a negative map index: use an index ≥ 0 or null")
    chosen: list[tuple[str, list[int | None]]] = [
        ("oip.evolution_maps", list(oip.evolution_maps)),
        ("oip.focus_map", [oip.focus_map]),
    ]
    for key, values in chosen:
        missing = [m for m in values if m is not None and oip.maps and m not in oip.maps]
        if missing:
            raise ConfigError(
                f"{key} names map(s) {missing} that oip.maps={list(oip.maps)} does not optimise: "
                "add them to oip.maps or pick from it"
            )
    if any(w < 1 for w in oip.wavelengths):
        raise ConfigError(f"oip.wavelengths={list(oip.wavelengths)}: each must be ≥ 1 pixel (1 = pixel noise)")
    if any(s < 0 for s in oip.snapshots):
        raise ConfigError(
            f"oip.snapshots={list(oip.snapshots)} has a negative step: snapshots are steps 0..oip.steps "
            "(a larger one is taken at the last step)"
        )
    _check_maps_in_layer(params)
    _check_split_size(params)


def _check_split_size(params: Params) -> None:
    """``exemplars.k`` and ``exemplars.median_images`` against an upper bound of the searched split's
    size where the source fixes it (:data:`SOURCE_SIZES`); the exemplars stage checks the exact size
    (probes and validation images left out) before its work."""
    d, x = params.data, params.exemplars
    name = str(getattr(d.name, "value", d.name))
    if name not in SOURCE_SIZES:
        return
    pool, test = SOURCE_SIZES[name]
    if test is None:  # no test split of its own: it is cut from the pool
        test = round(d.test_fraction * pool)
        pool -= test
    bound = test if x.split == "test" else pool
    for key, wanted in (("k", x.k), ("median_images", x.median_images)):
        if wanted > bound:
            raise ConfigError(
                f"exemplars.{key}={wanted} images per map, but exemplars.split={x.split!r} of data.name={name} "
                f"holds at most {bound} images: set exemplars.{key} ≤ {bound}"
            )


def _known_input(data: DataConfig) -> tuple[int, int] | None:
    """(channels, image side) of the prepared images when the configuration alone fixes them;
    None when only the files tell (an ImageFolder tree without data.channels and data.image_size)."""
    name = str(getattr(data.name, "value", data.name))
    if name in ("embedded", "mnist", "fashion_mnist"):
        return 1, 28
    if name == "cifar10":  # the python batches ignore data.channels / data.image_size; a JPEG tree honours them
        return (3, 32) if data.channels is None and data.image_size is None else None
    if data.channels is not None and data.image_size is not None:
        return data.channels, data.image_size
    return None


def _check_maps_in_layer(params: Params) -> None:
    """``oip.layer``, ``oip.maps`` and ``oip.wavelengths`` against every variant's network, where
    the input shape is known from the configuration: the network is built (random weights, no
    data) and its target layer's map count read, so an index past the last map fails here and not
    in the oip stage after every upstream stage has run."""
    oip, shape = params.oip, _known_input(params.data)
    if shape is None:
        return
    channels, size = shape
    if any(w > size for w in oip.wavelengths):
        raise ConfigError(f"oip.wavelengths={list(oip.wavelengths)}: each must be 1..{size} pixels (the image side)")
    import torch

    from cnnscope.models.networks import Arch
    from cnnscope.models.registry import MODELS

    for variant in [v for v in params.study.variants if v in params.study.variant_specs]:
        m = variant_model_config(params, variant)
        depth = None if m.depth is None else int(m.depth)
        knobs = (float(m.width), int(m.hidden), bool(m.batch_norm), float(m.dropout), depth)
        try:
            net = MODELS[m.name.value](Arch(channels, 10, size, [0.0] * channels, [1.0] * channels, *knobs))
        except (ValueError, TypeError, RuntimeError):  # the train stage says why this network cannot be built
            continue
        if oip.layer is None and not net.conv_layers:  # no feature maps (a pixel MLP): the oip stage records that
            continue
        layer = oip.layer if oip.layer is not None else net.conv_layers[-1]
        if layer not in net.layer_names:
            raise ConfigError(
                f"oip.layer={layer!r} is not a layer of variant {variant!r} ({m.name.value}): valid layers are "
                f"{', '.join(net.layer_names)}; or null for the deepest convolution"
            )
        with torch.no_grad():
            n_maps = int(net.eval().truncated(layer)(torch.zeros(1, channels, size, size)).shape[1])
        beyond = [i for i in oip.maps if i >= n_maps]
        if beyond:
            raise ConfigError(
                f"oip.maps={list(oip.maps)}: {beyond} out of range for layer {layer} of variant {variant!r}, "
                f"which has {n_maps} maps: use indices 0..{n_maps - 1}, or [] for all"
            )


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
    check_variant(params.study, variant)
    merged = OmegaConf.merge(OmegaConf.structured(params.model), params.study.variant_specs[variant].model)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def to_container(params: Params | DataConfig) -> dict[str, Any]:
    """Plain-dict form of ``params`` or one of its sections (enums as strings), for logging and
    manifests."""
    return OmegaConf.to_container(OmegaConf.structured(params), enum_to_str=True)  # type: ignore[return-value]
