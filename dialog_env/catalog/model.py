"""The image catalogue: features, ids, splits and optional attributes and spatial features.

A :class:`Catalog` is the retrieval system's own index. It is immutable: its arrays are
read-only, so one catalogue can be shared by many environments without copies. Its file format
is in :mod:`dialog_env.catalog.hdf5`, its spatial features in :mod:`dialog_env.catalog.spatial`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dialog_env.catalog.arrays import _oversized_message, _readonly, nonfinite_rows, oversized_rows
from dialog_env.catalog.hdf5 import read_catalog, write_catalog
from dialog_env.catalog.spatial import InMemorySpatialFeatures, SpatialFeatures, _spatial_equal
from dialog_env.errors import CatalogError, CatalogFormatError

__all__ = ["AttributeSchema", "Catalog"]


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
                    f"{where}: attribute names {sorted(attributes)} do not match the schema's {sorted(schema_by_name)}"
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
    def select(self, split: str) -> Catalog:
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
        """Write the catalogue to ``path`` in the HDF5 schema of :mod:`dialog_env.catalog.hdf5` (atomically).

        Spatial features are streamed block by block (bounded memory, also from a lazy source)
        and keep their storage dtype (float32 or float16).

        Returns:
            The path written.
        """
        return write_catalog(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Catalog:
        """Read and validate a catalogue written by :meth:`save` (or by an importer).

        Everything is read into memory except ``/spatial_features``, whose shape and dtype are
        checked here and whose rows are read (and checked for NaN/inf) on demand through an
        :class:`~dialog_env.catalog.spatial.HDF5SpatialFeatures`.

        Raises:
            CatalogNotFoundError: the file does not exist.
            CatalogFormatError: the file is not HDF5, is truncated, or a dataset is missing, has
                the wrong dtype or shape, or holds invalid values. The message names the file and
                the dataset.
        """
        fields = read_catalog(path)
        if fields["attribute_schema"] is not None:
            fields["attribute_schema"] = [AttributeSchema(*entry) for entry in fields["attribute_schema"]]
        try:
            return cls(**fields)
        except CatalogError as error:
            raise CatalogFormatError(f"catalogue file {str(path)!r}: {error}") from error
