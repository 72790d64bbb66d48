"""Atomic file writes: a reader (or a crash, even ``kill -9``) never sees a half-written file.

Every writer of the project goes through :func:`atomic_path`: it writes to a temporary file beside
the destination (``.NAME.tmp-PID``, never mistaken for the destination), flushes it to disk and
renames it over the destination in one ``os.replace``. After a crash the previous file at the
destination is intact and the temporary file is removed (or, after ``kill -9``, left under its
temporary name).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dialog_env.errors import ConfigurationError

__all__ = [
    "atomic_path", "atomic_write_text", "atomic_write_json", "atomic_torch_save", "json_default", "read_json_object",
]  # fmt: skip


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, keep_suffix: bool = False) -> Iterator[Path]:
    """A temporary path to write; on a clean exit it replaces ``path`` atomically.

    Args:
        path: the destination (its folder is created if needed).
        keep_suffix: name the temporary file ``.tmp-PID-NAME`` so that it keeps the destination's
            suffix (for writers such as Stable-Baselines3's ``save`` that add one otherwise).

    Yields:
        The temporary path. Write it (and close it) inside the ``with`` block; if the block
        raises, the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = f".tmp-{os.getpid()}-{path.name}" if keep_suffix else f".{path.name}.tmp-{os.getpid()}"
    temporary = path.with_name(name)
    try:
        yield temporary
        with open(temporary, "rb") as handle:  # flush what the writer wrote before the rename
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically. Returns the path written."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for NumPy scalars and arrays (as Python numbers and lists)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def atomic_write_json(path: str | os.PathLike[str], payload: Any, *, indent: int | None = 2) -> Path:
    """Write ``payload`` as JSON (NumPy values as numbers and lists, a final newline) atomically.

    Returns:
        The path written.

    Raises:
        TypeError: a value JSON cannot hold (nothing is written).
    """
    text = json.dumps(payload, indent=indent, default=json_default) + "\n"
    return atomic_write_text(path, text)


def read_json_object(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """The JSON object in ``path`` (a file this project wrote, read as untrusted text).

    Args:
        path: the file.
        what: what the file is, for the error message (``"SB3 checkpoint state"``).

    Raises:
        ConfigurationError: a missing or unreadable file, invalid JSON, or not a JSON object.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConfigurationError(f"{str(path)!r} is not a readable {what} (JSON): {error}") from error
    if not isinstance(data, dict):
        raise ConfigurationError(f"{str(path)!r} is not a {what}: it holds a JSON {type(data).__name__}")
    return data


def atomic_torch_save(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` with ``torch.save`` atomically. Returns the path written."""
    import torch  # here, so that the environments import without torch

    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            torch.save(payload, handle)
    return Path(path)
