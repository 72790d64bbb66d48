"""Readers of the Shoes caption files and image-name lists (Guo et al., 2018, ``dataset/``).

Two JSON formats, each a list of records (extra keys in a record are ignored):

- relative captions: ``{"ImageName": target, "ReferenceImageName": reference,
  "RelativeCaption": "is more of a textured material"}``: how the target differs from the
  reference;
- single-image captions: ``{"ImageName": image, "Caption": "black strappy high heels"}``.

Image names are looked up in a catalogue's ids, so the captions come back as row indices of that
catalogue (pass the full catalogue, not a split view). Every problem raises one
:class:`~dialog_env.errors.CaptionFormatError` naming the file, the record (its 0-based position
in the list, written ``record [i]``), what was found and what was expected.

Image-name lists (``train_im_names.txt``, ``eval_im_names.txt``) hold one name per line.
"""

from __future__ import annotations

import json
import os
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dialog_env.catalog import Catalog
from dialog_env.errors import (
    CaptionFormatError,
    CaptionNotFoundError,
    ConfigurationError,
    DataFileNotFoundError,
    DataFormatError,
    DialogEnvError,
)

__all__ = [
    "CaptionSet",
    "IMAGE_CAPTION_KEYS",
    "RELATIVE_CAPTION_KEYS",
    "load_image_captions",
    "load_relative_captions",
    "read_caption_records",
    "read_caption_texts",
    "read_image_names",
]

#: Keys of a relative-caption record: target image, reference image, caption.
RELATIVE_CAPTION_KEYS = ("ImageName", "ReferenceImageName", "RelativeCaption")
#: Keys of a single-image caption record: image, caption.
IMAGE_CAPTION_KEYS = ("ImageName", "Caption")

_ON_MISSING = ("skip", "error")
_NON_ASCII = ("error", "transliterate")


@dataclass(frozen=True, eq=False)
class CaptionSet:
    """The captions of one file that refer to images of a catalogue.

    Attributes:
        path: the file read.
        targets: ``(M,) int64`` catalogue row of the image each caption is about (for relative
            captions, the target the caption describes relative to the reference).
        references: ``(M,) int64`` catalogue row of the reference image, or ``None`` for
            single-image captions.
        captions: ``M`` caption texts (ASCII, leading and trailing whitespace removed).
        total_records: records in the file.
        missing_images: records skipped because an image they name is not in the catalogue.
        transliterated: captions changed by ``non_ascii="transliterate"``.
        catalog_name: name of the catalogue the indices refer to.
    """

    path: Path
    targets: np.ndarray
    references: np.ndarray | None
    captions: list[str]
    total_records: int
    missing_images: int
    transliterated: int = 0
    catalog_name: str = ""

    def __post_init__(self) -> None:
        count = len(self.captions)
        if self.targets.shape != (count,) or (self.references is not None and self.references.shape != (count,)):
            raise DataFormatError(
                f"CaptionSet of {str(self.path)!r}: {count} captions but targets of shape {self.targets.shape}"
                + ("" if self.references is None else f" and references of shape {self.references.shape}")
            )
        self.targets.setflags(write=False)
        if self.references is not None:
            self.references.setflags(write=False)

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def is_relative(self) -> bool:
        """Whether these are relative captions (with references)."""
        return self.references is not None

    def summary(self) -> str:
        """One line: what was kept and what was skipped, e.g. for a command's output."""
        kind = "relative captions" if self.is_relative else "single-image captions"
        line = (
            f"{self.path.name}: {len(self):,} {kind} kept of {self.total_records:,} records; "
            f"{self.missing_images:,} skipped (image not in catalogue {self.catalog_name!r})"
        )
        if self.transliterated:
            line += f"; {self.transliterated:,} transliterated to ASCII"
        return line

    def __repr__(self) -> str:
        return f"CaptionSet({self.summary()})"


def load_relative_captions(
    path: str | os.PathLike[str],
    catalog: Catalog,
    on_missing: str = "skip",
    non_ascii: str = "error",
) -> CaptionSet:
    """Read a relative-caption file (``relative_captions_shoes.json`` format).

    Args:
        path: the JSON file: a list of ``{"ImageName", "ReferenceImageName", "RelativeCaption"}``.
        catalog: the catalogue whose ids the image names are looked up in (the full catalogue).
        on_missing: ``"skip"`` (default): drop records naming an image the catalogue lacks, count
            them in ``missing_images`` and warn once with the count; ``"error"``: raise at the
            first such record.
        non_ascii: ``"error"`` (default): a caption with a non-ASCII character is an error;
            ``"transliterate"``: NFKD-normalise and drop combining marks (``"é"`` -> ``"e"``),
            an error only if something non-ASCII remains.

    Returns:
        A :class:`CaptionSet` with ``references`` set.

    Raises:
        CaptionNotFoundError: the file does not exist.
        CaptionFormatError: malformed JSON or records (see the module docstring), or a missing
            image with ``on_missing="error"``.
        ConfigurationError: an invalid ``on_missing``, ``non_ascii`` or ``catalog``.
    """
    return _load_captions(Path(path), catalog, RELATIVE_CAPTION_KEYS, on_missing, non_ascii)


def load_image_captions(
    path: str | os.PathLike[str],
    catalog: Catalog,
    on_missing: str = "skip",
    non_ascii: str = "error",
) -> CaptionSet:
    """Read a single-image caption file (``captions_shoes.json`` format).

    Args:
        path: the JSON file: a list of ``{"ImageName", "Caption"}``.
        catalog: as for :func:`load_relative_captions`.
        on_missing: as for :func:`load_relative_captions`.
        non_ascii: as for :func:`load_relative_captions`.

    Returns:
        A :class:`CaptionSet` with ``references=None``.

    Raises:
        CaptionNotFoundError, CaptionFormatError, ConfigurationError: as for
            :func:`load_relative_captions`.
    """
    return _load_captions(Path(path), catalog, IMAGE_CAPTION_KEYS, on_missing, non_ascii)


def _load_captions(
    path: Path, catalog: Catalog, keys: tuple[str, ...], on_missing: str, non_ascii: str
) -> CaptionSet:
    if on_missing not in _ON_MISSING:
        raise ConfigurationError(f"on_missing must be one of {list(_ON_MISSING)}, got {on_missing!r}")
    if non_ascii not in _NON_ASCII:
        raise ConfigurationError(f"non_ascii must be one of {list(_NON_ASCII)}, got {non_ascii!r}")
    if not isinstance(catalog, Catalog):
        raise ConfigurationError(f"catalog must be a dialog_env Catalog, got {type(catalog).__name__}")

    where = f"caption file {str(path)!r}"
    records = _read_json_list(path, where)
    image_keys, text_key = keys[:-1], keys[-1]
    row_of = {name: row for row, name in enumerate(catalog.ids)}

    rows: list[list[int]] = [[] for _ in image_keys]
    captions: list[str] = []
    missing = 0
    first_missing: tuple[int, str, str] | None = None
    transliterated = 0
    for number, record in enumerate(records):
        values, ascii_text = _parse_record(record, number, keys, where, non_ascii)
        transliterated += ascii_text != values[text_key].strip()
        found = [row_of.get(values[key]) for key in image_keys]
        if any(row is None for row in found):
            key = image_keys[[row is None for row in found].index(True)]
            if on_missing == "error":
                raise CaptionFormatError(
                    f"{where}: record [{number}], key {key!r}: image {values[key]!r} is not in catalogue "
                    f"{catalog.name!r} ({catalog.num_images} images); expected one of its ids "
                    f"(on_missing='skip' drops such records)"
                )
            missing += 1
            if first_missing is None:
                first_missing = (number, key, values[key])
            continue
        for column, row in zip(rows, found, strict=True):  # one per image key
            column.append(row)
        captions.append(ascii_text)

    if missing:
        number, key, name = first_missing  # type: ignore[misc]
        warnings.warn(
            f"{where}: skipped {missing} of {len(records)} record(s) naming an image that catalogue "
            f"{catalog.name!r} lacks (first: record [{number}], {key} {name!r})",
            stacklevel=3,
        )
    return CaptionSet(
        path=path,
        targets=np.asarray(rows[0], dtype=np.int64),
        references=np.asarray(rows[1], dtype=np.int64) if len(rows) == 2 else None,
        captions=captions,
        total_records=len(records),
        missing_images=missing,
        transliterated=int(transliterated),
        catalog_name=catalog.name,
    )


def read_caption_texts(path: str | os.PathLike[str], kind: str = "relative", non_ascii: str = "error") -> list[str]:
    """The caption texts of a caption file, checked like :func:`load_relative_captions` checks them.

    For text statistics (lengths, vocabulary) that need no catalogue: image names are not looked up.

    Args:
        path: the JSON file.
        kind: ``"relative"`` (``RelativeCaption`` records) or ``"image"`` (``Caption`` records).
        non_ascii: as for :func:`load_relative_captions`.

    Raises:
        CaptionNotFoundError, CaptionFormatError: as for :func:`load_relative_captions`.
        ConfigurationError: an invalid ``kind`` or ``non_ascii``.
    """
    return [record[-1] for record in read_caption_records(path, kind, non_ascii)]


def read_caption_records(
    path: str | os.PathLike[str], kind: str = "relative", non_ascii: str = "error"
) -> list[tuple[str, ...]]:
    """The records of a caption file as tuples of their keys' values, checked, with no catalogue.

    Args:
        path: the JSON file.
        kind: ``"relative"`` or ``"image"`` (as for :func:`read_caption_texts`).
        non_ascii: as for :func:`load_relative_captions`.

    Returns:
        One tuple per record, in file order: ``(ImageName, ReferenceImageName, RelativeCaption)``
        for ``kind="relative"``, ``(ImageName, Caption)`` for ``kind="image"``; the caption
        stripped (and made ASCII as ``non_ascii`` says).

    Raises:
        As :func:`read_caption_texts`.
    """
    keys = {"relative": RELATIVE_CAPTION_KEYS, "image": IMAGE_CAPTION_KEYS}.get(kind)
    if keys is None:
        raise ConfigurationError(f"kind must be 'relative' or 'image', got {kind!r}")
    if non_ascii not in _NON_ASCII:
        raise ConfigurationError(f"non_ascii must be one of {list(_NON_ASCII)}, got {non_ascii!r}")
    path = Path(path)
    where = f"caption file {str(path)!r}"
    records = _read_json_list(path, where)
    result = []
    for number, record in enumerate(records):
        values, text = _parse_record(record, number, keys, where, non_ascii)
        result.append((*(values[key] for key in keys[:-1]), text))
    return result


def _parse_record(
    record: Any, number: int, keys: tuple[str, ...], where: str, non_ascii: str
) -> tuple[dict[str, str], str]:
    """A checked record and its caption, stripped and made ASCII (or an error naming the record)."""
    values = _check_record(record, number, keys, where)
    text_key = keys[-1]
    text = values[text_key].strip()
    if not text:
        raise CaptionFormatError(
            f"{where}: record [{number}], key {text_key!r}: found an empty caption {values[text_key]!r}, expected text"
        )
    return values, _ascii(text, non_ascii, f"{where}: record [{number}], key {text_key!r}")


def _read_json_list(path: Path, where: str) -> list[Any]:
    """The top-level list of a JSON file, or a clear error."""
    text = _read_utf8(path, where, "a JSON file", CaptionNotFoundError, CaptionFormatError)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise CaptionFormatError(
            f"{where} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        ) from error
    if not isinstance(data, list):
        raise CaptionFormatError(f"{where}: the top level is a JSON {_json_type(data)}, expected a list of records")
    if not data:
        raise CaptionFormatError(f"{where}: the list holds no records, expected at least one")
    return data


def _read_utf8(
    path: Path, where: str, expected: str, missing: type[DialogEnvError], malformed: type[DialogEnvError]
) -> str:
    """The text of a UTF-8 file (a byte-order mark is dropped), or ``missing``/``malformed`` naming it."""
    if not path.exists():
        raise missing(f"{where} does not exist")
    if path.is_dir():
        raise malformed(f"{where} is a directory, expected {expected}")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise malformed(f"{where} is not UTF-8 text (byte {error.start}: {error.reason})") from error


def _check_record(record: Any, number: int, keys: tuple[str, ...], where: str) -> dict[str, str]:
    """The string values of ``keys`` in one record, or a :class:`CaptionFormatError`."""
    if not isinstance(record, dict):
        raise CaptionFormatError(
            f"{where}: record [{number}] is a JSON {_json_type(record)}, expected an object with keys {list(keys)}"
        )
    for key in keys:
        if key not in record:
            raise CaptionFormatError(
                f"{where}: record [{number}] has no key {key!r} (found keys {sorted(record)}); "
                f"expected keys {list(keys)}"
            )
        value = record[key]
        if not isinstance(value, str):
            raise CaptionFormatError(
                f"{where}: record [{number}], key {key!r}: found a JSON {_json_type(value)} ({value!r}), "
                f"expected a string"
            )
    for key in keys[:-1]:
        if not record[key].strip():
            raise CaptionFormatError(
                f"{where}: record [{number}], key {key!r}: found an empty image name, expected a file name"
            )
    return {key: record[key] for key in keys}


def _ascii(text: str, non_ascii: str, where: str) -> str:
    """``text`` if it is ASCII; else transliterated (if allowed) or an error naming the character."""
    if text.isascii():
        return text
    hint = "expected ASCII text (non_ascii='transliterate' maps accented letters to ASCII)"
    if non_ascii == "transliterate":
        decomposed = unicodedata.normalize("NFKD", text)
        converted = "".join(char for char in decomposed if not unicodedata.combining(char))
        if converted.isascii():
            return converted
        text, hint = converted, "it remains after transliteration; expected ASCII text"
    position, char = next((i, c) for i, c in enumerate(text) if not c.isascii())
    raise CaptionFormatError(
        f"{where}: found non-ASCII character {char!r} (U+{ord(char):04X}) at position {position} of {text!r}; {hint}"
    )


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def read_image_names(path: str | os.PathLike[str]) -> list[str]:
    """The image names of a list file (``train_im_names.txt`` format), in file order.

    One name per line; surrounding whitespace and blank lines are ignored.

    Raises:
        DataFileNotFoundError: the file does not exist.
        DataFormatError: not UTF-8, no names, or a name listed twice (naming both lines).
    """
    path = Path(path)
    where = f"image-name list {str(path)!r}"
    text = _read_utf8(path, where, "a text file with one image name per line", DataFileNotFoundError, DataFormatError)
    names: list[str] = []
    line_of: dict[str, int] = {}
    for line_number, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name in line_of:
            raise DataFormatError(
                f"{where}: line {line_number} repeats {name!r}, first listed on line {line_of[name]}; "
                f"expected each image once"
            )
        line_of[name] = line_number
        names.append(name)
    if not names:
        raise DataFormatError(f"{where} lists no image names, expected one per line")
    return names
