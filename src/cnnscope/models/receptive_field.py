"""Receptive fields of every named layer, from the layer geometry alone.

A node of a convolutional layer sees a square window of the input. Layer by layer (kernel ``k``,
stride ``s``, padding ``p``, dilation ``d``) the window grows as in Araujo, Norris & Sim,
"Computing Receptive Fields of Convolutional Neural Networks", Distill 2019::

    j_out = j_in · s
    r_out = r_in + (d·(k − 1)) · j_in
    start_out = start_in + (d·(k − 1)/2 − p) · j_in

starting from ``j = 1, r = 1, start = 0.5`` at the input (pixel ``i`` covers ``[i, i + 1)``, so its
centre is ``i + 0.5``). Element-wise layers (ReLU, batch norm, dropout) keep the geometry; a layer
after ``Flatten`` mixes all positions and sees the whole image. Why from geometry and not from
gradients: it is exact for every node (a gradient's support depends on the input, through the
ReLUs and the max-pool's arg-max), costs nothing, and the exemplar crops need it for thousands of
nodes. The tests check it against the gradient support of single nodes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from cnnscope.errors import CnnscopeError

#: Layers that act on each position separately: they keep the receptive field.
ELEMENTWISE = (nn.ReLU, nn.BatchNorm2d, nn.Dropout, nn.Identity, nn.LeakyReLU, nn.Sigmoid, nn.Tanh)
#: Layers that mix every position: after them a node sees the whole image.
GLOBAL = (nn.Flatten, nn.Linear, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


class GeometryError(CnnscopeError, ValueError):
    """A layer whose receptive field cannot be derived, or a node outside a layer."""


@dataclass(frozen=True)
class LayerGeometry:
    """Receptive field of the nodes of one layer, in input pixels.

    ``size`` is the side of the window a node sees, ``jump`` the input distance between adjacent
    nodes (the layer's total stride) and ``start`` the input coordinate of node 0's window centre.
    ``spatial`` is False after a global layer: every node sees the whole ``image_size`` image.
    """

    layer: str
    size: int
    jump: int
    start: float
    image_size: int
    spatial: bool = True

    def window(self, y: int, x: int) -> tuple[int, int, int, int]:
        """Input window ``(top, left, bottom, right)`` (bottom/right exclusive) of node ``(y, x)``.

        The window may reach outside the image (into the padding); :meth:`clipped_window` cuts it.
        A non-spatial layer's window is the whole image.
        """
        if not self.spatial:
            return 0, 0, self.image_size, self.image_size
        top = round(self.start + y * self.jump - self.size / 2)
        left = round(self.start + x * self.jump - self.size / 2)
        return top, left, top + self.size, left + self.size

    def clipped_window(self, y: int, x: int) -> tuple[int, int, int, int]:
        """:meth:`window` restricted to the image: the pixels that can influence the node."""
        top, left, bottom, right = self.window(y, x)
        n = self.image_size
        return max(top, 0), max(left, 0), min(bottom, n), min(right, n)


def _pair(value: int | tuple[int, ...]) -> int:
    """The one value of a square kernel/stride/padding; non-square ones are refused."""
    if isinstance(value, int):
        return value
    if len(set(value)) != 1:
        raise GeometryError(f"non-square geometry {value} is not supported")
    return int(value[0])


def _step(module: nn.Module) -> tuple[int, int, int, int] | None:
    """``(kernel, stride, padding, dilation)`` of a window layer, None for an element-wise one."""
    if isinstance(module, nn.Conv2d):
        if isinstance(module.padding, str):
            raise GeometryError(f"convolution with padding={module.padding!r}: give the padding in pixels")
        return (
            _pair(module.kernel_size),
            _pair(module.stride),
            _pair(module.padding),
            _pair(module.dilation),
        )
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        stride = module.stride if module.stride is not None else module.kernel_size
        dilation = module.dilation if isinstance(module, nn.MaxPool2d) else 1
        return _pair(module.kernel_size), _pair(stride), _pair(module.padding), _pair(dilation)
    if isinstance(module, ELEMENTWISE):
        return None
    raise GeometryError(f"no receptive-field rule for {type(module).__name__}")


def receptive_fields(
    layers: Iterable[tuple[str, nn.Module]], image_size: int, after: str | None = None
) -> dict[str, LayerGeometry]:
    """Geometry of every named layer of ``layers`` (``model.named_children()``), in forward order.

    With ``after``, coordinates are those of layer ``after``'s output instead of the input
    (``image_size`` is then that layer's side): the window of a deep node in an earlier layer,
    which the path check of :mod:`cnnscope.oip.against_data` compares.
    """
    size, jump, start, spatial = 1, 1, 0.5, True
    out: dict[str, LayerGeometry] = {}
    counting = after is None
    for name, module in layers:
        if not counting:
            counting = name == after
            continue
        if not spatial or isinstance(module, GLOBAL):
            spatial = False
        else:
            step = _step(module)
            if step is not None:
                kernel, stride, padding, dilation = step
                span = dilation * (kernel - 1)
                size += span * jump
                start += (span / 2 - padding) * jump
                jump *= stride
        out[name] = LayerGeometry(name, size, jump, start, image_size, spatial)
    if not counting:
        raise GeometryError(f"layer {after!r} is not among the layers")
    return out


def model_receptive_fields(model: nn.Module, image_size: int | None = None) -> dict[str, LayerGeometry]:
    """:func:`receptive_fields` of a :class:`~cnnscope.models.LayeredCNN` at its native size."""
    size = image_size if image_size is not None else int(model.image_size)  # type: ignore[arg-type]
    return receptive_fields(model.named_children(), size)
