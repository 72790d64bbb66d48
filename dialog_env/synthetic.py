"""The embedded default catalogue: a seeded, synthetic, Shoes-like catalogue.

Images are described by the attributes real shoppers talk about in the Shoes relative captions
(category, colour and lightness, accent colour, heel height and shape, toe, shaft height,
material, shine, pattern, closure, platform, ornament), drawn from category-consistent priors: a
stiletto has a high thin heel, a rain boot is shiny rubber with a tall shaft, an athletic shoe is
flat with laces... The attributes and the priors are the shoe domain's
(:mod:`dialog_env.domain.schema`, :mod:`dialog_env.domain.priors`); this module draws from them.

Features (``D = 256`` by default) are made from the attributes through a fixed random non-linear
map, plus an item-specific style component and noise, so that they are informative (neighbours
tend to share salient attributes) without being a copy of the attributes. Every random number
comes from ``numpy.random.default_rng(seed)`` (the optional spatial features from their own
stream, ``random_streams.stream(seed, "synthetic_attributes")``); the features are computed in
float64 and rounded to a 2**-12 grid before the cast to float32, so that the catalogue is
bit-identical on every machine and BLAS library (a checksum test pins it).

Default sizes are those of the real Shoes split: 10,000 train and 4,658 test images.
:func:`make_synthetic_shoes` builds the catalogue in memory; :func:`write_synthetic_shoes` writes
the same catalogue, bit for bit, to an HDF5 file in memory bounded independently of its size (a
million images and more).
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dialog_env.catalog import Catalog
from dialog_env.catalog.hdf5 import (
    _create_ids_dataset,
    _ids_for_hdf5,
    _write_root_attributes,
    _write_splits_and_attributes,
    create_spatial_dataset,
)
from dialog_env.domain.priors import (
    ACHROMATIC_LIGHTNESS,
    CATEGORY_SHARE,
    SHINE_GIVEN_MATERIAL,
    category_priors,
    prior_probabilities,
)
from dialog_env.domain.schema import COLORS, SHOE_ATTRIBUTES, SHOE_CATEGORIES, SHOE_SCHEMA
from dialog_env.errors import ConfigurationError
from dialog_env.io import atomic_path
from dialog_env.random_streams import stream

__all__ = [
    "SHOE_ATTRIBUTES",  # re-exported from dialog_env.domain.schema, where it is defined
    "SHOE_CATEGORIES",
    "COLORS",
    "SyntheticShoesConfig",
    "SPATIAL_REGIONS",
    "make_synthetic_shoes",
    "write_synthetic_shoes",
    "draw_pairs",
    "SAME_CATEGORY_SHARE",
    "default_catalog",
    "DEFAULT_SEED",
]

DEFAULT_SEED = 2018

# Rough RGB of each colour at medium lightness: makes similar colours close in feature space.
_COLOR_RGB: dict[str, tuple[float, float, float]] = {
    "black": (0.05, 0.05, 0.05), "brown": (0.45, 0.28, 0.15), "white": (0.97, 0.97, 0.97),
    "red": (0.8, 0.1, 0.1), "blue": (0.15, 0.3, 0.8), "pink": (0.95, 0.6, 0.7), "gray": (0.5, 0.5, 0.5),
    "green": (0.2, 0.6, 0.25), "tan": (0.8, 0.65, 0.45), "gold": (0.85, 0.7, 0.25),
    "silver": (0.75, 0.75, 0.78), "purple": (0.5, 0.2, 0.6), "beige": (0.9, 0.85, 0.7),
    "yellow": (0.95, 0.85, 0.15), "orange": (0.95, 0.5, 0.1), "navy": (0.1, 0.12, 0.4),
}  # fmt: skip

# Weight of each attribute's one-hot code in the input of the feature map (how visible it is).
_VISIBILITY: dict[str, float] = {
    "category": 2.0, "color": 1.6, "lightness": 1.0, "accent": 0.8, "heel_height": 1.3, "heel_shape": 1.0,
    "toe": 1.0, "shaft": 1.3, "material": 1.1, "shine": 0.8, "pattern": 1.2, "closure": 0.9,
    "platform": 0.7, "ornament": 0.8,
}  # fmt: skip


@dataclass(frozen=True)
class SyntheticShoesConfig:
    """Settings of the synthetic catalogue.

    Attributes:
        seed: seed of every random draw: a non-negative integer (``numpy.random.default_rng``).
        num_train: images in the ``train`` split.
        num_test: images in the ``test`` split.
        dim: feature dimension ``D``.
        hidden_dim: width of the hidden layer of the random non-linear map.
        style_dim: dimension of the item-specific style component.
        style_scale: standard deviation of the style component relative to the attribute part.
        noise_scale: standard deviation of the per-dimension noise relative to the attribute part.
        spatial_channels: ``C`` of optional spatial features ``(N, 7, C)``, one region per group
            of :data:`SPATIAL_REGIONS` (0, the default: none). They let an attention captioner
            look at the part of the shoe a difference is about; drawn from their own generator,
            so the rest of the catalogue does not change with them.
    """

    seed: int = DEFAULT_SEED
    num_train: int = 10_000
    num_test: int = 4_658
    dim: int = 256
    hidden_dim: int = 512
    style_dim: int = 16
    style_scale: float = 0.35
    noise_scale: float = 0.25
    spatial_channels: int = 0

    def __post_init__(self) -> None:
        # NumPy seeds are non-negative integers; refused here, not deep inside numpy.random.
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ConfigurationError(
                f"seed of the synthetic catalogue must be a non-negative integer, got {self.seed!r}"
            )
        for field_name in ("num_train", "num_test"):
            if getattr(self, field_name) < 0:
                raise ConfigurationError(f"{field_name} must be >= 0, got {getattr(self, field_name)}")
        if self.num_train + self.num_test < 2:
            raise ConfigurationError("a synthetic catalogue needs at least 2 images")
        for field_name in ("dim", "hidden_dim", "style_dim"):
            if getattr(self, field_name) < 1:
                raise ConfigurationError(f"{field_name} must be >= 1, got {getattr(self, field_name)}")
        if self.spatial_channels < 0:
            raise ConfigurationError(f"spatial_channels must be >= 0, got {self.spatial_channels}")
        for field_name in ("style_scale", "noise_scale"):
            if getattr(self, field_name) < 0:
                raise ConfigurationError(f"{field_name} must be >= 0, got {getattr(self, field_name)}")


def _sample_attributes(rng: np.random.Generator, num_images: int) -> dict[str, np.ndarray]:
    """Draw ``(N,) int16`` attribute codes for every attribute of :data:`SHOE_ATTRIBUTES`."""
    codes = {schema.name: np.zeros(num_images, dtype=np.int16) for schema in SHOE_ATTRIBUTES}
    category_p = np.array(CATEGORY_SHARE) / sum(CATEGORY_SHARE)
    category = rng.choice(len(SHOE_CATEGORIES), size=num_images, p=category_p)
    codes["category"][:] = category
    independent = (
        "color", "lightness", "accent", "toe", "shaft", "material", "pattern", "closure", "platform", "ornament",
    )  # fmt: skip
    for category_code, category_name in enumerate(SHOE_CATEGORIES):
        members = np.flatnonzero(category == category_code)
        prior = category_priors(category_name)
        for attribute in independent:
            p = prior_probabilities(attribute, prior[attribute])
            codes[attribute][members] = rng.choice(p.size, size=members.size, p=p)
        # A heel shape only exists for a heel: flat heel height <=> flat heel shape.
        height = rng.choice(5, size=members.size, p=prior_probabilities("heel_height", prior["heel_height"]))
        shape_prior = dict(prior["heel_shape"])
        shape_prior.pop("flat", None)
        shape = rng.choice(5, size=members.size, p=prior_probabilities("heel_shape", shape_prior))
        codes["heel_height"][members] = height
        codes["heel_shape"][members] = np.where(height == 0, 0, shape)
    # Achromatic colours have a fixed lightness.
    color_names = np.asarray(COLORS)[codes["color"]]
    for color, lightness in ACHROMATIC_LIGHTNESS.items():
        codes["lightness"][color_names == color] = SHOE_SCHEMA["lightness"].values.index(lightness)
    # Shine follows the material.
    material_names = np.asarray(SHOE_SCHEMA["material"].values)[codes["material"]]
    for material, weights in SHINE_GIVEN_MATERIAL.items():
        members = np.flatnonzero(material_names == material)
        p = np.asarray(weights, dtype=np.float64)
        codes["shine"][members] = rng.choice(3, size=members.size, p=p / p.sum())
    return codes


def _attribute_blocks(codes: Mapping[str, np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
    """Weighted one-hot codes (and ordinal levels) of some attributes, ``(N, k) float64`` each."""
    blocks = []
    for name in names:
        schema = SHOE_SCHEMA[name]
        one_hot = np.eye(len(schema.values))[codes[name]]
        blocks.append(_VISIBILITY[name] * one_hot)
        if schema.ordinal:
            level = codes[name][:, None] / (len(schema.values) - 1)
            blocks.append(_VISIBILITY[name] * 2.0 * level)
    return blocks


def _attribute_inputs(codes: Mapping[str, np.ndarray]) -> np.ndarray:
    """``(N, A) float64`` input of the feature map: weighted one-hot codes, ordinal levels, colour RGB."""
    blocks = _attribute_blocks(codes, [schema.name for schema in SHOE_ATTRIBUTES])
    rgb = np.asarray([_COLOR_RGB[c] for c in COLORS])[codes["color"]]
    shade = np.asarray([0.6, 1.0, 1.35])[codes["lightness"]][:, None]
    blocks.append(1.5 * np.clip(rgb * shade, 0.0, 1.0))
    return np.concatenate(blocks, axis=1)


#: Rows of one evaluation of a matrix product of the maps (the last tile of a block padded with
#: zero rows): every product has the same shape and every image the same place in its tile,
#: however the rows are blocked, so a BLAS kernel chosen by shape cannot change an image's digits.
_TILE_ROWS = 1024


def _in_tiles(rows: np.ndarray, start: int, function: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``function`` of the rows ``start..start + b`` of the catalogue, applied one tile at a time.

    Args:
        rows: ``(b, k)`` inputs of catalogue rows ``start..start + b``.
        start: catalogue index of the first row; tiles are aligned to multiples of
            :data:`_TILE_ROWS` of the catalogue index, not of the block.
        function: row-wise map of a ``(_TILE_ROWS, k)`` array to a ``(_TILE_ROWS, m)`` one.

    Returns:
        ``(b, m)`` float64.
    """
    count = rows.shape[0]
    out: np.ndarray | None = None
    done = 0
    while done < count:
        offset = (start + done) % _TILE_ROWS
        take = min(_TILE_ROWS - offset, count - done)
        tile = np.zeros((_TILE_ROWS, *rows.shape[1:]), dtype=np.float64)
        tile[offset : offset + take] = rows[done : done + take]
        result = function(tile)[offset : offset + take]
        if out is None:
            out = np.empty((count, *result.shape[1:]), dtype=result.dtype)
        out[done : done + take] = result
        done += take
    assert out is not None, "no rows"
    return out


def _blockwise_std(blocks: Callable[[], Iterable[np.ndarray]]) -> float:
    """Standard deviation of every value in the row blocks that ``blocks()`` yields (two passes).

    The mean, then the mean squared deviation from it, as in ``np.std``; but each row is summed by
    NumPy on its own and the row sums are added exactly (``math.fsum``), so the result does not
    depend on how the rows are grouped into blocks (``np.std`` of the whole array can differ from
    it in the last bit).

    Args:
        blocks: called twice; each call yields the same ``(b, ...)`` float64 blocks in order.
    """
    sizes: list[int] = []

    def row_sums(center: float | None) -> Iterator[float]:
        for block in blocks():
            flat = block.reshape(block.shape[0], -1)
            if center is None:
                sizes.append(flat.size)
                yield from flat.sum(axis=1).tolist()
            else:
                yield from ((flat - center) ** 2).sum(axis=1).tolist()

    total = math.fsum(row_sums(None))
    count = sum(sizes)
    return math.sqrt(math.fsum(row_sums(total / count)) / count)


def _row_ranges(num_rows: int, rows_per_block: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive blocks of at most ``rows_per_block`` rows."""
    for start in range(0, num_rows, rows_per_block):
        yield start, min(num_rows, start + rows_per_block)


def _code_rows(codes: Mapping[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    return {name: values[start:stop] for name, values in codes.items()}


@dataclass(frozen=True)
class _FeatureMap:
    """The random draws of the feature map (``A`` map inputs, ``H`` hidden units, ``S`` style dims).

    Attributes:
        hidden_weights: ``(A, H) float64``.
        hidden_bias: ``(H,) float64``.
        output_weights: ``(H, D) float64``.
        style_weights: ``(S, D) float64``.
        style_draws: ``(N, S) float64``: each image's style, before ``style_weights``.
        style_scale: the config's ``style_scale``.
        noise_scale: the config's ``noise_scale``.
    """

    hidden_weights: np.ndarray
    hidden_bias: np.ndarray
    output_weights: np.ndarray
    style_weights: np.ndarray
    style_draws: np.ndarray
    style_scale: float
    noise_scale: float


def _draw_feature_map(rng: np.random.Generator, config: SyntheticShoesConfig, num_images: int) -> _FeatureMap:
    """Draw the map's weights and the style of every image, in the catalogue's order of draws."""
    num_inputs = _attribute_inputs({schema.name: np.zeros(0, dtype=np.int16) for schema in SHOE_ATTRIBUTES}).shape[1]
    # The fixed random map: two layers with a tanh, weights scaled to keep unit-order activations.
    hidden_weights = rng.normal(0.0, 1.0 / np.sqrt(8.0), size=(num_inputs, config.hidden_dim))
    hidden_bias = rng.normal(0.0, 0.5, size=config.hidden_dim)
    output_weights = rng.normal(0.0, 1.0 / np.sqrt(config.hidden_dim), size=(config.hidden_dim, config.dim))
    style_weights = rng.normal(0.0, 1.0 / np.sqrt(config.style_dim), size=(config.style_dim, config.dim))
    style_draws = rng.normal(0.0, 1.0, size=(num_images, config.style_dim))
    return _FeatureMap(
        hidden_weights, hidden_bias, output_weights, style_weights, style_draws, config.style_scale, config.noise_scale
    )


def _attribute_part(feature_map: _FeatureMap, codes: Mapping[str, np.ndarray], start: int, stop: int) -> np.ndarray:
    """``(stop - start, D) float64``: the non-linear map of the attributes of rows ``start..stop``."""

    def hidden_then_output(inputs: np.ndarray) -> np.ndarray:
        hidden = np.tanh(inputs @ feature_map.hidden_weights + feature_map.hidden_bias)
        return hidden @ feature_map.output_weights

    return _in_tiles(_attribute_inputs(_code_rows(codes, start, stop)), start, hidden_then_output)


def _feature_rows(
    feature_map: _FeatureMap, attribute_part: np.ndarray, start: int, noise: np.ndarray, scale: float
) -> np.ndarray:
    """``(b, D) float32`` features of rows ``start..start + b``.

    Args:
        feature_map: the map's draws.
        attribute_part: ``(b, D) float64`` from :func:`_attribute_part` (overwritten).
        start: catalogue index of the first row.
        noise: ``(b, D) float64`` standard normal draws of these rows (overwritten).
        scale: standard deviation of the attribute part over the whole catalogue.
    """
    count = attribute_part.shape[0]
    style = _in_tiles(
        feature_map.style_draws[start : start + count], start, lambda draws: draws @ feature_map.style_weights
    )
    # attribute_part / scale + style_scale * style + noise_scale * noise, in place.
    features = attribute_part
    features /= scale
    style *= feature_map.style_scale
    features += style
    noise *= feature_map.noise_scale
    features += noise
    # Round to a 2**-12 grid so that float64 rounding differences between BLAS builds cannot
    # change a single float32 bit.
    features *= 4096.0
    np.round(features, out=features)
    features /= 4096.0
    return features.astype(np.float32)


def _draw_splits(rng: np.random.Generator, config: SyntheticShoesConfig) -> dict[str, np.ndarray]:
    """The ``train`` and ``test`` splits: a random permutation cut in two, each part sorted."""
    order = rng.permutation(config.num_train + config.num_test)
    return {"train": np.sort(order[: config.num_train]), "test": np.sort(order[config.num_train :])}


def _image_ids(category_codes: np.ndarray, start: int) -> list[str]:
    """Ids of rows ``start..``, such as ``"syn_boots_00042"``."""
    names = np.asarray(SHOE_CATEGORIES)[category_codes]
    return [f"syn_{name.replace(' ', '_')}_{start + offset:05d}" for offset, name in enumerate(names)]


def _catalog_name(config: SyntheticShoesConfig) -> str:
    return f"synthetic-shoes(seed={config.seed}{', spatial' if config.spatial_channels else ''})"


def _resolve_config(config: SyntheticShoesConfig | None, overrides: Mapping[str, object]) -> SyntheticShoesConfig:
    if config is None:
        config = SyntheticShoesConfig()
    if overrides:
        config = replace(config, **overrides)  # type: ignore[arg-type]
    return config


def make_synthetic_shoes(config: SyntheticShoesConfig | None = None, **overrides: object) -> Catalog:
    """Generate the synthetic Shoes-like catalogue, in memory.

    :func:`write_synthetic_shoes` writes the same catalogue to a file in bounded memory.

    Args:
        config: settings; default :class:`SyntheticShoesConfig()`.
        **overrides: fields of :class:`SyntheticShoesConfig` to change, e.g. ``num_train=500``.

    Returns:
        A :class:`Catalog` with ``train`` and ``test`` splits, ``(N, D) float32`` features, ids
        such as ``"syn_boots_00042"`` and the attributes of :data:`SHOE_ATTRIBUTES`.
    """
    config = _resolve_config(config, overrides)
    rng = np.random.default_rng(config.seed)
    num_images = config.num_train + config.num_test
    # The order of the draws is the catalogue's: codes, map, style, noise, splits.
    codes = _sample_attributes(rng, num_images)
    feature_map = _draw_feature_map(rng, config, num_images)
    attribute_part = _attribute_part(feature_map, codes, 0, num_images)
    scale = _blockwise_std(lambda: [attribute_part])
    noise = rng.normal(0.0, 1.0, size=(num_images, config.dim))
    features = _feature_rows(feature_map, attribute_part, 0, noise, scale)
    splits = _draw_splits(rng, config)
    spatial = None
    if config.spatial_channels:
        spatial = _spatial_rows(_prepare_spatial(codes, config, num_images), codes, 0, num_images)
    return Catalog(
        features=features,
        ids=_image_ids(codes["category"], 0),
        splits=splits,
        attributes=codes,
        attribute_schema=SHOE_ATTRIBUTES,
        name=_catalog_name(config),
        spatial_features=spatial,
    )


def write_synthetic_shoes(
    path: str | os.PathLike[str],
    config: SyntheticShoesConfig | None = None,
    *,
    rows_per_block: int = 8_192,
    progress: bool = False,
    **overrides: object,
) -> Path:
    """Write the catalogue of :func:`make_synthetic_shoes` to an HDF5 file, streamed, in bounded memory.

    The file is the one ``make_synthetic_shoes(config).save(path)`` would write, in the schema of
    :mod:`dialog_env.catalog.hdf5` (``Catalog.load(path)`` reads it back): bit-identical
    ``/features`` ``(N, D) float32``, ``/ids`` ``(N,)`` strings, ``/splits/train`` and
    ``/splits/test`` int64 indices, ``/attributes/<name>`` ``(N,) int16`` codes with their
    ``values`` and ``ordinal`` attrs, the same ``name``, and ``/spatial_features``
    ``(N, 7, C) float32`` when ``spatial_channels > 0`` (streamed too). It is written through
    :func:`dialog_env.io.atomic_path`: an interrupted write leaves no file at ``path``.

    The rows are computed ``rows_per_block`` at a time, in three passes over the catalogue (the
    mean, then the standard deviation of the attribute part, then the features; with
    ``spatial_channels > 0``, three more over each region's cheap linear view, for its
    statistics), so the time is about three times that of computing the features once.

    Memory: besides small per-image arrays (the ``(N,) int16`` codes of the 14 attributes, 28
    bytes per image; the ``(N, style_dim) float64`` style draws, 128 bytes per image by default;
    the splits' permutation, 16 bytes per image, drawn at the end), a block holds about
    ``28 * D + 16 * A + 100`` bytes per row (the float64 attribute part, style and noise, the
    float32 features, the ``A = 97`` one-hot map inputs and their copies, the ids), plus
    ``56 * C`` with spatial features: 7 to 9 KB per row with the default ``D = 256``, whatever
    ``N``. The matrix products of the map run on tiles of 1,024 rows (about 7 MB by default); a
    ``rows_per_block`` that is a multiple of 1,024 computes each tile once. Measured for
    1,000,000 images of the default config (2 shared Intel Xeon cores): peak RSS 302 MB with the
    default 8,192 rows per block (79 s), 745 MB with 65,536 (90 s), against 7.2 GB for
    ``make_synthetic_shoes``.

    Args:
        path: the HDF5 file to write (replaced if it exists); its folder must exist.
        config: settings; default :class:`SyntheticShoesConfig()`.
        rows_per_block: rows computed and written at once (>= 1).
        progress: show a tqdm progress bar over the rows of every pass (on stderr).
        **overrides: fields of :class:`SyntheticShoesConfig` to change, e.g. ``num_train=900_000``.

    Returns:
        The path written.

    Raises:
        ConfigurationError: ``rows_per_block`` is not an integer >= 1, ``path``'s folder does not
            exist or ``path`` is a folder, or a setting of the config is invalid.
    """
    import h5py
    from tqdm import tqdm

    config = _resolve_config(config, overrides)
    if isinstance(rows_per_block, bool) or not isinstance(rows_per_block, (int, np.integer)) or rows_per_block < 1:
        raise ConfigurationError(f"rows_per_block must be an integer >= 1, got {rows_per_block!r}")
    rows_per_block = int(rows_per_block)
    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigurationError(
            f"cannot write the synthetic catalogue to {str(path)!r}: its folder {str(path.parent)!r} does not "
            "exist (create it first)"
        )
    if path.is_dir():
        raise ConfigurationError(f"cannot write the synthetic catalogue to {str(path)!r}: it is a folder")

    rng = np.random.default_rng(config.seed)
    num_images = config.num_train + config.num_test
    passes = 3
    with tqdm(
        total=passes * num_images, desc=f"synthetic catalogue ({num_images:,} images, {passes} passes)",
        unit="row", unit_scale=True, disable=not progress, leave=False, mininterval=1.0, file=sys.stderr,
    ) as bar:  # fmt: skip

        def attribute_blocks() -> Iterator[np.ndarray]:
            for start, stop in _row_ranges(num_images, rows_per_block):
                yield _attribute_part(feature_map, codes, start, stop)
                bar.update(stop - start)

        # The same draws in the same order as make_synthetic_shoes; the noise block by block
        # (a Generator's normal draws are one stream however they are cut).
        codes = _sample_attributes(rng, num_images)
        feature_map = _draw_feature_map(rng, config, num_images)
        scale = _blockwise_std(attribute_blocks)
        spatial = None
        if config.spatial_channels:
            bar.set_postfix_str("spatial statistics")
            spatial = _prepare_spatial(codes, config, rows_per_block)
            bar.set_postfix_str("")
        with atomic_path(path) as temporary, h5py.File(temporary, "w") as handle:
            _write_root_attributes(handle, _catalog_name(config))
            features = handle.create_dataset("features", shape=(num_images, config.dim), dtype=np.float32)
            ids = _create_ids_dataset(handle, num_images)
            spatial_dataset = None
            if spatial is not None:
                regions = (num_images, len(SPATIAL_REGIONS), config.spatial_channels)
                spatial_dataset = create_spatial_dataset(handle, regions, np.float32)
            for start, stop in _row_ranges(num_images, rows_per_block):
                noise = rng.normal(0.0, 1.0, size=(stop - start, config.dim))
                part = _attribute_part(feature_map, codes, start, stop)
                features[start:stop] = _feature_rows(feature_map, part, start, noise, scale)
                ids[start:stop] = _ids_for_hdf5(_image_ids(codes["category"][start:stop], start))
                if spatial_dataset is not None:
                    spatial_dataset[start:stop] = _spatial_rows(spatial, codes, start, stop)
                bar.update(stop - start)
            schema = {attribute.name: attribute for attribute in SHOE_ATTRIBUTES}
            _write_splits_and_attributes(handle, _draw_splits(rng, config), codes, schema)
    return path


#: The regions of the optional spatial features and the attributes each one shows.
SPATIAL_REGIONS: tuple[tuple[str, ...], ...] = (
    ("category",),
    ("color", "lightness", "accent"),
    ("material", "shine", "pattern"),
    ("heel_height", "heel_shape", "platform"),
    ("toe",),
    ("shaft", "closure"),
    ("ornament",),
)


@dataclass(frozen=True)
class _SpatialMap:
    """The draws and statistics of the spatial features, one entry per region of :data:`SPATIAL_REGIONS`.

    Attributes:
        weights: ``(k_r, C) float64``: the random linear view of the region's ``k_r`` map inputs.
        means: ``(C,) float64``: each channel's mean of the view over the images.
        scales: the view's standard deviation over all its values, plus ``1e-12``.
        noise: a generator at the start of the region's ``(N, C)`` noise: :func:`_spatial_rows`
            draws from it, so the rows must be asked for in order.
        noise_scale: the config's ``noise_scale``.
    """

    weights: tuple[np.ndarray, ...]
    means: tuple[np.ndarray, ...]
    scales: tuple[float, ...]
    noise: tuple[np.random.Generator, ...]
    noise_scale: float


def _region_inputs(codes: Mapping[str, np.ndarray], names: Sequence[str], start: int, stop: int) -> np.ndarray:
    """``(stop - start, k) float64``: weighted one-hot codes (and levels) of a region's attributes."""
    return np.concatenate(_attribute_blocks(_code_rows(codes, start, stop), names), axis=1)


def _column_mean(blocks: Iterable[np.ndarray]) -> np.ndarray:
    """``(C,)`` mean over the rows of the ``(b, C)`` blocks, added row after row like ``mean(axis=0)``.

    The running total is added before each block's rows, in one sequential ``np.add.accumulate``,
    so the result does not depend on how the rows are grouped into blocks.
    """
    total: np.ndarray | None = None
    count = 0
    for block in blocks:
        rows = block if total is None else np.concatenate([total[None], block])
        total = np.add.accumulate(rows, axis=0)[-1]
        count += block.shape[0]
    assert total is not None, "no rows"
    return total / count


def _prepare_spatial(codes: Mapping[str, np.ndarray], config: SyntheticShoesConfig, rows_per_block: int) -> _SpatialMap:
    """Draw the spatial views' weights and compute their statistics, ``rows_per_block`` rows at a time.

    The draws come from their own stream, region by region: the weights, then the ``(N, C)``
    noise (skipped here, block by block, after a copy of the generator is kept for
    :func:`_spatial_rows`). The statistics take three passes over each region's cheap view.
    """
    rng = stream(config.seed, "synthetic_attributes")  # its own stream: the features stay the same
    num_images = len(codes["category"])
    channels = config.spatial_channels
    weights, means, scales, noise = [], [], [], []
    for names in SPATIAL_REGIONS:
        region_weights = rng.normal(0.0, 1.0, size=(_region_inputs(codes, names, 0, 0).shape[1], channels))
        region_noise = np.random.Generator(type(rng.bit_generator)())
        region_noise.bit_generator.state = rng.bit_generator.state
        for start, stop in _row_ranges(num_images, rows_per_block):
            rng.normal(0.0, 1.0, size=(stop - start, channels))

        def views(names: Sequence[str] = names, region_weights: np.ndarray = region_weights) -> Iterator[np.ndarray]:
            for start, stop in _row_ranges(num_images, rows_per_block):
                yield _in_tiles(_region_inputs(codes, names, start, stop), start, lambda tile: tile @ region_weights)

        weights.append(region_weights)
        means.append(_column_mean(views()))
        scales.append(_blockwise_std(views) + 1e-12)
        noise.append(region_noise)
    return _SpatialMap(tuple(weights), tuple(means), tuple(scales), tuple(noise), config.noise_scale)


def _spatial_rows(spatial: _SpatialMap, codes: Mapping[str, np.ndarray], start: int, stop: int) -> np.ndarray:
    """``(stop - start, 7, C) float32`` spatial features of rows ``start..stop`` (asked for in order).

    Region ``r`` is a random linear view of the attributes of ``SPATIAL_REGIONS[r]``,
    standardised, plus noise, on the same 2**-12 grid as the features.
    """
    channels = spatial.weights[0].shape[1]
    regions = np.empty((stop - start, len(SPATIAL_REGIONS), channels), dtype=np.float32)
    for region, names in enumerate(SPATIAL_REGIONS):
        weights = spatial.weights[region]
        view = _in_tiles(_region_inputs(codes, names, start, stop), start, lambda tile, weights=weights: tile @ weights)
        view = (view - spatial.means[region]) / spatial.scales[region]
        view += spatial.noise_scale * spatial.noise[region].normal(0.0, 1.0, size=view.shape)
        regions[:, region] = np.round(view * 4096.0) / 4096.0
    return regions


@functools.lru_cache(maxsize=4)
def default_catalog(seed: int = DEFAULT_SEED) -> Catalog:
    """The default catalogue (cached: a catalogue is immutable, so environments share it)."""
    return make_synthetic_shoes(SyntheticShoesConfig(seed=seed))


#: Share of real Shoes relative captions that compare two shoes of one category (full release).
SAME_CATEGORY_SHARE = 0.93


def draw_pairs(
    catalog: Catalog, num_pairs: int, rng: np.random.Generator, same_category_share: float = SAME_CATEGORY_SHARE
) -> tuple[np.ndarray, np.ndarray]:
    """(target, reference) pairs as shoppers compared them: the same category 93% of the time.

    Used to measure the simulator against real captions and to train the neural captioner on
    rule-based captions. The catalogue needs a ``category`` attribute.

    Returns:
        ``(targets, references)``, each ``(num_pairs,) int64``, never equal pairwise.
    """
    category = catalog.attributes["category"]
    members = {c: np.flatnonzero(category == c) for c in np.unique(category)}
    targets = rng.integers(catalog.num_images, size=num_pairs)
    same = rng.random(num_pairs) < same_category_share
    references = np.empty(num_pairs, dtype=np.int64)
    for i, (target, want_same) in enumerate(zip(targets, same, strict=True)):
        pool = members[category[target]]
        if not want_same or pool.size < 2:
            other = np.flatnonzero(category != category[target])
            pool = other if other.size else np.arange(catalog.num_images)
        choice = int(pool[rng.integers(pool.size)])
        while choice == target:
            choice = int(pool[rng.integers(pool.size)])
        references[i] = choice
    return targets, references
