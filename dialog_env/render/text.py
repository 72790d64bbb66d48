"""Text drawn into RGB frames with a built-in 5x7 bitmap font (NumPy only): transcripts and labels.

``render_mode="rgb_array"`` frames need text without a font library; this module holds the font,
:func:`draw_text` (one line at a pixel position) and :func:`transcript_frame` (a dialog's
transcript under a header, the text part of every frame).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["FRAME_COLUMNS", "TEXT_COLOR", "draw_text", "text_size", "transcript_frame"]

# A 5x7 bitmap font for printable ASCII (" " to "~"), so that ``render_mode="rgb_array"`` needs
# nothing beyond NumPy. Each glyph is 5 columns, left to right, written as 2 hex digits each;
# bit ``r`` of a column is row ``r`` of the glyph, counted from the top (the classic HD44780
# layout, lower case squeezed into the 7 rows).
_FONT_5X7 = (
    # space ! " # $ % & '
    "0000000000", "00005f0000", "0007000700", "147f147f14", "242a7f2a12", "2313086462", "3649552250", "0005030000",
    # ( ) * + , - . /
    "001c224100", "0041221c00", "082a1c2a08", "08083e0808", "0050300000", "0808080808", "0060600000", "2010080402",
    # 0 - 7
    "3e5149453e", "00427f4000", "4261514946", "2141454b31", "1814127f10", "2745454539", "3c4a494930", "0171090503",
    # 8 9 : ; < = > ?
    "3649494936", "064949291e", "0036360000", "0056360000", "0008142241", "1414141414", "4122140800", "0201510906",
    # @ A - G
    "324979413e", "7e1111117e", "7f49494936", "3e41414122", "7f4141221c", "7f49494941", "7f09090101", "3e41415132",
    # H - O
    "7f0808087f", "00417f4100", "2040413f01", "7f08142241", "7f40404040", "7f0204027f", "7f0408107f", "3e4141413e",
    # P - W
    "7f09090906", "3e4151215e", "7f09192946", "4649494931", "01017f0101", "3f4040403f", "1f2040201f", "7f2018207f",
    # X Y Z [ \ ] ^ _
    "6314081463", "0304780403", "6151494543", "00007f4141", "0204081020", "41417f0000", "0402010204", "4040404040",
    # ` a - g
    "0001020400", "2054545478", "7f48444438", "3844444420", "384444487f", "3854545418", "087e090102", "081454543c",
    # h - o
    "7f08040478", "00447d4000", "2040443d00", "007f102844", "00417f4000", "7c04180478", "7c08040478", "3844444438",
    # p - w
    "7c14141408", "081414187c", "7c08040408", "4854545420", "043f444020", "3c4040207c", "1c2040201c", "3c4030403c",
    # x y z { | } ~
    "4428102844", "0c5050503c", "4464544c44", "0008364100", "00007f0000", "0041360800", "1008081008",
)
#: ``(95, 7, 5) bool`` glyphs of the printable ASCII characters, indexed by ``ord(c) - 32``.
_GLYPHS = (
    np.frombuffer(bytes.fromhex("".join(_FONT_5X7)), dtype=np.uint8).reshape(-1, 1, 5)
    >> np.arange(7, dtype=np.uint8)[:, None]
    & 1
).astype(bool)
_UNKNOWN_GLYPH = ord("?") - 32
_CELL_WIDTH, _CELL_HEIGHT = 6, 9  # a glyph plus 1 column and 2 rows of spacing
_FRAME_SCALE = 2  # each font pixel is a 2x2 block: readable in videos
_FRAME_MARGIN = 4  # font pixels around the text
#: Characters per line of an ``rgb_array`` frame; longer transcript lines end with "...".
FRAME_COLUMNS = 120
_BACKGROUND = (250, 250, 245)
TEXT_COLOR = _TEXT_COLOR = (20, 20, 20)
_HEADER_COLOR = (30, 60, 160)
_FOUND_COLOR = (0, 120, 0)
_RULE_COLOR = (150, 150, 150)


def _frame_size(rows: int, columns: int = FRAME_COLUMNS) -> tuple[int, int]:
    """``(height, width)`` in pixels of a frame of ``rows`` text lines, rounded up to multiples of 16.

    Multiples of 16 are what video encoders want.
    """
    height = (2 * _FRAME_MARGIN + rows * _CELL_HEIGHT) * _FRAME_SCALE
    width = (2 * _FRAME_MARGIN + columns * _CELL_WIDTH) * _FRAME_SCALE
    return -(-height // 16) * 16, -(-width // 16) * 16


def text_size(text: str, scale: int = _FRAME_SCALE) -> tuple[int, int]:
    """``(height, width)`` in pixels that :func:`draw_text` covers for ``text`` (its cells, spacing included)."""
    return _CELL_HEIGHT * scale, len(text) * _CELL_WIDTH * scale


def draw_text(
    frame: np.ndarray, x: int, y: int, text: str, color: Sequence[int] = _TEXT_COLOR, scale: int = _FRAME_SCALE
) -> None:
    """Draw one line of text into ``frame`` in place, its first cell's top-left corner at pixel ``(x, y)``.

    Only the glyphs' ink is drawn (the background shows through); each font pixel is a
    ``scale`` x ``scale`` block; characters outside printable ASCII are drawn as "?"; whatever
    falls beyond the frame's right or bottom edge is cut off.

    Args:
        frame: ``(H, W, 3) uint8``, changed in place.
        x: pixel column of the text's left edge (>= 0).
        y: pixel row of the text's top edge (>= 0).
        text: one line.
        color: ``(r, g, b)`` of the ink.
        scale: pixels per font pixel.
    """
    if not text:
        return
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.intp) - 32
    codes = np.where((points >= 0) & (points < len(_GLYPHS)), points, _UNKNOWN_GLYPH)
    # (columns, 7, 5) glyphs -> (cell height, columns, cell width) cells -> pixel rows and columns.
    cells = np.zeros((_CELL_HEIGHT, len(codes), _CELL_WIDTH), dtype=bool)
    cells[:7, :, :5] = _GLYPHS[codes].transpose(1, 0, 2)
    ink = cells.reshape(_CELL_HEIGHT, -1).repeat(scale, axis=0).repeat(scale, axis=1)
    if x < 0 or y < 0:
        raise ValueError(f"text position must be inside the frame, got x={x}, y={y}")
    height, width = frame.shape[:2]
    ink = ink[: max(0, height - y), : max(0, width - x)]
    region = frame[y : y + ink.shape[0], x : x + ink.shape[1]]
    region[ink] = np.asarray(color, dtype=np.uint8)


def _text_frame(
    lines: Sequence[tuple[str, tuple[int, int, int]]], rows: int, columns: int = FRAME_COLUMNS
) -> np.ndarray:
    """Draw ``(text, rgb colour)`` lines, one per row, into an ``(H, W, 3) uint8`` frame.

    The frame size depends only on ``rows`` and ``columns``: lines beyond ``rows`` are dropped,
    text beyond ``columns`` characters is cut and ends with "...", and characters outside
    printable ASCII are drawn as "?".
    """
    frame = np.empty((*_frame_size(rows, columns), 3), dtype=np.uint8)
    frame[:] = _BACKGROUND
    offset = _FRAME_MARGIN * _FRAME_SCALE
    for row, (text, color) in enumerate(lines[:rows]):
        if len(text) > columns:
            text = text[: columns - 3] + "..."
        draw_text(frame, offset, offset + row * _CELL_HEIGHT * _FRAME_SCALE, text, color)
    return frame


def transcript_frame(
    transcript: Sequence[str], *, split: str, num_images: int, turn: int, max_turns: int
) -> np.ndarray:
    """The ``rgb_array`` frame of a dialog: a header line, a rule, then one line per turn.

    Args:
        transcript: the dialog's transcript lines so far (what ``render_mode="ansi"`` joins),
            at most ``max_turns + 1`` of them (turn 0 to ``max_turns``).
        split: the split's name, shown in the header.
        num_images: the split's size, shown in the header.
        turn: the dialog's turn, shown in the header.
        max_turns: the dialog's last turn (also fixes the frame's height).

    Returns:
        ``(H, W, 3) uint8``, ``W = 1456`` and ``H = 18 (max_turns + 3) + 16`` rounded up to a
        multiple of 16: the same for every frame of an environment, whatever the transcript.
    """
    header = f"DialogRetrieval-v0 | split {split!r}: {num_images} images | turn {turn}/{max_turns}"
    lines = [(header, _HEADER_COLOR), ("-" * FRAME_COLUMNS, _RULE_COLOR)]
    lines += [(line, _FOUND_COLOR if line.endswith("<- target found") else _TEXT_COLOR) for line in transcript]
    return _text_frame(lines, rows=max_turns + 3)
