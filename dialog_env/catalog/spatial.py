"""Per-image spatial features ``(N, L, C)`` for an attention captioner, in memory or read lazily.

The spatial features of a catalogue can be far larger than memory (14,658 x 49 x 2048 float32 is
5.9 GB for Shoes), so a :class:`Catalog <dialog_env.catalog.model.Catalog>` holds them as a
:class:`SpatialFeatures`: rows are read on demand with :meth:`SpatialFeatures.take`, from memory
(:class:`InMemorySpatialFeatures`) or from the ``/spatial_features`` dataset of a catalogue file
(:class:`HDF5SpatialFeatures`, see :mod:`dialog_env.catalog.hdf5`).
"""

from __future__ import annotations

import abc
import copy
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from dialog_env.catalog.arrays import _readonly, nonfinite_rows
from dialog_env.errors import CatalogError, CatalogFormatError, CatalogNotFoundError

__all__ = [
    "SpatialFeatures",
    "InMemorySpatialFeatures",
    "HDF5SpatialFeatures",
    "SPATIAL_DATASET",
    "SPATIAL_STORAGE_DTYPES",
    "create_spatial_dataset",
]

#: Name of the optional HDF5 dataset holding the ``(N, L, C)`` spatial features.
SPATIAL_DATASET = "spatial_features"
#: Storage dtypes accepted for the spatial features (read back as float32).
SPATIAL_STORAGE_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


def _check_spatial_dataset(dataset, where: str, num_images: int | None = None) -> None:  # noqa: ANN001
    """Shape and dtype checks of ``/spatial_features`` that read no values."""
    import h5py

    def fail(message: str) -> CatalogFormatError:
        return CatalogFormatError(f"catalogue file {where!r}, dataset {SPATIAL_DATASET!r}: {message}")

    if not isinstance(dataset, h5py.Dataset):
        raise fail("must be a dataset")
    if dataset.ndim != 3:
        raise fail(f"must have shape (N, L, C), got shape {dataset.shape}")
    if dataset.dtype not in SPATIAL_STORAGE_DTYPES:
        raise fail(f"must be float32 or float16, got {dataset.dtype}")
    if 0 in dataset.shape:
        raise fail(f"must be non-empty, got shape {dataset.shape}")
    if num_images is not None and dataset.shape[0] != num_images:
        raise fail(f"has {dataset.shape[0]} rows, expected {num_images} (one per image of /features)")


def create_spatial_dataset(  # noqa: ANN201 - h5py.Dataset
    handle,  # noqa: ANN001 - h5py.File
    shape: tuple[int, int, int],
    dtype: np.dtype | str = np.float32,
):
    """Create the empty ``/spatial_features`` dataset in an open, writable HDF5 catalogue file.

    One image per chunk, uncompressed, so that reading a few random rows touches only those rows.
    Used by :meth:`Catalog.save` and by importers that stream rows in.

    Args:
        handle: an ``h5py.File`` opened for writing.
        shape: ``(N, L, C)``.
        dtype: float32 or float16 (half the size; values beyond +-65504 become inf).

    Returns:
        The ``h5py.Dataset``.
    """
    dtype = np.dtype(dtype)
    if dtype not in SPATIAL_STORAGE_DTYPES:
        raise CatalogError(f"spatial features are stored as float32 or float16, got {dtype}")
    count, regions, channels = (int(n) for n in shape)
    return handle.create_dataset(
        SPATIAL_DATASET, shape=(count, regions, channels), dtype=dtype, chunks=(1, regions, channels)
    )

#: Rows read or written at once when spatial features are streamed (save, comparison).
_STREAM_BYTES = 64 * 2**20


def _index_array(indices: np.ndarray | Sequence[int] | int, size: int, what: str) -> np.ndarray:
    """``indices`` as an int64 array (any shape), checked against ``0..size-1``."""
    array = np.asarray(indices)
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise CatalogError(f"{what}: indices must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if array.size and (array.min() < 0 or array.max() >= size):
        bad = array[(array < 0) | (array >= size)]
        raise CatalogError(f"{what}: index {int(bad.flat[0])} is out of range 0..{size - 1}")
    return array


class SpatialFeatures(abc.ABC):
    """Per-image spatial features ``(N, L, C)``: ``L`` image regions of ``C`` channels each.

    An attention captioner looks at regions of an image, e.g. the 7 x 7 = 49 cells of the last
    convolutional layer of a ResNet-101 (``C = 2048``), as Guo et al. (2018) do for their user
    simulator. Such arrays are large (5.9 GB for Shoes in float32), so they are read by rows with
    :meth:`take` rather than exposed as one array, and may stay on disk
    (:class:`HDF5SpatialFeatures`) or live in memory (:class:`InMemorySpatialFeatures`).

    A view made by :meth:`subset` maps its rows to the source's rows (the map is composed, so a
    view of a view still reads nothing until :meth:`take`). Instances are immutable.
    """

    def __init__(self, source_shape: tuple[int, int, int]) -> None:
        self._source_shape = tuple(int(n) for n in source_shape)
        # Row i of a view is row _rows[i] of the source (set by subset); None means the identity.
        self._rows: np.ndarray | None = None

    # ------------------------------------------------------------------ to implement
    @property
    @abc.abstractmethod
    def storage_dtype(self) -> np.dtype:
        """The dtype the values are stored in (float32 or float16); :meth:`take` gives float32."""

    @abc.abstractmethod
    def _read_sorted(self, source_rows: np.ndarray) -> np.ndarray:
        """Rows of the source, given as strictly increasing int64 indices: ``(K, L, C) float32``."""

    # ------------------------------------------------------------------ shape
    @property
    def shape(self) -> tuple[int, int, int]:
        """``(N, L, C)``: images, regions per image, channels per region."""
        count = self._source_shape[0] if self._rows is None else int(self._rows.size)
        return (count, self._source_shape[1], self._source_shape[2])

    @property
    def num_regions(self) -> int:
        """``L``, the number of regions per image."""
        return self._source_shape[1]

    @property
    def channels(self) -> int:
        """``C``, the number of channels per region."""
        return self._source_shape[2]

    @property
    def nbytes(self) -> int:
        """Size of the whole array in float32 (what :meth:`take` of every row would allocate)."""
        count, regions, channels = self.shape
        return count * regions * channels * 4

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, storage_dtype={self.storage_dtype})"

    # ------------------------------------------------------------------ reading
    def take(self, indices: np.ndarray | Sequence[int] | int) -> np.ndarray:
        """The spatial features of some images.

        Args:
            indices: integer row indices in ``0..N-1``, of any shape; unsorted and repeated
                indices are fine.

        Returns:
            ``indices.shape + (L, C)`` float32, a new (writable) array; ``(B, L, C)`` for
            ``(B,)`` indices.

        Raises:
            CatalogError: non-integer or out-of-range indices.
            CatalogFormatError: a row read from a file holds NaN or inf.
        """
        array = _index_array(indices, len(self), f"spatial features of shape {self.shape}")
        flat = array.reshape(-1)
        source = flat if self._rows is None else self._rows[flat]
        # HDF5 reads want increasing, unique indices: read each distinct row once, then scatter.
        unique, inverse = np.unique(source, return_inverse=True)
        block = self._read_sorted(unique)
        if unique.size != source.size or not np.array_equal(unique, source):
            block = block[inverse.reshape(-1)]
        return block.reshape(array.shape + self._source_shape[1:])

    def subset(self, indices: np.ndarray | Sequence[int]) -> SpatialFeatures:
        """A view whose row ``i`` is row ``indices[i]`` of this one; reads nothing.

        Raises:
            CatalogError: ``indices`` is not a 1-D integer array within ``0..N-1``.
        """
        array = _index_array(indices, len(self), f"spatial features of shape {self.shape}")
        if array.ndim != 1:
            raise CatalogError(f"spatial features: subset indices must be 1-D, got shape {array.shape}")
        rows = array if self._rows is None else self._rows[array]
        view = copy.copy(self)
        view._rows = _readonly(rows)
        view._after_copy()
        return view

    def _after_copy(self) -> None:  # noqa: B027 - optional hook
        """Called on a fresh :meth:`subset` view (e.g. to drop a file handle it must not share)."""

    def iter_blocks(self, max_bytes: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Every row, in order, a block at a time: ``(start, (b, L, C) float32)`` pairs.

        Args:
            max_bytes: bound on the float32 size of one block (at least one row per block);
                default 64 MiB.
        """
        count, regions, channels = self.shape
        max_bytes = _STREAM_BYTES if max_bytes is None else int(max_bytes)
        rows_per_block = max(1, max_bytes // max(1, regions * channels * 4))
        for start in range(0, count, rows_per_block):
            stop = min(count, start + rows_per_block)
            yield start, self.take(np.arange(start, stop))


class InMemorySpatialFeatures(SpatialFeatures):
    """Spatial features held in memory.

    Args:
        array: ``(N, L, C) float32``, all finite. It is copied into a read-only array.

    Raises:
        CatalogError: wrong rank or dtype, an empty axis, or NaN/inf values.
    """

    def __init__(self, array: np.ndarray) -> None:
        array = np.asarray(array)
        if array.ndim != 3:
            raise CatalogError(f"spatial features must have shape (N, L, C), got shape {array.shape}")
        if array.dtype != np.float32:
            raise CatalogError(
                f"spatial features must be float32, got {array.dtype} (convert with .astype(np.float32))"
            )
        if 0 in array.shape:
            raise CatalogError(f"spatial features must be non-empty, got shape {array.shape}")
        bad_rows = nonfinite_rows(array)
        if bad_rows.size:
            raise CatalogError(
                f"spatial features contain NaN or inf in {bad_rows.size} row(s), first at row {bad_rows[0]}"
            )
        super().__init__(array.shape)
        self._array = _readonly(array)

    @property
    def storage_dtype(self) -> np.dtype:
        """Always float32."""
        return np.dtype(np.float32)

    def _read_sorted(self, source_rows: np.ndarray) -> np.ndarray:
        return self._array[source_rows]


class HDF5SpatialFeatures(SpatialFeatures):
    """Spatial features read lazily from the ``/spatial_features`` dataset of a catalogue file.

    Nothing is read until :meth:`take`, and only the rows asked for are; rows are checked for
    NaN/inf as they are read. The file stays open between reads (reopened in a new process after a
    fork); pickling stores the path only, so an unpickled copy reopens the file on its first read.

    Args:
        path: the HDF5 file. Stored as an absolute path.
        dataset: the dataset name inside it.

    Raises:
        CatalogNotFoundError: the file does not exist.
        CatalogFormatError: the file is unreadable, or the dataset is missing or has the wrong
            rank or dtype.
    """

    def __init__(self, path: str | os.PathLike[str], dataset: str = SPATIAL_DATASET) -> None:
        import h5py

        path = Path(path).resolve()
        if not path.exists():
            raise CatalogNotFoundError(f"catalogue file {str(path)!r} does not exist")
        try:
            with h5py.File(path, "r") as handle:
                if dataset not in handle:
                    raise CatalogFormatError(f"catalogue file {str(path)!r}: dataset {dataset!r} is missing")
                _check_spatial_dataset(handle[dataset], str(path))
                shape, dtype = handle[dataset].shape, handle[dataset].dtype
        except OSError as error:
            raise CatalogFormatError(f"catalogue file {str(path)!r} is not a readable HDF5 file: {error}") from error
        self._init(path, dataset, shape, dtype)

    @classmethod
    def _trusted(cls, path: Path, dataset: str, shape: tuple[int, ...], dtype: np.dtype) -> HDF5SpatialFeatures:
        """An instance for a dataset the caller has just checked (no second open)."""
        instance = cls.__new__(cls)
        instance._init(Path(path).resolve(), dataset, shape, dtype)
        return instance

    def _init(self, path: Path, dataset: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        SpatialFeatures.__init__(self, shape)
        self.path = path
        self.dataset = dataset
        self._dtype = np.dtype(dtype)
        self._handle = None
        self._handle_pid: int | None = None

    @property
    def storage_dtype(self) -> np.dtype:
        """The dtype of the dataset in the file (float32 or float16)."""
        return self._dtype

    def __repr__(self) -> str:
        return (
            f"HDF5SpatialFeatures(path={str(self.path)!r}, dataset={self.dataset!r}, shape={self.shape}, "
            f"storage_dtype={self._dtype})"
        )

    def _after_copy(self) -> None:
        self._handle = None
        self._handle_pid = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"] = None  # h5py handles do not pickle; reopen from the path on demand
        state["_handle_pid"] = None
        return state

    def close(self) -> None:
        """Close the file (it is reopened by the next :meth:`take`)."""
        if self._handle is not None and self._handle_pid == os.getpid():
            self._handle.close()
        self._handle = None
        self._handle_pid = None

    def _open(self):  # noqa: ANN202 - h5py.Dataset
        # An HDF5 handle inherited through fork() is not safe to use: reopen in each process.
        if self._handle is None or self._handle_pid != os.getpid():
            import h5py

            where = str(self.path)
            if not self.path.exists():
                raise CatalogNotFoundError(f"catalogue file {where!r} (spatial features) no longer exists")
            try:
                handle = h5py.File(self.path, "r")
            except OSError as error:
                raise CatalogFormatError(f"catalogue file {where!r} is not a readable HDF5 file: {error}") from error
            dataset = handle.get(self.dataset)
            if (
                dataset is None
                or not isinstance(dataset, h5py.Dataset)
                or dataset.shape != self._source_shape
                or dataset.dtype != self._dtype
            ):
                found = "missing" if dataset is None else f"shape {getattr(dataset, 'shape', None)}"
                handle.close()
                raise CatalogFormatError(
                    f"catalogue file {where!r}, dataset {self.dataset!r}: changed since it was opened "
                    f"({found}, expected shape {self._source_shape} and dtype {self._dtype})"
                )
            self._handle = handle
            self._handle_pid = os.getpid()
        return self._handle[self.dataset]

    def _read_sorted(self, source_rows: np.ndarray) -> np.ndarray:
        if source_rows.size == 0:
            return np.empty((0, *self._source_shape[1:]), dtype=np.float32)
        dataset = self._open()
        first, last = int(source_rows[0]), int(source_rows[-1])
        if last - first + 1 == source_rows.size:  # a contiguous run: one hyperslab read
            block = dataset[first : last + 1]
        else:
            block = dataset[source_rows]
        block = block.astype(np.float32, copy=False)
        bad = source_rows[nonfinite_rows(block)]
        if bad.size:
            raise CatalogFormatError(
                f"catalogue file {str(self.path)!r}, dataset {self.dataset!r}: row {int(bad[0])} contains NaN or "
                f"inf ({bad.size} bad row(s) among the {source_rows.size} read); expected finite values"
            )
        return block


def _spatial_equal(first: SpatialFeatures | None, second: SpatialFeatures | None) -> bool:
    """Exact equality of two optional spatial feature sources (see :meth:`Catalog.__eq__`)."""
    if first is None or second is None:
        return first is second
    if first is second:
        return True
    if first.shape != second.shape:
        return False
    if (
        isinstance(first, HDF5SpatialFeatures)
        and isinstance(second, HDF5SpatialFeatures)
        and (first.path, first.dataset) == (second.path, second.dataset)
        and (first._rows is None) == (second._rows is None)
        and (first._rows is None or np.array_equal(first._rows, second._rows))
    ):
        return True
    # Same shape, so both yield blocks with the same starts and sizes.
    return all(np.array_equal(a, b) for (_, a), (_, b) in zip(first.iter_blocks(), second.iter_blocks(), strict=True))
