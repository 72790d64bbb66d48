"""The image catalogue: features, ids, splits, optional attributes and spatial features, and its HDF5 format.

- :mod:`dialog_env.catalog.model`: :class:`Catalog` (immutable, validated) and :class:`AttributeSchema`;
- :mod:`dialog_env.catalog.spatial`: per-image spatial features, in memory or read lazily from a file;
- :mod:`dialog_env.catalog.hdf5`: the file format (schema version 1), read by :meth:`Catalog.load`
  and written by :meth:`Catalog.save`;
- :mod:`dialog_env.catalog.arrays`: the checks every catalogue array goes through (NaN/inf, the
  safe range :data:`MAX_ABS_FEATURE`).

Everything is imported from here: ``from dialog_env.catalog import Catalog``.
"""

from __future__ import annotations

from dialog_env.catalog.arrays import MAX_ABS_FEATURE, nonfinite_rows, oversized_rows
from dialog_env.catalog.hdf5 import (
    FORMAT_NAME,
    SCHEMA_VERSION,
    SPATIAL_DATASET,
    SPATIAL_STORAGE_DTYPES,
    create_spatial_dataset,
)
from dialog_env.catalog.model import AttributeSchema, Catalog
from dialog_env.catalog.spatial import HDF5SpatialFeatures, InMemorySpatialFeatures, SpatialFeatures

__all__ = [
    "AttributeSchema",
    "Catalog",
    "FORMAT_NAME",
    "MAX_ABS_FEATURE",
    "SCHEMA_VERSION",
    "SPATIAL_DATASET",
    "SPATIAL_STORAGE_DTYPES",
    "SpatialFeatures",
    "InMemorySpatialFeatures",
    "HDF5SpatialFeatures",
    "create_spatial_dataset",
    "nonfinite_rows",
    "oversized_rows",
]
