"""Small torch helpers shared by the environment's neural user and the agents."""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dialog_env.errors import ConfigurationError, DialogEnvError

__all__ = ["resolve_device", "read_tagged_torch_file", "plain"]

#: The global that torch's weights-only unpickler refused, as its message names it.
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise the named device.

    Raises:
        ConfigurationError: ``device`` is not a device name torch understands, or names a CUDA
            (or MPS) device this machine does not have.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigurationError(f"unknown device {device!r}: {error}") from error
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise ConfigurationError(
                f"device {device!r}: no CUDA device is available (torch {torch.__version__} is {build}); "
                f"use device 'cpu' or 'auto'"
            )
        if resolved.index is not None and resolved.index >= count:
            raise ConfigurationError(f"device {device!r}: only {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigurationError(f"device {device!r}: MPS is not available here; use device 'cpu' or 'auto'")
    return resolved


def read_tagged_torch_file(
    path: str | os.PathLike[str],
    what: str,
    file_format: str,
    version: int,
    error: type[DialogEnvError],
    hint: str = "",
    required: Mapping[str, type | tuple[type, ...]] | None = None,
) -> dict[str, Any]:
    """Read a ``torch.save`` dictionary tagged ``{"format": file_format, "version": version}``.

    The file is read with ``torch.load(weights_only=True)``: only tensors and plain containers
    (dict, list, tuple, str, int, float, bool, None) are rebuilt, so a file holding a pickled
    object (which could run code when unpickled) is refused before anything of it executes.
    A file is untrusted until this function has checked its tags and the types of ``required``.

    Args:
        path: the file.
        what: how messages name the file, e.g. ``"captioner checkpoint"``.
        file_format: the format tag the file must carry.
        version: the version tag the file must carry.
        error: the project exception raised on any problem (its message names the file).
        hint: appended to the message for a missing file, e.g. how to make one.
        required: keys the dictionary must hold, each with its allowed type(s).

    Raises:
        error: the file is missing, unreadable (truncated, corrupted), holds objects other than
            tensors and plain containers, is of another format or version, or lacks a required
            key (or holds one of another type).
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {str(path)!r} does not exist{hint}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as cause:
        found = _UNSAFE_GLOBAL.search(str(cause))
        if found:
            raise error(
                f"{what} {str(path)!r} holds Python objects other than tensors and plain containers "
                f"({found.group(1)}); it is not loaded, because unpickling them could run "
                f"code. Files of this project hold only tensors, numbers, strings, lists and dicts: this one was "
                f"written by something else (or is a captioner checkpoint of an older version of this "
                f"project, which stored NumPy arrays: train it again)"
            ) from None
        # torch's message suggests turning weights-only loading off, never right for an untrusted
        # file: keep its diagnosis only.
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|$)", str(cause), re.S)
        reason = detail.group(1) if detail else str(cause).splitlines()[0]
        raise error(f"{what} {str(path)!r} could not be read (truncated or corrupted?): {reason}") from None
    except Exception as cause:  # noqa: BLE001 - torch raises many types for a damaged file
        raise error(f"{what} {str(path)!r} could not be read (truncated or corrupted?): {cause}") from cause
    found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
    if found != file_format:
        raise error(f"{str(path)!r} is not a {what} (format {found!r}, expected {file_format!r})")
    if payload.get("version") != version:
        raise error(f"{what} {str(path)!r} has version {payload.get('version')!r}; this code reads version {version}")
    for key, kind in (required or {}).items():
        if key not in payload:
            raise error(f"{what} {str(path)!r} lacks the key {key!r} (it holds {sorted(map(str, payload))})")
        if not isinstance(payload[key], kind):
            expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise error(f"{what} {str(path)!r}: {key!r} is a {type(payload[key]).__name__}, expected {expected}")
    return payload


def plain(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays turned into Python numbers and lists, recursively.

    What a checkpoint stores besides tensors must survive ``torch.load(weights_only=True)``, which
    rebuilds no NumPy object: metrics and summaries pass through here before they are saved.
    """
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
