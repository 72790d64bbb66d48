"""One ``rgb_array`` frame of a dialog: the target and the shown image drawn, the rank, the feedback, the transcript.

Layout (``W = 1456`` pixels, the transcript frame's width):

- a picture panel (``PANEL_HEIGHT`` = 352 pixels): the target (left), the image shown this turn
  (its border green when it is the target), the target's rank and percentile under it, and the
  images shown at earlier turns as thumbnails (the newest 12), with the shopper's newest
  feedback on one line beneath;
- the transcript frame of :func:`~dialog_env.render.text.transcript_frame` below it.

Pictures come from a :class:`PictureSource`: drawn shoes (:func:`~dialog_env.render.shoes.draw_shoe`)
for catalogues with the shoe attributes, otherwise a plain tile with the image's id. Every frame
of an environment has one shape, so frames stack across a vector env and make a video.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

from dialog_env.catalog import Catalog
from dialog_env.domain.schema import ATTRIBUTE_NAMES, SHOE_SCHEMA, attribute_codes
from dialog_env.errors import ConfigurationError
from dialog_env.render.shoes import draw_shoe
from dialog_env.render.text import TEXT_COLOR, draw_text, transcript_frame

__all__ = ["PANEL_HEIGHT", "PICTURE_SIZE", "THUMBNAIL_SIZE", "PictureSource", "dialog_frame", "can_draw_shoes"]

#: Pixels per side of the target's and the shown image's pictures.
PICTURE_SIZE = 256
#: Pixels per side of the earlier shown images' thumbnails.
THUMBNAIL_SIZE = 128
#: Height of the picture panel above the transcript.
PANEL_HEIGHT = 352
_THUMBNAILS = (2, 6)  # rows, columns: the newest 12 earlier images
_BACKGROUND = (250, 250, 245)
_FOUND = (0, 150, 0)
_FRAME_LINE = (150, 150, 150)
_LABEL = (30, 60, 160)
_PLACEHOLDER = (222, 222, 222)


def can_draw_shoes(catalog: Catalog) -> bool:
    """Whether ``catalog`` has every shoe attribute with the schema's values (then its items can be drawn)."""
    schema = catalog.attribute_schema
    return all(name in schema and schema[name].values == SHOE_SCHEMA[name].values for name in ATTRIBUTE_NAMES)


class PictureSource:
    """The picture of each catalogue image: a drawn shoe, or a tile with its id when it cannot be drawn.

    Args:
        catalog: the catalogue whose images are pictured.
        cache_size: pictures kept (drawn once, reused across turns and dialogs).

    Call it with an image index (``0..N-1``) and a size (pixels per side, 128 or 256): it returns
    ``(size, size, 3) uint8``.
    """

    def __init__(self, catalog: Catalog, cache_size: int = 256) -> None:
        self.catalog = catalog
        self.drawn = can_draw_shoes(catalog)
        self._codes = attribute_codes(catalog) if self.drawn else None
        self._picture: Callable[[int], np.ndarray] = functools.lru_cache(maxsize=cache_size)(self._draw)

    def _draw(self, index: int) -> np.ndarray:
        if self._codes is not None:
            return draw_shoe(self._codes[index], PICTURE_SIZE)
        tile = np.empty((PICTURE_SIZE, PICTURE_SIZE, 3), dtype=np.uint8)
        tile[:] = _PLACEHOLDER
        draw_text(tile, 12, 100, "no picture", TEXT_COLOR)
        draw_text(tile, 12, 130, str(self.catalog.ids[index])[:19], TEXT_COLOR)
        return tile

    def __call__(self, index: int, size: int = PICTURE_SIZE) -> np.ndarray:
        """The ``(size, size, 3) uint8`` picture of image ``index`` (``size``: 256, or 128 for a thumbnail)."""
        if size not in (PICTURE_SIZE, THUMBNAIL_SIZE):
            raise ConfigurationError(f"picture size must be {PICTURE_SIZE} or {THUMBNAIL_SIZE}, got {size!r}")
        picture = self._picture(int(index))
        if size == PICTURE_SIZE:
            return picture
        factor = PICTURE_SIZE // size
        blocks = picture.reshape(size, factor, size, factor, 3).astype(np.uint16)
        return (blocks.sum(axis=(1, 3)) // (factor * factor)).astype(np.uint8)


def _place(panel: np.ndarray, picture: np.ndarray, x: int, y: int, border: Sequence[int], width: int = 2) -> None:
    size = picture.shape[0]
    panel[y - width : y + size + width, x - width : x + size + width] = border
    panel[y : y + size, x : x + size] = picture


def dialog_frame(
    pictures: PictureSource,
    *,
    target: int | None,
    shown_history: Sequence[int],
    rank: int,
    percentile: float,
    feedback: str,
    transcript: Sequence[str],
    split: str,
    turn: int,
    max_turns: int,
) -> np.ndarray:
    """The frame of one dialog: pictures, rank and feedback above its transcript.

    Args:
        pictures: the catalogue's pictures.
        target: the target's index, or ``None`` before the first reset (the panel stays empty).
        shown_history: indices of the images shown so far, the current one last.
        rank: the target's rank with respect to the current image.
        percentile: the target's rank percentile (0..1).
        feedback: the shopper's newest feedback.
        transcript: the dialog's transcript lines.
        split: the split's name (for the header).
        turn: the current turn.
        max_turns: the dialog's last turn (fixes the frame's height).

    Returns:
        ``(PANEL_HEIGHT + H_t, 1456, 3) uint8``, ``H_t`` the transcript frame's height (256 for
        10 turns): one shape for every frame of an environment.
    """
    text = transcript_frame(
        transcript, split=split, num_images=pictures.catalog.num_images, turn=turn, max_turns=max_turns
    )
    panel = np.empty((PANEL_HEIGHT, text.shape[1], 3), dtype=np.uint8)
    panel[:] = _BACKGROUND
    if target is not None and shown_history:
        shown = int(shown_history[-1])
        found = shown == target
        draw_text(panel, 16, 8, "target", _LABEL)
        _place(panel, pictures(target), 16, 30, _FRAME_LINE)
        draw_text(panel, 292, 8, f"shown, turn {turn}", _FOUND if found else _LABEL)
        _place(panel, pictures(shown), 292, 30, _FOUND if found else _FRAME_LINE, width=4 if found else 2)
        status = "target found" if found else f"rank {rank} ({100 * percentile:.1f}%)"
        draw_text(panel, 292, 292, status, _FOUND if found else TEXT_COLOR)
        earlier = list(shown_history[:-1])[-(_THUMBNAILS[0] * _THUMBNAILS[1]) :]
        first_turn = turn - len(earlier)
        draw_text(panel, 572, 8, "shown earlier" if earlier else "", _LABEL)
        for position, index in enumerate(earlier):
            row, column = divmod(position, _THUMBNAILS[1])
            x, y = 572 + column * (THUMBNAIL_SIZE + 8), 30 + row * (THUMBNAIL_SIZE + 24)
            _place(panel, pictures(index, THUMBNAIL_SIZE), x, y, _FRAME_LINE, width=1)
            draw_text(panel, x, y + THUMBNAIL_SIZE + 3, f"turn {first_turn + position}", TEXT_COLOR, scale=1)
        draw_text(panel, 16, 330, f"shopper: {feedback!r}"[:120], TEXT_COLOR)
    return np.concatenate([panel, text], axis=0)
