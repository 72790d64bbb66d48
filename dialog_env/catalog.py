"""The image catalogue: features, ids, splits and optional attributes, with an HDF5 format.

A :class:`Catalog` is the retrieval system's own index. It is immutable: its arrays are
read-only, so one catalogue can be shared by many environments without copies.

HDF5 layout (schema version 1, see also the README)::

    /                      attrs: format = "dialog-retrieval-catalog", schema_version = 1, name
    /features              (N, D) float32, finite
    /ids                   (N,) variable-length UTF-8 strings, unique
    /splits/<split>        (n,) integer indices into 0..N-1, unique; splits do not overlap
    /attributes/<name>     (N,) integer codes into the attribute's values (optional group)
                           attrs: values = list of value names, ordinal = bool
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from dialog_env.errors import CatalogError, CatalogFormatError, CatalogNotFoundError

__all__ = ["AttributeSchema", "Catalog", "FORMAT_NAME", "SCHEMA_VERSION"]

FORMAT_NAME = "dialog-retrieval-catalog"
SCHEMA_VERSION = 1


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


class Catalog:
    """An immutable image catalogue.

    Args:
        features: ``(N, D) float32`` image features, all finite. Ranking uses squared L2 distance
            between rows.
        ids: ``N`` unique image ids (strings), e.g. file names.
        splits: split name -> ``(n,)`` integer indices into ``0..N-1``; unique within a split and
            disjoint across splits. Default: one split ``"all"`` with every image.
        attributes: optional attribute name -> ``(N,)`` integer codes (stored as ``int16``).
        attribute_schema: one :class:`AttributeSchema` per attribute (required with
            ``attributes``; same names).
        name: a short human-readable name used in messages.

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
        if not np.isfinite(features).all():
            bad_rows = np.flatnonzero(~np.isfinite(features).all(axis=1))
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
                f"{where}: ids must be unique, found {duplicates.size} duplicated id(s), e.g. {duplicates[0]!r}"
            )

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

        self.name = str(name)
        self.features: np.ndarray = _readonly(features)
        self.ids: np.ndarray = _readonly(ids_array)
        self.splits: dict[str, np.ndarray] = checked_splits
        self.attributes: dict[str, np.ndarray] = checked_attributes
        self.attribute_schema: dict[str, AttributeSchema] = schema_by_name
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
            f"attributes={list(self.attributes)})"
        )

    def __eq__(self, other: object) -> bool:
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
        once and cached (catalogues are immutable), so many environments share one copy.

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
                handle.flush()
            os.replace(temporary, path)
        finally:
            if temporary.exists():
                temporary.unlink()
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Catalog":
        """Read and validate a catalogue written by :meth:`save` (or by an importer).

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
        expected = {"features", "ids", "splits", "attributes"}
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
        if not np.isfinite(features).all():
            bad_rows = np.flatnonzero(~np.isfinite(features).all(axis=1))
            raise fail("features", f"contains NaN or inf in {bad_rows.size} row(s), first at row {bad_rows[0]}")

        ids_ds = handle["ids"]
        if not isinstance(ids_ds, h5py.Dataset) or ids_ds.ndim != 1:
            raise fail("ids", "must be a 1-D dataset of strings")
        if ids_ds.dtype.kind not in ("O", "S", "U"):
            raise fail("ids", f"must hold strings, got dtype {ids_ds.dtype}")
        if ids_ds.shape[0] != features.shape[0]:
            raise fail("ids", f"has {ids_ds.shape[0]} entries, expected {features.shape[0]} (one per feature row)")
        ids = [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in ids_ds[()]]

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

        name = handle.attrs.get("name", Path(where).stem)
        if isinstance(name, bytes):
            name = name.decode()
        try:
            return cls(features, ids, splits, attributes or None, schema or None, name=str(name))
        except CatalogError as error:
            raise CatalogFormatError(f"catalogue file {where!r}: {error}") from error
