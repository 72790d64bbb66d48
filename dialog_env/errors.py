"""Exception types of the project.

Every error the project raises on bad input derives from :class:`DialogEnvError`, so a caller can
catch them all at once, and from the matching builtin (``ValueError``, ``FileNotFoundError``...),
so code that already catches those keeps working. Messages name the file, dataset or argument,
what was found and what was expected.
"""

from __future__ import annotations

__all__ = [
    "DialogEnvError",
    "CatalogError",
    "CatalogFormatError",
    "CatalogNotFoundError",
    "DataFormatError",
    "DataFileNotFoundError",
    "CaptionFormatError",
    "CaptionNotFoundError",
    "InvalidActionError",
    "ResetNeeded",
    "ConfigurationError",
    "DependencyNotInstalled",
    "UserSimulatorError",
    "VocabularyError",
]


class DialogEnvError(Exception):
    """Base class of every error raised by ``dialog_env`` on bad input or misuse."""


class ConfigurationError(DialogEnvError, ValueError):
    """An argument (reward mode, split, user name, ``max_turns``...) has an invalid value."""


class CatalogError(DialogEnvError, ValueError):
    """A catalogue is inconsistent (shapes, ids, splits, attributes)."""


class CatalogFormatError(CatalogError):
    """A catalogue file cannot be read: not HDF5, a missing dataset, wrong dtype or shape..."""


class CatalogNotFoundError(DialogEnvError, FileNotFoundError):
    """A catalogue file does not exist."""


class DataFormatError(DialogEnvError, ValueError):
    """An input data file is malformed or does not match the others.

    The files: image-name lists, feature ``.npz`` files, embedding pickles; the mismatches: row
    counts, names.
    """


class DataFileNotFoundError(DialogEnvError, FileNotFoundError):
    """An input data file (image-name list, feature ``.npz``, embedding pickle, captions) does not exist."""


class CaptionFormatError(DataFormatError):
    """A caption JSON file is malformed.

    Bad JSON, a record without the expected keys, empty or non-ASCII text, or (with
    ``on_missing="error"``) an image the catalogue lacks.
    """


class CaptionNotFoundError(DataFileNotFoundError):
    """A caption JSON file does not exist."""


class InvalidActionError(DialogEnvError, ValueError):
    """An action is not a valid image index of the environment's split."""


class ResetNeeded(DialogEnvError, RuntimeError):
    """``step`` was called before ``reset`` or after the episode ended."""


class UserSimulatorError(DialogEnvError, ValueError):
    """A user simulator cannot work with the given catalogue or arguments."""


class VocabularyError(DialogEnvError, ValueError):
    """A vocabulary file or word list is malformed."""


class DependencyNotInstalled(DialogEnvError, ImportError):
    """An optional dependency (e.g. ``faiss-cpu`` for approximate neighbours) is not installed."""
