"""Sprite sheets: many small images in one PNG, so an atlas page loads a few files, not thousands.

A sheet is a grid of equal tiles (row = one map, column = one image of it). The page shows one
tile with an ``<img>`` of the whole sheet, shifted and clipped by its container — a real image
element, so a browser (and the atlas's browser test) reports whether it loaded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


def to_uint8(images: np.ndarray) -> np.ndarray:
    """``(..., C, H, W)`` → uint8 ``(..., H, W, C)`` for display.

    uint8 input (dataset crops) is kept as it is; float input (OIPs, in the standardised space) is
    stretched per image to 0..255, since its scale means nothing to the eye and differs per map.
    """
    moved = np.moveaxis(images, -3, -1)
    if moved.dtype == np.uint8:
        return moved
    lead = moved.reshape(-1, *moved.shape[-3:]).astype(np.float64)
    low = lead.min(axis=(1, 2, 3), keepdims=True)
    high = lead.max(axis=(1, 2, 3), keepdims=True)
    scaled = (lead - low) / np.where(high > low, high - low, 1.0)
    return np.round(scaled * 255).astype(np.uint8).reshape(moved.shape)


@dataclass(frozen=True)
class Sheet:
    """Where a sheet is (relative to the atlas root) and the size of its tiles and grid."""

    file: str
    tile_height: int
    tile_width: int
    rows: int
    cols: int

    def css_class(self, scale: int) -> str:
        """Class of this sheet's tiles at ``scale``: tile size and sheet width live in the style
        sheet (:meth:`css`), so each tile on a page is a few dozen bytes."""
        return f"{Path(self.file).stem}_{scale}"

    def css(self, scale: int) -> str:
        h, w = self.tile_height * scale, self.tile_width * scale
        name = self.css_class(scale)
        return f".{name}{{width:{w}px;height:{h}px}}.{name} img{{width:{self.cols * w}px}}\n"

    def tile(self, row: int, col: int, scale: int, prefix: str = "", title: str = "") -> str:
        """HTML for the tile at ``(row, col)`` drawn ``scale`` times larger (needs :meth:`css`)."""
        h, w = self.tile_height * scale, self.tile_width * scale
        title_attr = f' title="{title}"' if title else ""
        return (
            f'<b class="t {self.css_class(scale)}"{title_attr}><img src="{prefix}{self.file}" alt="" '
            f'style="left:-{col * w}px;top:-{row * h}px"></b>'
        )


def write_sheet(tiles: np.ndarray, root: Path, file: str) -> Sheet:
    """Write ``tiles`` ``(rows, cols, C, H, W)`` (uint8 or float) as one PNG grid under ``root``
    (the atlas's temporary folder, renamed into place as a whole).

    PNGs are written by Pillow without metadata or timestamps: the same tiles give the same bytes.
    """
    rows, cols = tiles.shape[:2]
    pixels = to_uint8(tiles)  # (rows, cols, H, W, C)
    height, width, channels = pixels.shape[2:]
    grid = pixels.transpose(0, 2, 1, 3, 4).reshape(rows * height, cols * width, channels)
    image = Image.fromarray(np.ascontiguousarray(grid[..., 0] if channels == 1 else grid))  # L or RGB
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    (root / file).parent.mkdir(parents=True, exist_ok=True)
    (root / file).write_bytes(buffer.getvalue())  # inside the atlas's temporary folder
    return Sheet(file, height, width, rows, cols)
