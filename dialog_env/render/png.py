"""Write RGB images as PNG files with the standard library only (zlib), byte for byte the same everywhere.

The core install has no imaging library; PNG is simple enough to write directly: a signature,
an ``IHDR`` chunk (8-bit RGB), one ``IDAT`` chunk of zlib-compressed scanlines (filter type 0)
and ``IEND``. zlib at a fixed level makes the same bytes from the same pixels.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from dialog_env.errors import ConfigurationError

__all__ = ["png_bytes", "write_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(image: np.ndarray) -> bytes:
    """The PNG encoding of an ``(H, W, 3) uint8`` RGB image.

    Raises:
        ConfigurationError: another shape or dtype.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape[:2]:
        raise ConfigurationError(f"a PNG image must be (H, W, 3) uint8, got shape {image.shape} dtype {image.dtype}")
    height, width = image.shape[:2]
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit, RGB, deflate, filter 0, no interlace
    rows = np.concatenate([np.zeros((height, 1), dtype=np.uint8), image.reshape(height, width * 3)], axis=1)
    return (
        _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + _chunk(b"IEND", b"")
    )


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write an ``(H, W, 3) uint8`` image to ``path`` as PNG (atomically: a temporary file, then a rename)."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(png_bytes(image))
    os.replace(temporary, path)
    return path
