"""Integer rasterisation: shapes as boolean masks over a square canvas, exact on every machine.

Geometry is written in *units*: the canvas is :data:`UNITS` units wide and high whatever its
pixel size, ``x`` to the right and ``y`` down. A pixel is inside a shape when its centre is, and
every test is done in integer arithmetic (int64), so the same shapes give the same pixels on
every CPU, BLAS and NumPy build: no floating point decides an edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dialog_env.errors import ConfigurationError

__all__ = ["UNITS", "CANVAS_SIZES", "Canvas", "Point"]

#: Width and height of the canvas in geometry units.
UNITS = 1024
#: The pixel sizes a canvas can have: each divides ``UNITS`` into whole units per pixel (even, so
#: a pixel's centre falls on a whole unit).
CANVAS_SIZES = (128, 256, 512)

Point = tuple[int, int]


@dataclass
class Canvas:
    """A square RGB canvas with shape tests and painting in integer arithmetic.

    Args:
        size: pixels per side, one of :data:`CANVAS_SIZES`.
        background: ``(r, g, b)`` in 0..255.

    Attributes:
        pixels: ``(size, size, 3) int32`` colours in 0..255 (cast to ``uint8`` by :meth:`image`).
        x, y: ``(size, size) int64`` unit coordinates of every pixel's centre.
    """

    size: int
    background: tuple[int, int, int] = (255, 255, 255)

    def __post_init__(self) -> None:
        if self.size not in CANVAS_SIZES:
            raise ConfigurationError(f"canvas size must be one of {list(CANVAS_SIZES)} pixels, got {self.size!r}")
        step = UNITS // self.size
        centres = np.arange(self.size, dtype=np.int64) * step + step // 2
        self.y, self.x = np.meshgrid(centres, centres, indexing="ij")
        self.unit_per_pixel = step
        self.pixels = np.empty((self.size, self.size, 3), dtype=np.int32)
        self.pixels[:] = self.background

    # ----------------------------------------------------------------- shapes (masks)
    def polygon(self, points: Sequence[Point]) -> np.ndarray:
        """``(size, size) bool``: pixel centres inside a closed polygon (even-odd rule).

        Args:
            points: at least 3 ``(x, y)`` integer vertices, in order; the last joins the first.
        """
        if len(points) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(points)}")
        inside = np.zeros((self.size, self.size), dtype=bool)
        x, y = self.x, self.y
        for (x0, y0), (x1, y1) in zip(points, [*points[1:], points[0]], strict=True):
            x0, y0, x1, y1 = int(x0), int(y0), int(x1), int(y1)
            if y0 == y1:
                continue
            spans = (y0 <= y) & (y < y1) if y0 < y1 else (y1 <= y) & (y < y0)
            # The edge crosses the row at x0 + (y - y0) (x1 - x0) / (y1 - y0); the pixel is left of
            # it when (x - x0)(y1 - y0) < (y - y0)(x1 - x0), the sides swapped when y1 < y0.
            left = (x - x0) * (y1 - y0) - (y - y0) * (x1 - x0)
            crosses = left < 0 if y1 > y0 else left > 0
            inside ^= spans & crosses
        return inside

    def ellipse(self, cx: int, cy: int, rx: int, ry: int) -> np.ndarray:
        """``(size, size) bool``: pixel centres inside the axis-aligned ellipse (radii in units, > 0)."""
        rx, ry = max(int(rx), 1), max(int(ry), 1)
        dx, dy = self.x - int(cx), self.y - int(cy)
        return (dx * ry) ** 2 + (dy * rx) ** 2 <= (rx * ry) ** 2

    def rectangle(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """``(size, size) bool``: pixel centres with ``x0 <= x < x1`` and ``y0 <= y < y1``."""
        return (self.x >= x0) & (self.x < x1) & (self.y >= y0) & (self.y < y1)

    def band(self, points: Sequence[Point], half_height: int) -> np.ndarray:
        """``(size, size) bool``: a stroke along a polyline, ``half_height`` units above and below it.

        The stroke is thickened vertically (exact in integers), which suits the mostly horizontal
        lines of a side view; steep strokes come out thinner.
        """
        mask = np.zeros((self.size, self.size), dtype=bool)
        for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True):
            if x0 == x1:
                mask |= self.rectangle(x0 - half_height, min(y0, y1), x0 + half_height, max(y0, y1))
                continue
            mask |= self.polygon(
                [(x0, y0 - half_height), (x1, y1 - half_height), (x1, y1 + half_height), (x0, y0 + half_height)]
            )
        return mask

    def column_band(self, points: Sequence[Point], half_width: int) -> np.ndarray:
        """``(size, size) bool``: a stroke along a polyline thickened horizontally (for steep strokes)."""
        mask = np.zeros((self.size, self.size), dtype=bool)
        for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True):
            if y0 == y1:
                mask |= self.rectangle(min(x0, x1), y0 - half_width, max(x0, x1), y0 + half_width)
                continue
            mask |= self.polygon(
                [(x0 - half_width, y0), (x0 + half_width, y0), (x1 + half_width, y1), (x1 - half_width, y1)]
            )
        return mask

    def noise(self, seed: int, cell: int = 1) -> np.ndarray:
        """``(size, size) int64`` hash noise in 0..255, constant over ``cell`` x ``cell`` pixel blocks.

        A fixed integer hash of the pixel's block and ``seed`` (uint32 arithmetic, wrapping), so
        textures are the same on every machine.
        """
        rows = (np.arange(self.size, dtype=np.uint32) // np.uint32(cell))[:, None]
        cols = (np.arange(self.size, dtype=np.uint32) // np.uint32(cell))[None, :]
        h = rows * np.uint32(0x9E3779B1) ^ cols * np.uint32(0x85EBCA77) ^ np.uint32(seed * 0xC2B2AE3D & 0xFFFFFFFF)
        h ^= h >> np.uint32(15)
        h *= np.uint32(0x2C1B3C6D)
        h ^= h >> np.uint32(12)
        return (h & np.uint32(0xFF)).astype(np.int64)

    # ----------------------------------------------------------------- painting
    def paint(self, mask: np.ndarray, color: Sequence[int]) -> None:
        """Set the pixels of ``mask`` to ``color`` (``(r, g, b)`` in 0..255)."""
        self.pixels[mask] = np.asarray(color, dtype=np.int32)

    def blend(self, mask: np.ndarray, color: Sequence[int], weight: int) -> None:
        """Mix ``color`` into the pixels of ``mask`` with ``weight`` / 256 (integer rounding down)."""
        weight = int(np.clip(weight, 0, 256))
        target = np.asarray(color, dtype=np.int32)
        self.pixels[mask] = (self.pixels[mask] * (256 - weight) + target * weight) // 256

    def shade(self, mask: np.ndarray, delta: np.ndarray | int) -> None:
        """Add ``delta`` (an int, or ``(size, size)`` ints) to every channel of the pixels of ``mask``, clipped."""
        if isinstance(delta, np.ndarray):
            delta = delta[mask][:, None].astype(np.int32)
        self.pixels[mask] = np.clip(self.pixels[mask] + delta, 0, 255)

    def edges(self, mask: np.ndarray) -> np.ndarray:
        """``(size, size) bool``: pixels of ``mask`` with a 4-neighbour outside it (its outline, 1 pixel)."""
        padded = np.pad(mask, 1, constant_values=False)
        interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        return mask & ~interior

    def image(self) -> np.ndarray:
        """The canvas as an ``(size, size, 3) uint8`` image."""
        return np.clip(self.pixels, 0, 255).astype(np.uint8)
