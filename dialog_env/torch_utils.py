"""Small torch helpers shared by the environment's neural user and the agents."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from dialog_env.errors import ConfigurationError, DialogEnvError

__all__ = ["resolve_device", "atomic_torch_save", "read_tagged_torch_file"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise the named device.

    Raises:
        ConfigurationError: ``device`` is not a device name torch understands.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise ConfigurationError(f"unknown device {device!r}: {error}") from error


def atomic_torch_save(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` with ``torch.save`` atomically: temporary file, flush to disk, rename.

    A reader never sees a half-written file: after a crash (even ``kill -9``) the previous file at
    ``path`` is intact, and the temporary file (``.NAME.tmp-PID``) is never mistaken for it.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def read_tagged_torch_file(
    path: str | os.PathLike[str], what: str, file_format: str, version: int, error: type[DialogEnvError], hint: str = ""
) -> dict[str, Any]:
    """Read a ``torch.save`` dictionary tagged ``{"format": file_format, "version": version}``.

    Args:
        path: the file.
        what: how messages name the file, e.g. ``"captioner checkpoint"``.
        file_format, version: the tags the file must carry.
        error: the project exception raised on any problem (its message names the file).
        hint: appended to the message for a missing file, e.g. how to make one.

    Raises:
        error: the file is missing, unreadable (truncated, corrupted), of another format, or of
            another version.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {str(path)!r} does not exist{hint}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as cause:  # noqa: BLE001 - torch raises many types for a damaged file
        raise error(f"{what} {str(path)!r} could not be read (truncated or corrupted?): {cause}") from cause
    found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
    if found != file_format:
        raise error(f"{str(path)!r} is not a {what} (format {found!r}, expected {file_format!r})")
    if payload.get("version") != version:
        raise error(f"{what} {str(path)!r} has version {payload.get('version')!r}; this code reads version {version}")
    return payload
