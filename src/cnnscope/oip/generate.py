"""OIPs for every map of a layer, or every node of one map, optimised as one batch.

The batch dimension is ``map × restart × wavelength`` (or ``node × restart × wavelength``): one forward
and one backward pass per step serve all candidates, and the pass stops at the target layer
(``model.truncated``). On a CPU that turns a per-step-overhead-bound loop into arithmetic-bound
work; on a GPU it is what fills the device at all. On a CPU the batch runs as a few consecutive
passes of a cache-sized share of the candidates each (:func:`pass_rows`), with the same results.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cnnscope.models import LayeredCNN
from cnnscope.oip.ascent import AscentTrace, Parameterization, ascend, frozen, pool_before_relu
from cnnscope.oip.color import ValidImage
from cnnscope.oip.errors import OIPError
from cnnscope.oip.objectives import MapMean, Node, TargetObjective
from cnnscope.oip.param import NOISE_KINDS, initial_noise, standardize
from cnnscope.oip.spectral import FourierImage
from cnnscope.oip.transforms import SUPPRESSIONS, Jitter, RandomAffine, Transform, compose, suppression
from cnnscope.progress import interactive, track

if TYPE_CHECKING:  # the type only: the OIP code runs without the config (and omegaconf)
    from cnnscope.config import OIPConfig

#: Bytes of a CPU ascent pass's largest activation (:func:`pass_rows`): the first block's maps of a
#: pass, with their gradients and pooling indices, then stay within a few MB of cache per worker.
CPU_PASS_BYTES = 4 << 20

#: How an ascent's variables map to the image: ``pixel`` (the seed article's recipe: the pixels,
#: blurred and re-standardised after each step) or ``fourier`` (:mod:`cnnscope.oip.spectral`).
PARAMETERIZATIONS = ("pixel", "fourier")


@dataclass(frozen=True)
class OIPSettings:
    """How candidates start and how they are stepped: shared by map and node OIPs, so that the
    per-node grid of a map is comparable with that map's OIPs. No setting has a default here: they
    live in the configuration (``conf/oip/default.yaml``); build from it with :meth:`from_config`."""

    #: The noise restarts, each named by its noise seed (not a training seed); every (restart,
    #: wavelength) pair is one candidate per target.
    restarts: Sequence[int]
    #: Noise wavelengths in pixels (1 = pixel noise), each ≤ the image side.
    wavelengths: Sequence[int]
    steps: int
    #: Step on the standardised input, in units of the unit-RMS gradient.
    step_size: float
    #: Starting noise: one of :data:`cnnscope.oip.param.NOISE_KINDS`.
    noise: str
    #: High-frequency suppression after each step: one of :data:`cnnscope.oip.transforms.SUPPRESSIONS`.
    suppress: str
    blur_sigma: float
    fourier_damping: float
    #: Random shift of up to this many pixels before each forward pass (0: none).
    jitter: int
    #: Random zoom by up to ± this fraction before each forward pass (0: none).
    scale: float
    #: Random rotation by up to ± this many degrees before each forward pass (0: none).
    rotate: float
    #: ``pixel`` (suppression and re-standardisation after each step) or ``fourier`` (spectral
    #: variables with ``1/f ** decay`` scaling through a sigmoid to valid pixels; no suppression).
    parameterization: str
    #: Spectrum decay of the ``fourier`` parameterisation (1: natural images' 1/f).
    decay: float
    #: Shrink the step along a half cosine to 0 over the run (:func:`~cnnscope.oip.ascent.ascend`).
    anneal: bool
    #: ``fourier`` only: amplitude of the starting noise in decorrelated colours (1: the data's own
    #: colour contrast; Lucid starts from 0.01, nearly the mean image).
    init_scale: float
    #: ``fourier`` only: square root of the training data's pixel colour covariance ([0, 1]
    #: scale, ``C × C`` rows), the decorrelated colour space; ``None``: channels uncorrelated,
    #: each with the network's training std. Not a setting: measured on the data (``oip.decorrelate``).
    colour_sqrt: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        # fail when the settings are made, before any model is loaded, naming the registered kinds
        if self.noise not in NOISE_KINDS:
            raise OIPError(f"unknown noise {self.noise!r}; choose one of: {', '.join(NOISE_KINDS)}")
        if self.suppress not in SUPPRESSIONS:
            raise OIPError(f"unknown suppression {self.suppress!r}; choose one of: {', '.join(SUPPRESSIONS)}")
        if self.parameterization not in PARAMETERIZATIONS:
            raise OIPError(
                f"unknown parameterization {self.parameterization!r}; choose one of: {', '.join(PARAMETERIZATIONS)}"
            )

    @classmethod
    def from_config(cls, cfg: OIPConfig, colour_sqrt: tuple[tuple[float, ...], ...] | None = None) -> OIPSettings:
        """The settings of the ``oip`` config section: ``restarts`` noise restarts, their seeds counted
        from ``noise_seed``, and the section's ascent knobs; ``colour_sqrt`` is the decorrelated colour
        space (:func:`cnnscope.oip.color.colour_sqrt`) when ``oip.decorrelate`` is on. Keys named
        as a field here pass through; the others are converted or renamed."""
        same_named = {f.name: getattr(cfg, f.name) for f in fields(cls) if hasattr(cfg, f.name)}
        converted = {
            "restarts": [cfg.noise_seed + i for i in range(cfg.restarts)],
            "wavelengths": list(cfg.wavelengths),
            "suppress": cfg.suppression,
            "parameterization": cfg.parameterization.value,
            "colour_sqrt": colour_sqrt,
        }
        return cls(**(same_named | converted))

    @property
    def candidates(self) -> int:
        """Candidates per target: restarts × wavelengths."""
        return len(self.restarts) * len(self.wavelengths)


@dataclass
class OIPResult:
    """OIPs of ``maps`` of ``layer``; tensors are indexed ``[map, restart, wavelength, …]``."""

    layer: str
    maps: list[int]
    restarts: list[int]
    wavelengths: list[int]
    #: Starting noise ``(K, W, C, H, W)``, shared by all maps.
    start: torch.Tensor
    #: Final images ``(M, K, W, C, H, W)`` in the standardised input space.
    images: torch.Tensor
    #: Objective at every step ``(steps + 1, M, K, W)``.
    history: torch.Tensor
    #: Step → images ``(M, K, W, C, H, W)``; ``snapshots[0]`` is the starting noise.
    snapshots: dict[int, torch.Tensor]
    #: ``(M, K, W)``: whether the candidate ever had a non-zero gradient.
    grad_seen: torch.Tensor
    #: ``(M,)``: objective of the (re-standardised) mean of the K restarts' OIPs at the map's best
    #: wavelength — high when the restarts found the same pattern, low when they cancel.
    mean_image_activation: torch.Tensor
    #: ``(M,)``: objective of the all-zero standardised image, i.e. the training mean image.
    baseline_activation: torch.Tensor

    @property
    def final(self) -> torch.Tensor:
        """Objective after the last step ``(M, K, W)``."""
        return self.history[-1]

    def best_candidates(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per map, the (restart index, wavelength index) of its highest final objective, ``(M,)`` each."""
        n_wl = self.final.shape[2]
        flat = self.final.flatten(1).argmax(dim=1)
        return flat // n_wl, flat % n_wl

    def tensors(self, nodes: NodeOIPResult | None = None) -> dict[str, Any]:
        """Everything needed to redraw the figures without re-running the ascent (``oips.pt``)."""
        out: dict[str, Any] = {
            "layer": self.layer,
            "maps": self.maps,
            "restarts": self.restarts,
            "wavelengths": self.wavelengths,
            "images": self.images,
            "history": self.history,
            "grad_seen": self.grad_seen,
            "snapshots": self.snapshots,
        }
        if nodes is not None:
            out |= {"node_map": nodes.map, "node_images": nodes.images, "node_activation": nodes.activation}
        return out


@dataclass
class NodeOIPResult:
    """One OIP per node ``(y, x)`` of map ``map`` of ``layer``: the best over restarts and wavelengths."""

    layer: str
    map: int
    #: ``(Hn, Wn, C, H, W)`` standardised images.
    images: torch.Tensor
    #: ``(Hn, Wn)`` objective of each node's image.
    activation: torch.Tensor
    #: ``(Hn, Wn)`` wavelength of each node's best candidate.
    wavelength: torch.Tensor
    #: ``(Hn, Wn)``: no candidate of the node ever had a non-zero gradient.
    dead: torch.Tensor


def default_layer(model: LayeredCNN) -> str:
    """The deepest post-ReLU feature map: what the article's OIPs are shown for."""
    if not model.conv_layers:
        raise OIPError(f"the model has no convolutional feature maps; name a layer from: {model.layer_names}")
    return model.conv_layers[-1]


def layer_shape(model: LayeredCNN, layer: str) -> tuple[int, ...]:
    """Output shape (without batch) of ``layer`` at the model's native input size."""
    if layer not in model.layer_names:
        raise OIPError(f"unknown layer {layer!r}; valid layers are: {', '.join(model.layer_names)}")
    net = model.truncated(layer)
    device = next(model.buffers()).device
    with torch.no_grad():
        out = net(torch.zeros(1, model.in_channels, model.image_size, model.image_size, device=device))
    return tuple(out.shape[1:])


def ascent_net(model: LayeredCNN, layer: str) -> nn.Sequential:
    """The network the ascent runs: stopped at ``layer``, ReLUs moved behind the max-pools they
    feed (:func:`~cnnscope.oip.ascent.pool_before_relu`, exact and cheaper)."""
    return pool_before_relu(model.truncated(layer))


def check_request(
    model: LayeredCNN,
    layer: str,
    maps: Sequence[int],
    settings: OIPSettings,
    snapshots: Sequence[int],
    min_restarts: int = 1,
) -> tuple[int, ...]:
    """Validate an OIP request; each failure names what is valid. Returns the layer's shape."""
    shape = layer_shape(model, layer)
    restarts, wavelengths, steps = settings.restarts, settings.wavelengths, settings.steps
    bad_maps = [m for m in maps if not 0 <= m < shape[0]]
    if bad_maps:
        raise OIPError(f"map index {bad_maps} out of range for layer {layer!r}: valid maps are 0..{shape[0] - 1}")
    if not maps:
        raise OIPError("no maps requested; give map indices or leave the list empty in the config for all")
    size = model.image_size
    bad_wl = [w for w in wavelengths if not 1 <= w <= size]
    if bad_wl or not wavelengths:
        raise OIPError(f"wavelengths {list(wavelengths)} invalid: each must be 1..{size} pixels (the image side)")
    if steps < 1:
        raise OIPError(f"steps={steps}: the ascent needs at least 1 step")
    if len(restarts) < min_restarts:
        raise OIPError(
            f"{len(restarts)} restart(s) given; at least {min_restarts} are needed (robustness compares restarts)"
        )
    if settings.parameterization not in PARAMETERIZATIONS:
        raise OIPError(
            f"unknown parameterization {settings.parameterization!r}; choose one of: {', '.join(PARAMETERIZATIONS)}"
        )
    if not settings.init_scale > 0:
        raise OIPError(f"init_scale={settings.init_scale}: the starting noise needs a positive amplitude")
    if settings.colour_sqrt is not None and settings.parameterization != "fourier":
        raise OIPError("a decorrelated colour space needs the fourier parameterization; the pixel recipe has none")
    bad_snap = [s for s in snapshots if not 0 <= s <= steps]
    if bad_snap:
        raise OIPError(f"snapshot steps {bad_snap} are outside the run: valid steps are 0..{steps}")
    return shape


def _ascend_targets(
    model: LayeredCNN,
    layer: str,
    n_targets: int,
    objective: TargetObjective,
    settings: OIPSettings,
    snapshots: Sequence[int],
) -> tuple[torch.Tensor, AscentTrace]:
    """One ascent of ``n_targets × restarts × wavelengths`` candidates (target-major), every target
    starting from the same noise images, run as :func:`pass_rows` passes. Returns the noise
    ``(K, W, C, H, W)`` and the trace.

    Each pass starts its own jitter and zoom generators from the same seed: they draw one shift per
    step for the whole batch, whatever its size, so a pass sees the shifts the whole batch would, and
    the passes together give the one-batch trace."""
    device = next(model.buffers()).device
    restarts, wavelengths = [int(s) for s in settings.restarts], [int(w) for w in settings.wavelengths]
    noise = initial_noise(restarts, wavelengths, model.in_channels, model.image_size, settings.noise)
    start = noise.flatten(0, 1).repeat(n_targets, 1, 1, 1).to(device)
    if settings.parameterization != "pixel":
        start = start * settings.init_scale
    net = ascent_net(model, layer)
    with frozen(net):
        passes = pass_rows(net, start)
        traces = []
        label = f"oip {layer} ({len(start)} candidates)"
        with track(label, settings.steps * len(passes), "mean objective") as advance:
            for rows in passes:
                traces.append(
                    ascend(
                        net,
                        start[rows],
                        objective.rows(rows),
                        settings.steps,
                        settings.step_size,
                        suppression(settings.suppress, settings.blur_sigma, settings.fourier_damping),
                        _transforms(settings, restarts[0]),
                        snapshots,
                        _parameterization(model, settings),
                        settings.anneal,
                        advance if interactive() else None,
                    )
                )
    return noise, AscentTrace.concatenate(traces)


def pass_rows(net: nn.Module, start: torch.Tensor) -> list[slice]:
    """The candidates of ``start`` split into consecutive passes of near-equal size: one pass on a GPU
    (which needs the whole batch to fill it); on a CPU, as many candidates per pass as keep the pass's
    largest activation (one image's, times the pass) within :data:`CPU_PASS_BYTES`. A step writes and reads
    the first block's maps several times (the convolution, the max-pool, their gradients): while they
    fit in the processor's cache, that traffic stays off main memory, which two stages side by side
    share (benchmarks/README.md, "OIP passes"). Candidates do not interact (eval
    mode, one objective and one gradient normalisation each): the pixel recipe's numbers come out the
    same bit for bit, the FFT-based ones (``fourier`` parameterisation or damping) to float rounding,
    as pocketfft vectorises across a batch (tested). The split depends only on the network and this
    constant, so a run is as byte-stable as before."""
    total = len(start)
    if start.device.type != "cpu" or total == 0:
        return [slice(0, total)]
    largest, x = 0, start[:1]
    with torch.no_grad():
        for module in net.children():
            x = module(x)
            largest = max(largest, x.numel() * x.element_size())
    count = math.ceil(total / max(1, CPU_PASS_BYTES // max(1, largest)))
    bounds = [round(i * total / count) for i in range(count + 1)]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def _transforms(settings: OIPSettings, seed: int) -> Transform | None:
    """Jitter, then random zoom and rotation: one draw per step for the whole batch."""
    jitter = Jitter(settings.jitter, seed=seed)
    if settings.scale == 0 and settings.rotate == 0:
        return jitter
    return compose(jitter, RandomAffine(settings.scale, settings.rotate, seed=seed))


def _parameterization(model: LayeredCNN, settings: OIPSettings) -> Parameterization | None:
    """``None`` for the pixel recipe; else the spectral variables rendered through the (optionally
    decorrelated) colour space to valid pixels, standardised with the model's statistics."""
    if settings.parameterization == "pixel":
        return None
    device = next(model.buffers()).device
    root = None if settings.colour_sqrt is None else torch.tensor(settings.colour_sqrt, device=device)
    valid = ValidImage(model.mean, model.std, root)
    return FourierImage(model.image_size, valid, settings.decay, device)


def generate_oips(
    model: LayeredCNN,
    layer: str | None,
    maps: Sequence[int] | None,
    settings: OIPSettings,
    snapshots: Sequence[int],
) -> OIPResult:
    """OIPs for ``maps`` (default: all) of ``layer`` (default: the deepest conv map), all restarts and
    wavelengths in one batch, on the model's device. The model is left unchanged."""
    layer = layer if layer is not None else default_layer(model)
    shape = layer_shape(model, layer)
    maps = list(range(shape[0])) if maps is None else [int(m) for m in maps]
    check_request(model, layer, maps, settings, snapshots, min_restarts=2)
    device = next(model.buffers()).device
    channels = torch.tensor(maps, device=device).repeat_interleave(settings.candidates)
    noise, trace = _ascend_targets(model, layer, len(maps), MapMean(channels), settings, snapshots)
    grid = (len(maps), len(settings.restarts), len(settings.wavelengths))
    images = trace.images.view(*grid, *noise.shape[2:])
    net = ascent_net(model, layer)
    restandardize = settings.parameterization == "pixel"
    with frozen(net):
        mean_act, base_act = _reference_activations(
            net, images, trace.history[-1].view(grid), maps, device, restandardize
        )
    return OIPResult(
        layer=layer,
        maps=maps,
        restarts=[int(s) for s in settings.restarts],
        wavelengths=[int(w) for w in settings.wavelengths],
        start=noise,
        images=images,
        history=trace.history.view(-1, *grid),
        snapshots={s: v.view(*grid, *noise.shape[2:]) for s, v in trace.snapshots.items()},
        grad_seen=trace.grad_seen.view(grid),
        mean_image_activation=mean_act,
        baseline_activation=base_act,
    )


def _reference_activations(
    net: nn.Module,
    images: torch.Tensor,
    final: torch.Tensor,
    maps: list[int],
    device: torch.device,
    restandardize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Objective of the restart-mean OIP at each map's best wavelength, and of the zero image.

    The pixel recipe's images live on the standardised sphere, so their mean is re-standardised;
    a parameterisation's images are valid images already, and so is their mean."""
    best_wl = final.max(dim=1).values.argmax(dim=1)  # (M,)
    rows = torch.arange(len(maps))
    mean_images = images[rows, :, best_wl].mean(dim=1)
    mean_images = standardize(mean_images) if restandardize else mean_images
    channels = torch.tensor(maps, device=device)
    with torch.no_grad():
        mean_act = MapMean(channels)(net(mean_images.to(device))).cpu()
        zero = torch.zeros(len(maps), *images.shape[-3:], device=device)
        base_act = MapMean(channels)(net(zero)).cpu()
    return mean_act, base_act


def generate_node_oips(
    model: LayeredCNN,
    map_index: int,
    layer: str | None,
    settings: OIPSettings,
) -> NodeOIPResult:
    """One OIP per node of map ``map_index``: batch = node × restart × wavelength, one run."""
    layer = layer if layer is not None else default_layer(model)
    shape = check_request(model, layer, [map_index], settings, ())
    if len(shape) != 3:
        raise OIPError(f"layer {layer!r} has no spatial nodes (shape {shape}); use a convolutional layer")
    _, height, width = shape
    n_nodes, per_node = height * width, settings.candidates
    device = next(model.buffers()).device
    nodes = torch.arange(n_nodes, device=device).repeat_interleave(per_node)
    objective = Node(torch.full_like(nodes, map_index), nodes // width, nodes % width)
    noise, trace = _ascend_targets(model, layer, n_nodes, objective, settings, ())  # no evolution figure per node
    final = trace.history[-1].view(n_nodes, per_node)
    best = final.argmax(dim=1)
    rows = torch.arange(n_nodes)
    image_shape = noise.shape[2:]
    images = trace.images.view(n_nodes, per_node, *image_shape)[rows, best]
    wl = torch.tensor([int(w) for w in settings.wavelengths]).repeat(len(settings.restarts))[best]
    return NodeOIPResult(
        layer=layer,
        map=map_index,
        images=images.view(height, width, *image_shape),
        activation=final[rows, best].view(height, width),
        wavelength=wl.view(height, width),
        dead=~trace.grad_seen.view(n_nodes, per_node).any(dim=1).view(height, width),
    )
