"""Checkpoint files of the paper's agent and of the dialog retriever: atomic writes and checked reads."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from agents.dialog_manager import DialogManager, DialogManagerConfig
from agents.dialog_retriever import DialogRetriever, DialogRetrieverConfig
from dialog_env.errors import ConfigurationError
from dialog_env.io import atomic_torch_save
from dialog_env.torch_utils import plain, read_tagged_torch_file

__all__ = [
    "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "REQUIRED_KEYS", "save_checkpoint", "load_checkpoint",
    "check_checkpoint_fits", "load_dialog_manager", "load_dialog_retriever", "dialog_manager_from", "load_weights",
    "agent_from_checkpoint",
]  # fmt: skip

CHECKPOINT_FORMAT = "dialog-env-checkpoint"
CHECKPOINT_VERSION = 1
#: Entries of a checkpoint holding tensors (state dicts), stored as they are.
_TENSOR_KEYS = frozenset({"model", "optimizer", "base"})
#: What every checkpoint holds, with its type; training checkpoints hold more (``agents.training``).
REQUIRED_KEYS: dict[str, type | tuple[type, ...]] = {"model_config": dict, "vocabulary": list, "model": dict}


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write ``payload`` with ``torch.save`` atomically: temporary file, flush to disk, rename.

    A reader never sees a half-written file: after a crash the previous checkpoint is intact.
    """
    # Results and arguments are stored as plain Python values: the file is read back with
    # ``torch.load(weights_only=True)``, which rebuilds tensors and plain containers only.
    stored = {key: value if key in _TENSOR_KEYS else plain(value) for key, value in payload.items()}
    atomic_torch_save(path, {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **stored})


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
    payload = read_tagged_torch_file(
        path, "checkpoint", CHECKPOINT_FORMAT, CHECKPOINT_VERSION, ConfigurationError, required=REQUIRED_KEYS
    )
    check_checkpoint_fits(payload, path, image_dim, vocabulary_words)
    return payload


def check_checkpoint_fits(
    payload: Mapping[str, Any],
    path: str | os.PathLike[str],
    image_dim: int | None = None,
    vocabulary_words: list[str] | None = None,
) -> None:
    """Check that a checkpoint read by :func:`load_checkpoint` fits the catalogue and the vocabulary.

    Args:
        payload: the checkpoint.
        path: its file (for the messages).
        image_dim: the catalogue's feature dimension, if it must match.
        vocabulary_words: the user simulator's vocabulary, if it must match.

    Raises:
        ConfigurationError: made for another feature dimension or vocabulary.
    """
    model_config = payload["model_config"]
    if image_dim is not None and model_config.get("image_dim") != image_dim:
        raise ConfigurationError(
            f"checkpoint {str(path)!r} was made for {model_config['image_dim']}-d catalogue features, "
            f"this catalogue has {image_dim}-d features"
        )
    if vocabulary_words is not None and payload["vocabulary"] != vocabulary_words:
        raise ConfigurationError(
            f"checkpoint {str(path)!r} was made for another vocabulary ({len(payload['vocabulary'])} words; "
            f"this user simulator has {len(vocabulary_words)})"
        )


def load_dialog_manager(
    path: str | os.PathLike[str], image_dim: int | None = None, vocabulary_words: list[str] | None = None
) -> DialogManager:
    """The trained :class:`DialogManager` of a checkpoint (on the CPU, in evaluation mode)."""
    payload = load_checkpoint(path, image_dim, vocabulary_words)
    return dialog_manager_from(payload, path).eval()


def dialog_manager_from(payload: dict[str, Any], path: str | os.PathLike[str]) -> DialogManager:
    """A :class:`DialogManager` built from a checkpoint's ``model_config``, with its ``model`` weights loaded.

    Raises:
        ConfigurationError: the config is not a :class:`DialogManagerConfig`, or the weights do not fit it.
    """
    try:
        model = DialogManager(DialogManagerConfig(**payload["model_config"]))
    except (TypeError, ValueError) as error:
        raise ConfigurationError(
            f"checkpoint {str(path)!r}: model_config {payload['model_config']} is not a DialogManagerConfig: {error}"
        ) from error
    load_weights(model, payload["model"], path, "model")
    return model


def load_dialog_retriever(
    path: str | os.PathLike[str], image_dim: int | None = None, vocabulary_words: list[str] | None = None
) -> DialogRetriever:
    """The trained :class:`~agents.dialog_retriever.DialogRetriever` of a checkpoint (CPU, evaluation mode).

    Raises:
        ConfigurationError: unreadable, not a checkpoint of the dialog retriever, made for another
            feature dimension or vocabulary, or weights that do not fit its ``model_config``.
    """
    payload = load_checkpoint(path, image_dim, vocabulary_words)
    if payload.get("agent") != "dialog-retriever":
        raise ConfigurationError(f"checkpoint {str(path)!r} is not a checkpoint of the dialog retriever")
    try:
        model = DialogRetriever(DialogRetrieverConfig(**payload["model_config"]))
    except (TypeError, ValueError, ConfigurationError) as error:
        raise ConfigurationError(
            f"checkpoint {str(path)!r}: model_config {payload['model_config']} is not a DialogRetrieverConfig: {error}"
        ) from error
    load_weights(model, payload["model"], path, "model")
    return model.eval()


def agent_from_checkpoint(
    path: str | os.PathLike[str], image_dim: int | None = None, name: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """The evaluation agent of a final checkpoint of ``train_agent.py``, paper's agent or dialog retriever.

    The dialog retriever plays with the selection and history its run was trained with
    (``args["retriever_selection"]``, ``args["retriever_history"]``).

    Returns:
        ``(agent, payload)``: an :class:`~agents.base.Agent` on the CPU, and the checkpoint's contents.

    Raises:
        ConfigurationError: unreadable, made for another feature dimension, or weights that do not fit.
    """
    from agents.dialog_manager import DialogManagerAgent
    from agents.dialog_retriever import DialogRetrieverAgent

    payload = load_checkpoint(path, image_dim)
    if payload.get("agent") == "dialog-retriever":
        run_args = payload.get("args") or {}
        model = load_dialog_retriever(path, image_dim)
        agent = DialogRetrieverAgent(
            model, "cpu", name=name or "dialog-retriever", selection=run_args.get("retriever_selection", "greedy"),
            history=run_args.get("retriever_history", "all"),
        )  # fmt: skip
        return agent, payload
    return DialogManagerAgent(dialog_manager_from(payload, path).eval(), name=name or "paper"), payload


def load_weights(
    module: torch.nn.Module | torch.optim.Optimizer, state: Any, path: str | os.PathLike[str], key: str
) -> None:
    """``module.load_state_dict(state)``; a misfit raises a :class:`ConfigurationError` naming the file and key."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigurationError(f"checkpoint {str(path)!r}: {key!r} does not fit this model: {error}") from error


def load_paper_run(run: str | os.PathLike[str], catalog_path: str | None = None) -> dict[str, Any]:
    """The trained agent of a finished run, with the catalogue and the split it was evaluated on.

    For playing and drawing its dialogs; the run is one of ``train_agent.py --agent paper`` or
    ``--agent dialog-retriever``, or of ``benchmarks/learning_curves.py`` (``checkpoints/final.pt``).

    Args:
        run: the run's folder (``checkpoints/final.pt`` inside).
        catalog_path: another catalogue file to play on (default: the run's own).

    Returns:
        ``{"agent", "vocabulary", "catalog"`` (all splits), ``"catalog_name", "split", "agent_name"}``.

    Raises:
        DataFileNotFoundError: no checkpoint in the folder.
        ConfigurationError: an unreadable checkpoint, one that does not fit the catalogue (other
            feature dimension), or a catalogue without the run's split.
    """
    from dialog_env.env import make_catalog
    from dialog_env.errors import DataFileNotFoundError
    from dialog_env.text import Vocabulary

    run = Path(run)
    path = run / "checkpoints" / "final.pt"
    if not path.is_file():
        raise DataFileNotFoundError(
            f"no checkpoint at {str(path)!r}: expected the folder of a finished run of train_agent.py "
            "--agent paper or dialog-retriever (e.g. runs/paper-s1)"
        )
    payload = load_checkpoint(path)
    run_args = payload.get("args", {})
    catalog_name = catalog_path if catalog_path is not None else run_args.get("catalog")
    split = str(run_args.get("eval_split", "test"))
    catalog = make_catalog(catalog_name)
    if split not in catalog.splits:
        raise ConfigurationError(f"catalogue {catalog.name!r} has no split {split!r} (the run was evaluated on it)")
    agent, _ = agent_from_checkpoint(path, catalog.dim, name=run.name)  # refuses one made for other features
    return {
        "agent": agent,
        "vocabulary": Vocabulary(payload["vocabulary"]),
        "catalog": catalog,
        "catalog_name": catalog_name,
        "split": split,
        "agent_name": run.name,
    }
