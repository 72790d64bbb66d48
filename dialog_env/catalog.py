"""The image catalogue: features, ids, splits and optional attributes, with an HDF5 format.

A :class:`Catalog` is the retrieval system's own index. It is immutable: its arrays are
read-only, so one catalogue can be shared by many environments without copies.

HDF5 layout (schema version 1, see also the README)::

    /                      attrs: format = "dialog-retrieval-catalog", schema_version = 1, name
    /features              (N, D) float32, finite, |value| <= MAX_ABS_FEATURE (1e15)
    /ids                   (N,) variable-length UTF-8 strings, unique
    /splits/<split>        (n,) integer indices into 0..N-1, unique; splits do not overlap
    /attributes/<name>     (N,) integer codes into the attribute's values (optional group)
                           attrs: values = list of value names, ordinal = bool
    /spatial_features      (N, L, C) float32 or float16, finite (optional): L image regions of C
                           channels per image (e.g. a 7 x 7 ResNet grid, L = 49, C = 2048), for an
                           attention captioner; chunked one row per chunk, read lazily

The spatial features can be far larger than memory (14,658 x 49 x 2048 float32 is 5.9 GB), so
:meth:`Catalog.load` checks only their shape and dtype, and :class:`HDF5SpatialFeatures` reads
rows on demand (checking each row it reads for NaN/inf). Files without them are unchanged, so the
schema version stays 1.
"""

from __future__ import annotations

import abc
import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from dialog_env.errors import CatalogError, CatalogFormatError, CatalogNotFoundError

__all__ = [
    "AttributeSchema",
    "Catalog",
    "FORMAT_NAME",
    "MAX_ABS_FEATURE",
    "SCHEMA_VERSION",
    "SPATIAL_DATASET",
    "SpatialFeatures",
    "InMemorySpatialFeatures",
    "HDF5SpatialFeatures",
    "create_spatial_dataset",
]

FORMAT_NAME = "dialog-retrieval-catalog"
SCHEMA_VERSION = 1
#: Name of the optional HDF5 dataset holding the ``(N, L, C)`` spatial features.
SPATIAL_DATASET = "spatial_features"
#: Storage dtypes accepted for the spatial features (read back as float32).
SPATIAL_STORAGE_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
#: Rows read or written at once when spatial features are streamed (save, comparison).
_STREAM_BYTES = 64 * 2**20
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


@dataclass(frozen=True)
class AttributeSchema:
    """One per-image attribute: its name and the names of its values.

    Attributes:
        name: attribute name, e.g. ``"heel_height"``.
        values: value names; an image's code ``c`` means ``values[c]``.
        ordinal: whether the values are ordered (``"flat" < "low" < "high"``), so that
            comparisons such as "higher" are meaningful.
    """

    name: str
    values: tuple[str, ...]
    ordinal: bool = False

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise CatalogError(f"attribute name must be a non-empty string without '/', got {self.name!r}")
        if len(self.values) == 0:
            raise CatalogError(f"attribute {self.name!r} has no values")
        if len(set(self.values)) != len(self.values):
            raise CatalogError(f"attribute {self.name!r} has duplicate value names: {list(self.values)}")


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

    def subset(self, indices: np.ndarray | Sequence[int]) -> "SpatialFeatures":
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
        return np.dtype(np.float32)

    def _read_sorted(self, source_rows: np.ndarray) -> np.ndarray:
        return self._array[source_rows]


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
    def _trusted(cls, path: Path, dataset: str, shape: tuple[int, ...], dtype: np.dtype) -> "HDF5SpatialFeatures":
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


class Catalog:
    """An immutable image catalogue.

    Args:
        features: ``(N, D) float32`` image features, all finite, with ``|value| <=``
            :data:`MAX_ABS_FEATURE` (``1e15``). Ranking uses squared L2 distance between rows.
        ids: ``N`` unique image ids (strings), e.g. file names.
        splits: split name -> ``(n,)`` integer indices into ``0..N-1``; unique within a split and
            disjoint across splits. Default: one split ``"all"`` with every image.
        attributes: optional attribute name -> ``(N,)`` integer codes (stored as ``int16``).
        attribute_schema: one :class:`AttributeSchema` per attribute (required with
            ``attributes``; same names).
        name: a short human-readable name used in messages.
        spatial_features: optional per-image region features for an attention captioner: an
            ``(N, L, C) float32`` array (copied, checked for NaN/inf) or a
            :class:`SpatialFeatures` with ``N`` rows (e.g. an :class:`HDF5SpatialFeatures` that
            reads rows lazily). Exposed as :attr:`spatial_features` (``None`` when absent).

    Raises:
        CatalogError: on any inconsistency, with a message that says what was found.
    """

    def __init__(
        self,
        features: np.ndarray,
        ids: Sequence[str] | np.ndarray,
        splits: Mapping[str, np.ndarray | Sequence[int]] | None = None,
        attributes: Mapping[str, np.ndarray | Sequence[int]] | None = None,
        attribute_schema: Sequence[AttributeSchema] | None = None,
        name: str = "catalog",
        spatial_features: np.ndarray | SpatialFeatures | None = None,
    ) -> None:
        where = f"catalogue {name!r}"
        features = np.asarray(features)
        if features.ndim != 2:
            raise CatalogError(f"{where}: features must have shape (N, D), got shape {features.shape}")
        if features.dtype != np.float32:
            raise CatalogError(
                f"{where}: features must be float32, got {features.dtype} (convert with .astype(np.float32))"
            )
        n_images, dim = features.shape
        if n_images < 1 or dim < 1:
            raise CatalogError(f"{where}: features must be non-empty, got shape {features.shape}")
        bad_rows = nonfinite_rows(features)
        if bad_rows.size:
            raise CatalogError(
                f"{where}: features contain NaN or inf in {bad_rows.size} row(s), first at row {bad_rows[0]}"
            )
        ids_array = np.asarray([str(i) for i in ids], dtype=object)
        if ids_array.shape != (n_images,):
            raise CatalogError(f"{where}: expected {n_images} ids (one per feature row), got {ids_array.shape[0]}")
        unique_ids, counts = np.unique(ids_array.astype(str), return_counts=True)
        if unique_ids.size != n_images:
            duplicates = unique_ids[counts > 1]
            raise CatalogError(
                f"{where}: ids must be unique, found {duplicates.size} duplicated id(s), e.g. {str(duplicates[0])!r}"
            )
        big_rows = oversized_rows(features)
        if big_rows.size:
            raise CatalogError(f"{where}: features {_oversized_message(features, big_rows, ids_array)}")

        if splits is None:
            splits = {"all": np.arange(n_images)}
        checked_splits: dict[str, np.ndarray] = {}
        owner = np.full(n_images, -1, dtype=np.int64)
        for split_number, (split_name, indices) in enumerate(splits.items()):
            indices = np.asarray(indices)
            if indices.ndim != 1 or not (np.issubdtype(indices.dtype, np.integer) or indices.size == 0):
                raise CatalogError(
                    f"{where}: split {split_name!r} must be a 1-D integer index array, "
                    f"got dtype {indices.dtype} and shape {indices.shape}"
                )
            indices = indices.astype(np.int64)
            if indices.size and (indices.min() < 0 or indices.max() >= n_images):
                bad = indices[(indices < 0) | (indices >= n_images)]
                raise CatalogError(
                    f"{where}: split {split_name!r} has {bad.size} index(es) out of range 0..{n_images - 1}, "
                    f"e.g. {int(bad[0])}"
                )
            if np.unique(indices).size != indices.size:
                raise CatalogError(f"{where}: split {split_name!r} lists some images more than once")
            clash = indices[owner[indices] >= 0]
            if clash.size:
                other = list(checked_splits)[int(owner[clash[0]])]
                raise CatalogError(
                    f"{where}: splits {other!r} and {split_name!r} overlap in {clash.size} image(s), "
                    f"e.g. index {int(clash[0])}; splits must be disjoint"
                )
            owner[indices] = split_number
            checked_splits[str(split_name)] = _readonly(indices)

        checked_attributes: dict[str, np.ndarray] = {}
        schema_by_name: dict[str, AttributeSchema] = {}
        if attributes:
            if attribute_schema is None:
                raise CatalogError(f"{where}: attributes were given without an attribute_schema")
            schema_by_name = {schema.name: schema for schema in attribute_schema}
            if set(schema_by_name) != set(attributes):
                raise CatalogError(
                    f"{where}: attribute names {sorted(attributes)} do not match the schema's "
                    f"{sorted(schema_by_name)}"
                )
            for attribute_name in schema_by_name:
                codes = np.asarray(attributes[attribute_name])
                if codes.shape != (n_images,):
                    raise CatalogError(
                        f"{where}: attribute {attribute_name!r} must have shape ({n_images},), got {codes.shape}"
                    )
                if not np.issubdtype(codes.dtype, np.integer):
                    raise CatalogError(
                        f"{where}: attribute {attribute_name!r} must hold integer codes, got dtype {codes.dtype}"
                    )
                n_values = len(schema_by_name[attribute_name].values)
                if codes.min() < 0 or codes.max() >= n_values:
                    raise CatalogError(
                        f"{where}: attribute {attribute_name!r} has codes outside 0..{n_values - 1} "
                        f"(found {int(codes.min())}..{int(codes.max())})"
                    )
                checked_attributes[attribute_name] = _readonly(codes.astype(np.int16))
        elif attribute_schema:
            raise CatalogError(f"{where}: an attribute_schema was given without attributes")

        spatial: SpatialFeatures | None = None
        if spatial_features is not None:
            if isinstance(spatial_features, SpatialFeatures):
                spatial = spatial_features
            else:
                try:
                    spatial = InMemorySpatialFeatures(spatial_features)
                except CatalogError as error:
                    raise CatalogError(f"{where}: {error}") from error
            if len(spatial) != n_images:
                raise CatalogError(
                    f"{where}: spatial features have {len(spatial)} rows (shape {spatial.shape}), expected "
                    f"{n_images} (one per feature row)"
                )

        self.name = str(name)
        self.features: np.ndarray = _readonly(features)
        self.ids: np.ndarray = _readonly(ids_array)
        self.splits: dict[str, np.ndarray] = checked_splits
        self.attributes: dict[str, np.ndarray] = checked_attributes
        self.attribute_schema: dict[str, AttributeSchema] = schema_by_name
        self.spatial_features: SpatialFeatures | None = spatial
        self._squared_norms: np.ndarray | None = None
        self._split_views: dict[str, Catalog] = {}

    # ------------------------------------------------------------------ properties
    @property
    def num_images(self) -> int:
        """Number of images ``N``."""
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        """Feature dimension ``D``."""
        return int(self.features.shape[1])

    def __len__(self) -> int:
        return self.num_images

    def __repr__(self) -> str:
        splits = ", ".join(f"{k}={v.size}" for k, v in self.splits.items())
        return (
            f"Catalog(name={self.name!r}, N={self.num_images}, D={self.dim}, splits=({splits}), "
            f"attributes={list(self.attributes)}"
            + (f", spatial_features={self.spatial_features.shape}" if self.spatial_features is not None else "")
            + ")"
        )

    def __eq__(self, other: object) -> bool:
        """Same name, features, ids, splits, attributes and spatial features.

        Spatial features are equal when both are absent, or have the same shape and the same
        float32 values. Two views of the same file and rows are equal without reading anything;
        otherwise the values are compared block by block (bounded memory, but it reads both
        arrays once: slow for a multi-gigabyte file).
        """
        if not isinstance(other, Catalog):
            return NotImplemented
        return (
            self.name == other.name
            and np.array_equal(self.features, other.features)
            and np.array_equal(self.ids, other.ids)
            and self.splits.keys() == other.splits.keys()
            and all(np.array_equal(v, other.splits[k]) for k, v in self.splits.items())
            and self.attribute_schema == other.attribute_schema
            and all(np.array_equal(v, other.attributes[k]) for k, v in self.attributes.items())
            and _spatial_equal(self.spatial_features, other.spatial_features)
        )

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_split_views"] = {}  # caches are rebuilt on demand, not pickled
        return state

    # ------------------------------------------------------------------ views
    def select(self, split: str) -> "Catalog":
        """The sub-catalogue of one split, whose row ``i`` is image ``self.splits[split][i]``.

        Environments act on a split: action ``a`` shows ``select(split).ids[a]``. The view is built
        once and cached (catalogues are immutable), so many environments share one copy. Spatial
        features are remapped without being read (a lazy source stays lazy).

        Raises:
            CatalogError: if the split does not exist or is empty.
        """
        if split in self._split_views:
            return self._split_views[split]
        if split not in self.splits:
            raise CatalogError(
                f"catalogue {self.name!r} has no split {split!r}; available splits: {sorted(self.splits)}"
            )
        indices = self.splits[split]
        if indices.size == 0:
            raise CatalogError(f"catalogue {self.name!r}: split {split!r} is empty")
        view = Catalog(
            features=self.features[indices],
            ids=self.ids[indices],
            splits={split: np.arange(indices.size)},
            attributes={k: v[indices] for k, v in self.attributes.items()} or None,
            attribute_schema=list(self.attribute_schema.values()) or None,
            name=f"{self.name}[{split}]",
            spatial_features=self.spatial_features.subset(indices) if self.spatial_features is not None else None,
        )
        self._split_views[split] = view
        return view

    def attribute_values(self, name: str, indices: np.ndarray | int) -> np.ndarray:
        """Value names of attribute ``name`` for the given image indices (an object array)."""
        schema = self.attribute_schema[name]
        return np.asarray(schema.values, dtype=object)[self.attributes[name][indices]]

    @property
    def squared_norms(self) -> np.ndarray:
        """``(N,) float32`` squared L2 norms of the features, computed once and cached."""
        if self._squared_norms is None:
            norms = np.einsum("nd,nd->n", self.features, self.features, dtype=np.float32)
            norms.setflags(write=False)
            self._squared_norms = norms
        return self._squared_norms

    # ------------------------------------------------------------------ HDF5
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the catalogue to ``path`` in the HDF5 schema of this module (atomically).

        Spatial features are streamed block by block (bounded memory, also from a lazy source)
        and keep their storage dtype (float32 or float16).

        Returns:
            The path written.
        """
        import h5py

        path = Path(path)
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with h5py.File(temporary, "w") as handle:
                handle.attrs["format"] = FORMAT_NAME
                handle.attrs["schema_version"] = SCHEMA_VERSION
                handle.attrs["name"] = self.name
                handle.create_dataset("features", data=self.features)
                handle.create_dataset("ids", data=self.ids.astype(str).tolist(), dtype=h5py.string_dtype("utf-8"))
                splits = handle.create_group("splits")
                for split_name, indices in self.splits.items():
                    splits.create_dataset(split_name, data=indices.astype(np.int64))
                if self.attributes:
                    group = handle.create_group("attributes")
                    for attribute_name, codes in self.attributes.items():
                        schema = self.attribute_schema[attribute_name]
                        dataset = group.create_dataset(attribute_name, data=codes)
                        dataset.attrs["values"] = list(schema.values)
                        dataset.attrs["ordinal"] = bool(schema.ordinal)
                if self.spatial_features is not None:
                    spatial = self.spatial_features
                    dataset = create_spatial_dataset(handle, spatial.shape, spatial.storage_dtype)
                    for start, block in spatial.iter_blocks():
                        dataset[start : start + block.shape[0]] = block
                handle.flush()
            os.replace(temporary, path)
        finally:
            if temporary.exists():
                temporary.unlink()
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Catalog":
        """Read and validate a catalogue written by :meth:`save` (or by an importer).

        Everything is read into memory except ``/spatial_features``, whose shape and dtype are
        checked here and whose rows are read (and checked for NaN/inf) on demand through an
        :class:`HDF5SpatialFeatures`.

        Raises:
            CatalogNotFoundError: the file does not exist.
            CatalogFormatError: the file is not HDF5, is truncated, or a dataset is missing, has
                the wrong dtype or shape, or holds invalid values. The message names the file and
                the dataset.
        """
        import h5py

        path = Path(path)
        if not path.exists():
            raise CatalogNotFoundError(f"catalogue file {str(path)!r} does not exist")
        if path.is_dir():
            raise CatalogFormatError(f"catalogue file {str(path)!r} is a directory, expected an HDF5 file")
        try:
            handle = h5py.File(path, "r")
        except OSError as error:
            raise CatalogFormatError(
                f"catalogue file {str(path)!r} is not a readable HDF5 file (truncated or another format?): {error}"
            ) from error
        try:
            with handle:
                return cls._from_hdf5(handle, str(path))
        except CatalogFormatError:
            raise
        except CatalogError as error:
            raise CatalogFormatError(f"catalogue file {str(path)!r}: {error}") from error
        except (OSError, KeyError, ValueError, TypeError) as error:
            raise CatalogFormatError(f"catalogue file {str(path)!r} could not be read: {error}") from error

    @classmethod
    def _from_hdf5(cls, handle, where: str) -> "Catalog":  # noqa: ANN001 - h5py.File
        import h5py

        def fail(dataset: str, message: str) -> CatalogFormatError:
            return CatalogFormatError(f"catalogue file {where!r}, dataset {dataset!r}: {message}")

        fmt = handle.attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != FORMAT_NAME:
            raise CatalogFormatError(
                f"catalogue file {where!r}: root attribute 'format' is {fmt!r}, expected {FORMAT_NAME!r}"
            )
        version = handle.attrs.get("schema_version")
        version = version.item() if isinstance(version, np.generic) else version
        if not isinstance(version, (int, np.integer)) or int(version) != SCHEMA_VERSION:
            raise CatalogFormatError(
                f"catalogue file {where!r}: schema_version {version!r} is not supported "
                f"(this version of dialog_env reads schema version {SCHEMA_VERSION})"
            )
        expected = {"features", "ids", "splits", "attributes", SPATIAL_DATASET}
        extra = sorted(set(handle.keys()) - expected)
        if extra:
            raise CatalogFormatError(
                f"catalogue file {where!r}: unexpected dataset(s) {extra}; schema version {SCHEMA_VERSION} "
                f"has only {sorted(expected)}"
            )
        for required in ("features", "ids", "splits"):
            if required not in handle:
                raise fail(required, "is missing")

        features_ds = handle["features"]
        if not isinstance(features_ds, h5py.Dataset):
            raise fail("features", "must be a dataset")
        if features_ds.ndim != 2:
            raise fail("features", f"must have shape (N, D), got shape {features_ds.shape}")
        if features_ds.dtype != np.float32:
            raise fail("features", f"must be float32, got {features_ds.dtype}")
        features = features_ds[()]
        bad_rows = nonfinite_rows(features)
        if bad_rows.size:
            raise fail("features", f"contains NaN or inf in {bad_rows.size} row(s), first at row {bad_rows[0]}")

        ids_ds = handle["ids"]
        if not isinstance(ids_ds, h5py.Dataset) or ids_ds.ndim != 1:
            raise fail("ids", "must be a 1-D dataset of strings")
        if ids_ds.dtype.kind not in ("O", "S", "U"):
            raise fail("ids", f"must hold strings, got dtype {ids_ds.dtype}")
        if ids_ds.shape[0] != features.shape[0]:
            raise fail("ids", f"has {ids_ds.shape[0]} entries, expected {features.shape[0]} (one per feature row)")
        ids = [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in ids_ds[()]]
        big_rows = oversized_rows(features)
        if big_rows.size:
            raise fail("features", _oversized_message(features, big_rows, ids))

        splits_group = handle["splits"]
        if not isinstance(splits_group, h5py.Group):
            raise fail("splits", "must be a group of index datasets")
        splits: dict[str, np.ndarray] = {}
        for split_name, dataset in splits_group.items():
            name = f"splits/{split_name}"
            if not isinstance(dataset, h5py.Dataset) or dataset.ndim != 1:
                raise fail(name, "must be a 1-D dataset of indices")
            if dataset.dtype.kind not in ("i", "u"):
                raise fail(name, f"must hold integers, got dtype {dataset.dtype}")
            splits[split_name] = dataset[()]
        if not splits:
            raise fail("splits", "holds no split")

        attributes: dict[str, np.ndarray] = {}
        schema: list[AttributeSchema] = []
        if "attributes" in handle:
            group = handle["attributes"]
            if not isinstance(group, h5py.Group):
                raise fail("attributes", "must be a group")
            for attribute_name, dataset in group.items():
                name = f"attributes/{attribute_name}"
                if not isinstance(dataset, h5py.Dataset) or dataset.ndim != 1:
                    raise fail(name, "must be a 1-D dataset of integer codes")
                if dataset.dtype.kind not in ("i", "u"):
                    raise fail(name, f"must hold integer codes, got dtype {dataset.dtype}")
                if dataset.shape[0] != features.shape[0]:
                    raise fail(name, f"has {dataset.shape[0]} entries, expected {features.shape[0]}")
                if "values" not in dataset.attrs:
                    raise fail(name, "has no 'values' attribute naming its values")
                values = tuple(v.decode() if isinstance(v, bytes) else str(v) for v in dataset.attrs["values"])
                schema.append(AttributeSchema(attribute_name, values, bool(dataset.attrs.get("ordinal", False))))
                attributes[attribute_name] = dataset[()]

        spatial: HDF5SpatialFeatures | None = None
        if SPATIAL_DATASET in handle:
            # Shape and dtype only: the values may be gigabytes; rows are checked when read.
            dataset = handle[SPATIAL_DATASET]
            _check_spatial_dataset(dataset, where, num_images=features.shape[0])
            spatial = HDF5SpatialFeatures._trusted(Path(where), SPATIAL_DATASET, dataset.shape, dataset.dtype)

        name = handle.attrs.get("name", Path(where).stem)
        if isinstance(name, bytes):
            name = name.decode()
        try:
            return cls(
                features, ids, splits, attributes or None, schema or None, name=str(name), spatial_features=spatial
            )
        except CatalogError as error:
            raise CatalogFormatError(f"catalogue file {where!r}: {error}") from error


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
    return all(np.array_equal(a, b) for (_, a), (_, b) in zip(first.iter_blocks(), second.iter_blocks()))
