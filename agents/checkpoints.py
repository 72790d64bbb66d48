"""Checkpoint files of the paper's agent: atomic writes and checked reads."""

from __future__ import annotations

import os
from typing import Any

from agents.dialog_manager import DialogManager, DialogManagerConfig
from dialog_env.errors import ConfigurationError
from dialog_env.torch_utils import atomic_torch_save, read_tagged_torch_file

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "save_checkpoint", "load_checkpoint", "load_dialog_manager"]

CHECKPOINT_FORMAT = "dialog-env-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write ``payload`` with ``torch.save`` atomically: temporary file, flush to disk, rename.

    A reader never sees a half-written file: after a crash the previous checkpoint is intact.
    """
    atomic_torch_save(path, {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload})


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
    payload = read_tagged_torch_file(path, "checkpoint", CHECKPOINT_FORMAT, CHECKPOINT_VERSION, ConfigurationError)
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
