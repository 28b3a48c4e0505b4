"""Schema of the analysis stages' sections of ``params.yaml`` (``extract``, ``compare``, ``oip``,
``exemplars``, ``atlas``, ``trajectory``), part of :class:`cnnscope.config.Params` and imported
from :mod:`cnnscope.config` like the rest of it. No defaults: ``conf/`` holds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


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
    #: Fewest share of a network's live maps whose OIP ascent converged before its OIPs enter claim
    #: (d); below it in any seed the row reads *not converged* (:mod:`cnnscope.analysis.convergence`).
    min_converged: float


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
