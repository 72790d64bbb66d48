"""The checks and copies every catalogue array goes through: NaN/inf rows, the safe range, read-only copies.

Shared by the model (:mod:`dialog_env.catalog.model`), the spatial storage
(:mod:`dialog_env.catalog.spatial`) and the file format (:mod:`dialog_env.catalog.hdf5`), and by
importers of other files (:mod:`dialog_env.data.shoes`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MAX_ABS_FEATURE", "nonfinite_rows", "oversized_rows"]

#: The safe range of catalogue features: every value must satisfy ``|value| <= MAX_ABS_FEATURE``.
#: With coordinates bounded by ``B``, every squared norm, squared distance and ``|x|^2 - 2 x.y``
#: score over ``D`` dimensions is at most ``4 D B**2``; ``B = 1e15`` keeps that below the float32
#: maximum (3.4e38) for any ``D`` up to 8.5e7, so the float32 arithmetic of the ranker's filter,
#: of :attr:`Catalog.squared_norms` and of agents and users over the features cannot overflow,
#: and float32 keeps its full relative precision there. Real embeddings are many orders of
#: magnitude smaller (ResNet features are below 1e3); features beyond it are refused (rescale
#: them) instead of being ranked through overflowing arithmetic. Small values need no bound:
#: the ranker scales features of tiny magnitude by a power of two (exact) before its products.
MAX_ABS_FEATURE = 1e15


def _readonly(array: np.ndarray) -> np.ndarray:
    """A read-only C-contiguous copy, so that nobody can change a catalogue behind its back."""
    array = np.array(array, copy=True, order="C")
    array.setflags(write=False)
    return array


def nonfinite_rows(array: np.ndarray) -> np.ndarray:
    """Indices of the rows (first axis) of ``array`` that hold a NaN or inf; empty when all are finite.

    The one NaN/inf check of catalogue data (features, spatial features, imported files).
    """
    if array.size == 0:
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(~np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1))


def oversized_rows(array: np.ndarray, bound: float = MAX_ABS_FEATURE) -> np.ndarray:
    """Indices of the rows (first axis) of finite ``array`` holding a value with ``|value| > bound``.

    The one magnitude check of catalogue features (:data:`MAX_ABS_FEATURE`); two passes
    (``max`` and ``min``) when every value is in range.
    """
    if array.size == 0 or (float(array.max()) <= bound and float(array.min()) >= -bound):
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero((np.abs(array.reshape(array.shape[0], -1)) > bound).any(axis=1))


def _oversized_message(features: np.ndarray, rows: np.ndarray, ids: Sequence[str] | np.ndarray) -> str:
    """What :func:`oversized_rows` found: the first row, its id, the value, and the safe range."""
    row = int(rows[0])
    column = int(np.argmax(np.abs(features[row])))
    value = float(features[row, column])
    return (
        f"row {row} (id {str(ids[row])!r}) holds {value:.7g} at column {column}, outside the safe range "
        f"|value| <= {MAX_ABS_FEATURE:.0e} (dialog_env.catalog.MAX_ABS_FEATURE: beyond it float32 squared "
        f"distances overflow); {rows.size} row(s) exceed it. Rescale the features (e.g. divide them by their "
        f"largest magnitude)"
    )
