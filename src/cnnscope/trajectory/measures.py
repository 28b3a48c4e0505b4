"""Every map layer of every checkpoint of one run, measured in one streaming pass.

How a map develops over training is read off the weights saved along it
(:mod:`cnnscope.models.steps`). For each checkpoint and each feature map (``model.conv_layers``)
this computes, on a fixed evaluation sample:

* **Hoyer sparsity** (mean over images) and the **normalised entropy** of the layer's values
  (:mod:`cnnscope.analysis.scalefree`): values divided by the checkpoint's own robust scale, binned on
  ``bins`` equal-width edges over ``[−entropy_range, entropy_range]`` shared by every checkpoint,
  variant and seed (values beyond go to the end bins), so entropies compare along and across runs.
  The robust scale comes from the first minibatch (a fixed, class-mixed sample), so one pass suffices;
* **debiased minibatch CKA** to the same layer of the initial and of the final network
  (:mod:`cnnscope.analysis.cka`);
* a **spatial linear probe** on the first ``probe_samples`` images (:mod:`cnnscope.analysis.spatial_probe`);
* for the tracked maps of the deepest layer, the **top image** (largest maximum over positions) and its class;
* the **test accuracy** on the same images, from the same forward pass (a second pass over the whole
  test split per checkpoint cost as much as the rest together).

The stored evaluation sample is sorted by class, so the images are first put in one seeded order
(:func:`cnnscope.analysis.sample_order.shuffled`): minibatches of two classes would bias the CKA and
the scale. The pass runs over minibatches outside and checkpoints inside: each batch's Gram
matrices of the initial and final networks are built once, and memory holds one batch of
activations (in buffers every network reuses), one network besides the initial and final ones
(the caller's mapping may read each from disk), the accumulators and the probe features — flat in
the number of images; only the accumulators and probe features grow with the checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from cnnscope.activations.capture import capture, output_shapes
from cnnscope.analysis.cka import _hsic_matrix, _ratio, gram
from cnnscope.analysis.information import entropy
from cnnscope.analysis.linear_probe import probe_accuracy, probe_split
from cnnscope.analysis.scalefree import robust_scale
from cnnscope.analysis.spatial_probe import grid_features
from cnnscope.models import LayeredCNN
from cnnscope.runtime import release_freed_memory


@dataclass(frozen=True)
class PassSettings:
    batch_size: int
    probe_samples: int
    bins: int
    entropy_range: float
    #: Spatial probe: each map average-pooled to ``grid × grid``.
    grid: int = 2
    #: Robust scale: this quantile of the non-zero |x| (as the compare stage's ``scale_quantile``).
    quantile: float = 0.99


@dataclass
class _Layer:
    """Running sums of one (checkpoint, layer). Its arrays are allocated before the pass: long-lived
    blocks allocated between a batch's large temporaries pin the heap above them (issue 26)."""

    counts: np.ndarray
    #: ``(probe images, pooled features)``, filled batch by batch.
    probe: np.ndarray
    scale: float = float("nan")
    hoyer_sum: float = 0.0
    hoyer_n: int = 0
    hsic: torch.Tensor = field(default_factory=lambda: torch.zeros(3, 3, dtype=torch.float64))


#: Images per forward pass inside a minibatch: the minibatch's outputs are assembled from chunks, so
#: the forward pass's own temporaries are those of a few images, not of the whole minibatch (peak
#: memory, issue 26). At the stages' one thread, each image's maps do not depend on the chunk it is
#: computed in (tested; the logits of a chunk of a few images can differ in the last bit).
FORWARD_CHUNK = 25
#: Rows of a batch histogrammed at once (exact integer counts, whatever the split).
HISTOGRAM_ROWS = 10


def _standardised(model: LayeredCNN, images: torch.Tensor) -> torch.Tensor:
    return model.standardize(images.to(model.mean.device).float().div_(255))


def _outputs(
    model: LayeredCNN, images: torch.Tensor, layers: Sequence[str], buffers: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """``capture`` of uint8 ``images``, run :data:`FORWARD_CHUNK` images at a time.

    With ``buffers`` (layer → a tensor, filled in on first use) the outputs are views into tensors
    reused from call to call, valid until the next call: the pass then allocates a minibatch's
    outputs once, not once per network, and the heap no longer fragments around them (issue 26)."""
    store: dict[str, torch.Tensor] = {} if buffers is None else buffers
    out: dict[str, torch.Tensor] = {}
    for start in range(0, len(images), FORWARD_CHUNK):
        part = capture(model, _standardised(model, images[start : start + FORWARD_CHUNK]), layers)
        for name, value in part.items():
            if name not in out:
                held = store.get(name)
                if held is None or len(held) < len(images) or held.shape[1:] != value.shape[1:]:
                    held = store[name] = value.new_empty((len(images), *value.shape[1:]))
                out[name] = held[: len(images)]
            out[name][start : start + len(value)] = value
    return out


def _histogram(x: torch.Tensor, scale: float, settings: PassSettings) -> np.ndarray:
    """Counts of ``x / scale`` on ``bins`` equal-width bins over ``±entropy_range`` (beyond: the end bins).

    Counted :data:`HISTOGRAM_ROWS` rows at a time: ``torch.histc`` holds an 8-byte bin index per value,
    which for a whole minibatch of the first layer was the pass's largest temporary (issue 26)."""
    edge = settings.entropy_range * scale
    counts = torch.zeros(settings.bins, dtype=torch.float64)
    for rows in x.split(HISTOGRAM_ROWS):
        counts += torch.histc(rows, settings.bins, -edge, edge)  # ignores the values beyond ±edge ...
        counts[0] += int((rows < -edge).sum())  # ... which go to the end bins, without a clamped copy
        counts[-1] += int((rows > edge).sum())
    return counts.numpy()


def hoyer(flat: torch.Tensor) -> np.ndarray:
    """Hoyer sparsity of each row of ``(rows, n)``, as :mod:`cnnscope.analysis.scalefree` defines it
    (NaN for an all-zero row), without the kurtosis that module computes beside it."""
    n = flat.shape[1]
    l1 = torch.linalg.vector_norm(flat, 1, dim=1).double()  # as the L2 norm: no |x| copy of the batch
    l2 = flat.norm(dim=1).double()
    ratio = torch.where(l2 > 0, l1 / l2.clamp_min(1e-300), torch.nan)
    return ((np.sqrt(n) - ratio) / (np.sqrt(n) - 1)).numpy() if n > 1 else torch.zeros_like(ratio).numpy()


def _grams(
    model: LayeredCNN, batch: torch.Tensor, layers: Sequence[str], buffers: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    return {k: gram(v.flatten(1).float().cpu()) for k, v in _outputs(model, batch, layers, buffers).items()}


def _update(
    acc: _Layer, x: torch.Tensor, grams: tuple[torch.Tensor, torch.Tensor], probe: slice, s: PassSettings
) -> None:
    """Fold one batch ``x`` ``(b, C, H, W)`` of one layer into its accumulator; its first images go
    to rows ``probe`` of the probe features."""
    flat = x.flatten(1).float().cpu()
    if math.isnan(acc.scale):  # the first (seeded, class-mixed) batch sets the robust scale
        acc.scale = robust_scale(flat.numpy(), s.quantile)
    h = hoyer(flat)
    finite = h[np.isfinite(h)]
    acc.hoyer_sum += float(finite.sum())
    acc.hoyer_n += len(finite)
    acc.counts += _histogram(flat, acc.scale, s)
    acc.hsic += _hsic_matrix([gram(flat), *grams])
    keep = probe.stop - probe.start
    if keep:
        pooled = F.adaptive_avg_pool2d(x[:keep].float(), s.grid) if x.ndim == 4 else x[:keep]
        acc.probe[probe] = pooled.flatten(1).cpu().numpy()


@torch.no_grad()
def measure_pass(
    models: Mapping[int, LayeredCNN],
    initial: LayeredCNN,
    final: LayeredCNN,
    images: torch.Tensor,
    labels: torch.Tensor,
    layers: Sequence[str],
    tracked: Sequence[int],
    settings: PassSettings,
) -> tuple[list[dict[str, object]], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """One pass over ``images`` (uint8, already in their seeded order) for every checkpoint in
    ``models`` (step → network). Returns tidy rows ``{step, layer, measure, value}`` and, per step,
    the ``(top value, top image label)`` of each tracked map of ``layers[-1]``."""
    probes = min(settings.probe_samples, len(images))
    shapes = output_shapes(final, layers)
    # the spatial probe's features per image, as grid_features defines them (one image of zeros)
    widths = {k: grid_features(np.zeros((1, *v), np.float32), settings.grid).shape[1] for k, v in shapes.items()}
    acc = {
        (step, layer): _Layer(np.zeros(settings.bins), np.empty((probes, widths[layer]), dtype=np.float32))
        for step in models
        for layer in layers
    }
    correct = dict.fromkeys(models, 0)
    logits = initial.layer_names[-1]
    best = {step: (np.full(len(tracked), -np.inf), np.full(len(tracked), -1)) for step in models}
    n, b = len(images), settings.batch_size
    buffers: dict[str, torch.Tensor] = {}  # one minibatch's outputs, reused by every network
    out: dict[str, torch.Tensor] = {}
    starts = list(range(0, n, b))
    if len(starts) > 1 and n - starts[-1] < 4:  # the unbiased HSIC needs 4 images per batch
        starts.pop()
    for start, end in zip(starts, [*starts[1:], n], strict=True):
        batch, batch_labels = images[start:end], labels[start:end].numpy()
        probe = slice(min(start, probes), min(end, probes))
        ref = {name: _grams(net, batch, layers, buffers) for name, net in (("initial", initial), ("final", final))}
        for step, model in models.items():
            out = _outputs(model, batch, [*layers, logits], buffers)  # one full forward pass
            correct[step] += int((out[logits].argmax(dim=1).cpu() == labels[start:end]).sum())
            for layer in layers:
                _update(acc[step, layer], out[layer], (ref["initial"][layer], ref["final"][layer]), probe, settings)
            if tracked:
                peak = out[layers[-1]][:, list(tracked)].flatten(2).amax(dim=2).cpu().numpy()  # (b, maps)
                top = peak.argmax(axis=0)
                values, classes = best[step]
                better = peak[top, range(len(tracked))] > values
                values[better] = peak[top, range(len(tracked))][better]
                classes[better] = batch_labels[top][better]
            release_freed_memory()  # e.g. the first batch's robust-scale temporaries, not kept for the next network
    # the batches' activations are freed: return them to the kernel before the probes load SciPy, so
    # that import adds to what the process holds now, not to the pass's peak
    out.clear()  # the last batch's views into the buffers
    buffers.clear()
    release_freed_memory()
    rows = _rows(acc, labels[: settings.probe_samples].numpy())
    rows += [{"step": step, "layer": "", "measure": "test_acc", "value": c / n} for step, c in correct.items()]
    acc.clear()  # and the probe features with it: what comes next (the OIPs) starts from less
    release_freed_memory()
    return rows, best


def _rows(acc: Mapping[tuple[int, str], _Layer], probe_labels: np.ndarray) -> list[dict[str, object]]:
    train, test = probe_split(probe_labels, 0.5, seed=0) if len(probe_labels) >= 4 else (None, None)
    rows: list[dict[str, object]] = []
    for (step, layer), a in acc.items():
        h = a.hsic.numpy()
        values = {
            "hoyer": a.hoyer_sum / a.hoyer_n if a.hoyer_n else float("nan"),
            "entropy_norm_bits": float(entropy(a.counts)) if not math.isnan(a.scale) else float("nan"),
            "cka_to_initial": _ratio(h[0, 1], h[0, 0], h[1, 1]),
            "cka_to_final": _ratio(h[0, 2], h[0, 0], h[2, 2]),
        }
        if train is not None and test is not None and len(a.probe):
            values["spatial_probe_acc"] = probe_accuracy(a.probe, probe_labels, train, test)
        rows += [{"step": step, "layer": layer, "measure": k, "value": float(v)} for k, v in values.items()]
    return rows


@torch.no_grad()
def most_active_maps(model: LayeredCNN, images: torch.Tensor, layer: str, count: int, batch_size: int) -> list[int]:
    """The ``count`` maps of ``layer`` with the highest mean activation over ``images`` (ties: lower index)."""
    total: torch.Tensor | None = None
    for start in range(0, len(images), batch_size):
        out = _outputs(model, images[start : start + batch_size], [layer])[layer]
        sums = out.double().flatten(2).mean(dim=2).sum(dim=0).cpu()
        total = sums if total is None else total + sums
    assert total is not None
    order = sorted(range(len(total)), key=lambda i: (-float(total[i]), i))
    return sorted(order[:count])
