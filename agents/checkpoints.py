"""Checkpoint files of the paper's agent: atomic writes and checked reads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from agents.dialog_manager import DialogManager, DialogManagerConfig
from dialog_env.errors import ConfigurationError

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "save_checkpoint", "load_checkpoint", "load_dialog_manager"]

CHECKPOINT_FORMAT = "dialog-env-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write ``payload`` with ``torch.save`` atomically: temporary file, flush to disk, rename.

    A reader never sees a half-written file: after a crash the previous checkpoint is intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "wb") as handle:
        torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def load_checkpoint(
    path: str | os.PathLike[str], image_dim: int | None = None, vocabulary_words: list[str] | None = None
) -> dict[str, Any]:
    """Read a checkpoint and check that it fits the catalogue and the vocabulary.

    Args:
        path: the file.
        image_dim: the catalogue's feature dimension, if it must match.
        vocabulary_words: the user simulator's vocabulary, if it must match.

    Raises:
        ConfigurationError: missing, unreadable (truncated, corrupted), not a checkpoint of this
            project, or made for another feature dimension or vocabulary.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigurationError(f"checkpoint {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a damaged file
        raise ConfigurationError(f"checkpoint {str(path)!r} could not be read (truncated or corrupted?): {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ConfigurationError(f"{str(path)!r} is not a dialog-env checkpoint")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ConfigurationError(
            f"checkpoint {str(path)!r} has version {payload.get('version')!r}, this code reads version {CHECKPOINT_VERSION}"
        )
    model_config = payload["model_config"]
    if image_dim is not None and model_config["image_dim"] != image_dim:
        raise ConfigurationError(
            f"checkpoint {str(path)!r} was made for {model_config['image_dim']}-d catalogue features, "
            f"this catalogue has {image_dim}-d features"
        )
    if vocabulary_words is not None and payload["vocabulary"] != vocabulary_words:
        raise ConfigurationError(
            f"checkpoint {str(path)!r} was made for another vocabulary ({len(payload['vocabulary'])} words; "
            f"this user simulator has {len(vocabulary_words)})"
        )
    return payload


def load_dialog_manager(
    path: str | os.PathLike[str], image_dim: int | None = None, vocabulary_words: list[str] | None = None
) -> DialogManager:
    """The trained :class:`DialogManager` of a checkpoint (on the CPU, in evaluation mode)."""
    payload = load_checkpoint(path, image_dim, vocabulary_words)
    model = DialogManager(DialogManagerConfig(**payload["model_config"]))
    model.load_state_dict(payload["model"])
    return model.eval()
