"""Readers and importers of real data: the Shoes captions and the paper's released features.

:mod:`dialog_env.data.captions` reads caption JSON files and image-name lists;
:mod:`dialog_env.data.shoes` converts the released feature files into an HDF5 catalogue (also a
command: ``python -m dialog_env.data.shoes --help``).
"""

from __future__ import annotations

from typing import Any

from dialog_env.data.captions import (
    IMAGE_CAPTION_KEYS,
    RELATIVE_CAPTION_KEYS,
    CaptionSet,
    load_image_captions,
    load_relative_captions,
    read_caption_texts,
    read_image_names,
)

__all__ = [
    "CaptionSet",
    "IMAGE_CAPTION_KEYS",
    "RELATIVE_CAPTION_KEYS",
    "import_shoes",
    "load_embedding",
    "load_image_captions",
    "load_relative_captions",
    "read_caption_texts",
    "read_image_names",
]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `python -m dialog_env.data.shoes` does not find the module
    # already imported by its package (which makes runpy warn).
    if name in ("import_shoes", "load_embedding"):
        from dialog_env.data import shoes

        return getattr(shoes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
