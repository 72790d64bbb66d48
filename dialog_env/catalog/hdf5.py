"""The HDF5 file format of catalogues: writing, reading and validating it.

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
:func:`read_catalog` checks only their shape and dtype, and
:class:`~dialog_env.catalog.spatial.HDF5SpatialFeatures` reads rows on demand (checking each row it
reads for NaN/inf). Files without them are unchanged, so the schema version stays 1.

:meth:`Catalog.save <dialog_env.catalog.model.Catalog.save>` and :meth:`Catalog.load
<dialog_env.catalog.model.Catalog.load>` are the entry points; importers that stream rows into a
new file use :func:`~dialog_env.catalog.spatial.create_spatial_dataset` (the spatial dataset's own
layout lives beside its lazy reader, in :mod:`dialog_env.catalog.spatial`). The imports run one
way: the model imports this module, which imports the spatial storage.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dialog_env.catalog.arrays import _oversized_message, nonfinite_rows, oversized_rows
from dialog_env.catalog.spatial import (
    SPATIAL_DATASET,
    SPATIAL_STORAGE_DTYPES,
    HDF5SpatialFeatures,
    _check_spatial_dataset,
    create_spatial_dataset,
)
from dialog_env.errors import CatalogError, CatalogFormatError, CatalogNotFoundError
from dialog_env.io import atomic_path

__all__ = [
    "FORMAT_NAME",
    "SCHEMA_VERSION",
    "SPATIAL_DATASET",
    "SPATIAL_STORAGE_DTYPES",
    "create_spatial_dataset",
    "read_catalog",
    "write_catalog",
]

FORMAT_NAME = "dialog-retrieval-catalog"
SCHEMA_VERSION = 1


def write_catalog(catalog: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``catalog`` to ``path`` in this schema, atomically (:func:`dialog_env.io.atomic_path`).

    ``catalog`` is a :class:`~dialog_env.catalog.model.Catalog` (this module imports no model:
    the model imports it).

    Spatial features are streamed block by block (bounded memory, also from a lazy source)
    and keep their storage dtype (float32 or float16).

    Returns:
        The path written.
    """
    import h5py

    path = Path(path)
    with atomic_path(path) as temporary:
        with h5py.File(temporary, "w") as handle:
            _write_root_attributes(handle, catalog.name)
            handle.create_dataset("features", data=catalog.features)
            _create_ids_dataset(handle, catalog.num_images)[:] = _ids_for_hdf5(catalog.ids)
            _write_splits_and_attributes(handle, catalog.splits, catalog.attributes, catalog.attribute_schema)
            if catalog.spatial_features is not None:
                spatial = catalog.spatial_features
                dataset = create_spatial_dataset(handle, spatial.shape, spatial.storage_dtype)
                for start, block in spatial.iter_blocks():
                    dataset[start : start + block.shape[0]] = block
            handle.flush()
    return path


# The pieces of a catalogue file shared by :func:`write_catalog` and the writers that stream a
# catalogue into a file without building it in memory (e.g.
# :func:`dialog_env.synthetic.write_synthetic_shoes`).
def _write_root_attributes(handle, name: str) -> None:  # noqa: ANN001 - h5py.File
    """The root attributes: ``format``, ``schema_version`` and the catalogue's ``name``."""
    handle.attrs["format"] = FORMAT_NAME
    handle.attrs["schema_version"] = SCHEMA_VERSION
    handle.attrs["name"] = name


def _create_ids_dataset(handle, num_images: int):  # noqa: ANN001, ANN202 - h5py.File, h5py.Dataset
    """The empty ``/ids`` dataset: ``(num_images,)`` variable-length UTF-8 strings, filled by slices."""
    import h5py

    return handle.create_dataset("ids", shape=(int(num_images),), dtype=h5py.string_dtype("utf-8"))


def _ids_for_hdf5(ids: Sequence[str] | np.ndarray) -> np.ndarray:
    """Ids as the object array of ``str`` that an ``/ids`` slice is assigned."""
    return np.asarray([str(image_id) for image_id in ids], dtype=object)


def _write_splits_and_attributes(
    handle,  # noqa: ANN001 - h5py.File
    splits: Mapping[str, np.ndarray],
    attributes: Mapping[str, np.ndarray] | None,
    attribute_schema: Mapping[str, Any],
) -> None:
    """``/splits/<split>`` (int64 indices) and, when there are attributes, ``/attributes/<name>``.

    Args:
        handle: an ``h5py.File`` opened for writing.
        splits: split name -> ``(n,)`` integer indices.
        attributes: attribute name -> ``(N,)`` integer codes (stored in their dtype), or ``None``.
        attribute_schema: attribute name -> an
            :class:`~dialog_env.catalog.model.AttributeSchema` (its ``values`` and ``ordinal``
            become the dataset's attrs), one per attribute.
    """
    group = handle.create_group("splits")
    for split_name, indices in splits.items():
        group.create_dataset(split_name, data=np.asarray(indices).astype(np.int64))
    if attributes:
        group = handle.create_group("attributes")
        for attribute_name, codes in attributes.items():
            schema = attribute_schema[attribute_name]
            dataset = group.create_dataset(attribute_name, data=codes)
            dataset.attrs["values"] = list(schema.values)
            dataset.attrs["ordinal"] = bool(schema.ordinal)


def read_catalog(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a catalogue file written by :func:`write_catalog` (or by an importer).

    Everything is read into memory except ``/spatial_features``, whose shape and dtype are
    checked here and whose rows are read (and checked for NaN/inf) on demand through an
    :class:`~dialog_env.catalog.spatial.HDF5SpatialFeatures`.

    Args:
        path: the HDF5 file.

    Returns:
        The arguments of :class:`~dialog_env.catalog.model.Catalog`, by name: ``features``,
        ``ids``, ``splits``, ``attributes`` and ``attribute_schema`` (``None`` when the file has
        no attributes; the schema as ``(name, values, ordinal)`` tuples), ``name`` and
        ``spatial_features``. :meth:`Catalog.load` builds the catalogue from them.

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
            return _read_open_file(handle, str(path))
    except CatalogFormatError:
        raise
    except CatalogError as error:
        raise CatalogFormatError(f"catalogue file {str(path)!r}: {error}") from error
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise CatalogFormatError(f"catalogue file {str(path)!r} could not be read: {error}") from error


def _read_open_file(handle, where: str) -> dict[str, Any]:  # noqa: ANN001 - h5py.File
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
    schema: list[tuple[str, tuple[str, ...], bool]] = []  # (name, values, ordinal)
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
            schema.append((attribute_name, values, bool(dataset.attrs.get("ordinal", False))))
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
    return {
        "features": features,
        "ids": ids,
        "splits": splits,
        "attributes": attributes or None,
        "attribute_schema": schema or None,
        "name": str(name),
        "spatial_features": spatial,
    }
