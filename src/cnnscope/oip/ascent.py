"""The gradient-ascent loop on the input: the network's weights never change.

Each step: forward the (optionally jittered) batch through the truncated, frozen network,
differentiate the summed per-element objective with respect to the input, normalise every
element's gradient to unit RMS (so a map with tiny gradients moves as fast as one with huge ones,
and the step size means the same for all), step, suppress high frequencies, and re-standardise
each image — the network only knows standardised inputs, and a fixed norm keeps the objective
bounded so that "converged" means something.

That is the seed article's pixel recipe. With a :class:`Parameterization` (e.g. the spectral one
of :mod:`cnnscope.oip.spectral`) the ascent steps that parameterisation's variables instead, and
the image is whatever they render to — bounded by construction, so neither the suppression nor
the re-standardisation applies.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from cnnscope.oip.param import standardize
from cnnscope.oip.transforms import Transform

Objective = Callable[[torch.Tensor], torch.Tensor]


class Parameterization(Protocol):
    """Variables an ascent steps, and how they render to images in the network's input space."""

    def init(self, start: torch.Tensor) -> torch.Tensor:
        """The variables of the starting images ``start`` ``(B, C, H, W)``."""
        ...

    def image(self, params: torch.Tensor) -> torch.Tensor:
        """The images ``(B, C, H, W)`` of ``params`` (differentiable)."""
        ...


@dataclass
class AscentTrace:
    """What one ascent run produced, per batch element ``b``."""

    #: Final images ``(B, C, H, W)``, standardised input space, on the CPU.
    images: torch.Tensor
    #: Objective before every step and after the last: ``(steps + 1, B)``.
    history: torch.Tensor
    #: Images at the requested steps: step → ``(B, C, H, W)``.
    snapshots: dict[int, torch.Tensor]
    #: Whether element ``b`` ever had a non-zero gradient (False at every step: a dead start).
    grad_seen: torch.Tensor

    @staticmethod
    def concatenate(traces: Sequence[AscentTrace]) -> AscentTrace:
        """The trace of a batch run as consecutive passes: ``traces`` in batch order, joined."""
        if len(traces) == 1:
            return traces[0]
        return AscentTrace(
            images=torch.cat([t.images for t in traces]),
            history=torch.cat([t.history for t in traces], dim=1),
            snapshots={s: torch.cat([t.snapshots[s] for t in traces]) for s in traces[0].snapshots},
            grad_seen=torch.cat([t.grad_seen for t in traces]),
        )


def pool_before_relu(net: nn.Sequential) -> nn.Sequential:
    """``net`` with every ReLU that directly precedes a max-pool moved behind it.

    Exact, values and input gradients alike: ``max`` and ``relu`` are both monotone, so
    ``maxpool(relu(x)) == relu(maxpool(x))``, and the gradient reaches the same argmax element
    (or nothing, when the window's maximum is ≤ 0). The ReLU then runs on the pooled, 4× smaller
    map, forward and backward, which matters on a CPU where the first block is memory-bound
    (measured: benchmarks/README.md, ``oip_batching.py --model-order``). Only for the ascent — the
    named layers of the model keep their meaning (the output of ``relu1`` is still the un-pooled map).
    """
    children = list(net.named_children())
    for i in range(len(children) - 1):
        (relu_name, relu), (pool_name, pool) = children[i], children[i + 1]
        if isinstance(relu, nn.ReLU) and isinstance(pool, nn.MaxPool2d):
            children[i], children[i + 1] = (pool_name, pool), (relu_name, relu)
    return nn.Sequential(OrderedDict(children))


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and ``requires_grad_(False)`` on every parameter; restored afterwards.

    Eval mode makes batch elements independent (no batch-norm statistics, no dropout); frozen
    parameters make autograd compute only the input gradient. Weights go channels-last for the
    duration (with channels-last inputs in :func:`ascend`): oneDNN's convolutions, forward and
    input-gradient, run faster that way on a CPU for ``mnist_cnn``'s batch (benchmarks/README.md).
    """
    flags = [p.requires_grad for p in module.parameters()]
    training = module.training
    module.eval().requires_grad_(False).to(memory_format=torch.channels_last)
    try:
        yield module
    finally:
        module.to(memory_format=torch.contiguous_format)
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)
        module.train(training)


def ascend(
    net: nn.Module,
    start: torch.Tensor,
    objective: Objective,
    steps: int,
    step_size: float,
    suppress: Transform,
    jitter: Transform | None,
    snapshots: Sequence[int],
    param: Parameterization | None,
    anneal: bool,
    progress: Callable[[int, float], None] | None = None,
) -> AscentTrace:
    """Run ``steps`` normalised-gradient ascent steps from ``start`` (``(B, C, H, W)``, on the
    network's device). ``net`` must already be frozen (see :func:`frozen`).

    Without ``param`` the variables are the pixels (re-standardised and ``suppress``-ed after each
    step); with it, they are ``param.init(start)`` and the images ``param.image(variables)``.
    ``jitter`` is applied to the images before every forward pass of a step. ``anneal`` shrinks the
    step along a half cosine from ``step_size`` to 0: a fixed-size normalised step never settles on
    a maximum (it keeps circling it by one step), an annealed one does. ``progress`` is called after
    every step with 1 and the batch's mean objective (:func:`cnnscope.progress.track`)."""
    wanted = set(snapshots)
    if param is None:
        state = standardize(start).contiguous(memory_format=torch.channels_last)
        render: Callable[[torch.Tensor], torch.Tensor] = _pixels
    else:
        state, render = param.init(start), param.image
    batch = start.shape[0]
    history = torch.empty(steps + 1, batch, device=start.device)
    grad_seen = torch.zeros(batch, dtype=torch.bool, device=start.device)
    recorded: dict[int, torch.Tensor] = {}
    for step in range(steps + 1):
        if step in wanted:
            with torch.no_grad():
                recorded[step] = render(state).detach().to("cpu", copy=True)
        if step == steps:
            with torch.no_grad():
                history[step] = objective(net(render(state)))
            break
        state.requires_grad_(True)
        x = render(state)
        value = objective(net(jitter(x) if jitter is not None else x))
        history[step] = value.detach()
        if progress is not None:  # .item() syncs a GPU: only when someone watches
            progress(1, float(value.detach().mean()))
        (grad,) = torch.autograd.grad(value.sum(), state)
        direction, alive = _unit_rms(grad)
        grad_seen |= alive
        size = step_size * 0.5 * (1 + math.cos(math.pi * step / steps)) if anneal else step_size
        with torch.no_grad():
            state = state + size * direction
            if param is None:
                state = standardize(suppress(state)).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        images = render(state.detach())
    return AscentTrace(
        images=images.cpu(),
        history=history.cpu(),
        snapshots=recorded,
        grad_seen=grad_seen.cpu(),
    )


def _pixels(images: torch.Tensor) -> torch.Tensor:
    """The pixel recipe's rendering: the variables are the image."""
    return images


def _unit_rms(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each element's gradient scaled to unit RMS, and whether it was non-zero at all.

    Dividing by the max first keeps tiny gradients (whose squares underflow in float32) from
    being mistaken for zero; an all-zero gradient stays zero instead of becoming NaN.
    """
    per_element = (-1,) + (1,) * (grad.dim() - 1)
    peak = grad.abs().flatten(1).amax(dim=1)
    alive = peak > 0
    scaled = grad / torch.where(alive, peak, 1.0).view(per_element)
    rms = scaled.pow(2).flatten(1).mean(dim=1).sqrt()
    return scaled / torch.where(alive, rms, 1.0).view(per_element), alive
