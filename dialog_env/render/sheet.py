"""Pictures laid out: a catalogue drawn into PNG files, images tiled into a contact sheet, a dialog as a strip.

- :func:`draw_catalog` writes one PNG per image of a catalogue (``<id>.png``), e.g. to build a
  catalogue from pixels with ``python -m dialog_env.data.images build``.
- :func:`contact_sheet` tiles equal-sized images into a grid.
- :func:`transcript_sheet` shows one dialog: the target, then each shown image with the
  target's rank and the shopper's words under it.
"""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from dialog_env.catalog import Catalog
from dialog_env.errors import ConfigurationError
from dialog_env.render.frame import PictureSource, can_draw_shoes
from dialog_env.render.png import write_png
from dialog_env.render.shoes import DEFAULT_IMAGE_SIZE, draw_shoe
from dialog_env.render.text import TEXT_COLOR, draw_text, text_size

__all__ = ["contact_sheet", "draw_catalog", "transcript_sheet"]

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_BACKGROUND = (250, 250, 245)
_FOUND = (0, 150, 0)
_LABEL = (30, 60, 160)


def draw_catalog(
    catalog: Catalog,
    out_dir: str | os.PathLike[str],
    *,
    size: int = DEFAULT_IMAGE_SIZE,
    overwrite: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Draw every image of a catalogue with the shoe attributes into ``out_dir/<id>.png``.

    Files that exist already are kept (the drawing is deterministic, so a second call after an
    interruption finishes the folder) unless ``overwrite``; each file is written atomically.

    Args:
        catalog: a catalogue with the shoe attributes (e.g. the synthetic default, or one split).
        out_dir: the folder (created if missing).
        size: pixels per side: 128, 256 or 512.
        overwrite: draw again files that exist.
        progress: show a progress bar.

    Returns:
        The ``N`` paths, in catalogue order.

    Raises:
        ConfigurationError: the catalogue lacks the shoe attributes, or an id is not a safe file
            name (letters, digits, ``.``, ``_``, ``-``; not starting with ``.``).
    """
    if not can_draw_shoes(catalog):
        raise ConfigurationError(
            f"catalogue {catalog.name!r} has no shoe attributes to draw (only synthetic-style catalogues with "
            "the schema of dialog_env.domain.schema can be drawn)"
        )
    out = Path(out_dir)
    paths = []
    for image_id in catalog.ids:
        if not _SAFE_ID.fullmatch(str(image_id)):
            raise ConfigurationError(f"image id {str(image_id)!r} is not a safe file name; cannot draw it to a file")
        paths.append(out / f"{image_id}.png")
    out.mkdir(parents=True, exist_ok=True)
    from dialog_env.domain.schema import attribute_codes

    codes = attribute_codes(catalog)
    for index in tqdm(range(catalog.num_images), desc="drawing", unit="image", disable=not progress):
        if overwrite or not paths[index].exists():
            write_png(paths[index], draw_shoe(codes[index], size))
    return paths


def contact_sheet(
    images: Sequence[np.ndarray], columns: int, *, gap: int = 8, background: Sequence[int] = _BACKGROUND
) -> np.ndarray:
    """Tile equal-sized ``(h, w, 3) uint8`` images into a grid, ``columns`` per row, row by row.

    Returns:
        ``(rows h + (rows + 1) gap, columns w + (columns + 1) gap, 3) uint8``.

    Raises:
        ConfigurationError: no images, images of different shapes, or ``columns < 1``.
    """
    if not images:
        raise ConfigurationError("a contact sheet needs at least one image")
    if columns < 1:
        raise ConfigurationError(f"columns must be >= 1, got {columns}")
    shape = images[0].shape
    if any(image.shape != shape or image.dtype != np.uint8 for image in images) or len(shape) != 3:
        raise ConfigurationError("contact sheet images must all be (h, w, 3) uint8 of one shape")
    height, width = shape[:2]
    rows = -(-len(images) // columns)
    sheet = np.empty((rows * height + (rows + 1) * gap, columns * width + (columns + 1) * gap, 3), dtype=np.uint8)
    sheet[:] = background
    for position, image in enumerate(images):
        row, column = divmod(position, columns)
        y, x = gap + row * (height + gap), gap + column * (width + gap)
        sheet[y : y + height, x : x + width] = image
    return sheet


def transcript_sheet(
    pictures: PictureSource,
    target: int,
    shown: Sequence[int],
    ranks: Sequence[int],
    captions: Sequence[str],
    *,
    columns: int = 6,
    picture_size: int = 128,
    text_lines: int = 4,
) -> np.ndarray:
    """One dialog as a contact sheet: the target, then turn by turn the shown image, rank and feedback.

    Args:
        pictures: the catalogue's pictures.
        target: the target's index.
        shown: the images shown, turn 0 first.
        ranks: the target's rank after each of them.
        captions: the shopper's feedback on each of them.
        columns: tiles per row (the target is the first tile).
        picture_size: 128 or 256.
        text_lines: lines of wrapped feedback under each picture.

    Returns:
        ``(H, W, 3) uint8``.
    """
    if not len(shown) == len(ranks) == len(captions):
        raise ConfigurationError(
            f"shown, ranks and captions must have one entry per turn, got {len(shown)}, {len(ranks)}, {len(captions)}"
        )
    line_height, char_width = text_size("x", scale=1)
    wrap = max(8, picture_size // char_width)
    tile_height = picture_size + 4 + (text_lines + 1) * (line_height + 1)

    def tile(picture: np.ndarray, title: str, lines: Sequence[str], color: Sequence[int]) -> np.ndarray:
        out = np.empty((tile_height, picture_size, 3), dtype=np.uint8)
        out[:] = _BACKGROUND
        out[:picture_size] = picture
        draw_text(out, 0, picture_size + 3, title[:wrap], color, scale=1)
        for row, line in enumerate(lines[:text_lines]):
            draw_text(out, 0, picture_size + 4 + (row + 1) * (line_height + 1), line, TEXT_COLOR, scale=1)
        return out

    tiles = [tile(pictures(target, picture_size), "target", [], _LABEL)]
    for turn, (index, rank, caption) in enumerate(zip(shown, ranks, captions, strict=True)):
        found = int(index) == int(target)
        title = f"turn {turn}: " + ("found" if found else f"rank {int(rank)}")
        tiles.append(
            tile(
                pictures(index, picture_size),
                title,
                textwrap.wrap(repr(caption), wrap),
                _FOUND if found else TEXT_COLOR,
            )
        )
    return contact_sheet(tiles, columns)
