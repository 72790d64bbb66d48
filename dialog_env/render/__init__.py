"""Pictures of the catalogue and of dialogs: drawn shoes, dialog frames, contact sheets, PNG files.

- :func:`draw_shoe`: a synthetic item drawn from its attributes (deterministic pixels).
- :func:`dialog_frame` and :class:`PictureSource`: the ``render_mode="rgb_array"`` frame of a dialog.
- :func:`contact_sheet`: frames or pictures tiled into one image (e.g. a transcript for the README).
- :func:`write_png`: PNG files with the standard library only.
- ``python -m dialog_env.render``: draw a catalogue into a folder of PNG files, or a dialog's contact sheet.
"""

from dialog_env.render.frame import PANEL_HEIGHT, PictureSource, can_draw_shoes, dialog_frame
from dialog_env.render.png import png_bytes, write_png
from dialog_env.render.sheet import contact_sheet, draw_catalog
from dialog_env.render.shoes import COLOR_RGB, DEFAULT_IMAGE_SIZE, draw_shoe, shoe_codes

__all__ = [
    "COLOR_RGB",
    "DEFAULT_IMAGE_SIZE",
    "PANEL_HEIGHT",
    "PictureSource",
    "can_draw_shoes",
    "contact_sheet",
    "dialog_frame",
    "draw_catalog",
    "draw_shoe",
    "png_bytes",
    "shoe_codes",
    "write_png",
]
