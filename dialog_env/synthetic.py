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
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dialog_env.catalog import Catalog
from dialog_env.domain.priors import (
    ACHROMATIC_LIGHTNESS,
    CATEGORY_SHARE,
    SHINE_GIVEN_MATERIAL,
    category_priors,
    prior_probabilities,
)
from dialog_env.domain.schema import COLORS, SHOE_ATTRIBUTES, SHOE_CATEGORIES, SHOE_SCHEMA
from dialog_env.errors import ConfigurationError
from dialog_env.random_streams import stream

__all__ = [
    "SHOE_ATTRIBUTES",  # re-exported from dialog_env.domain.schema, where it is defined
    "SHOE_CATEGORIES",
    "COLORS",
    "SyntheticShoesConfig",
    "SPATIAL_REGIONS",
    "make_synthetic_shoes",
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


def make_synthetic_shoes(config: SyntheticShoesConfig | None = None, **overrides: object) -> Catalog:
    """Generate the synthetic Shoes-like catalogue.

    Args:
        config: settings; default :class:`SyntheticShoesConfig()`.
        **overrides: fields of :class:`SyntheticShoesConfig` to change, e.g. ``num_train=500``.

    Returns:
        A :class:`Catalog` with ``train`` and ``test`` splits, ``(N, D) float32`` features, ids
        such as ``"syn_boots_00042"`` and the attributes of :data:`SHOE_ATTRIBUTES`.
    """
    if config is None:
        config = SyntheticShoesConfig()
    if overrides:
        from dataclasses import replace

        config = replace(config, **overrides)  # type: ignore[arg-type]
    rng = np.random.default_rng(config.seed)
    num_images = config.num_train + config.num_test
    codes = _sample_attributes(rng, num_images)

    inputs = _attribute_inputs(codes)
    # The fixed random map: two layers with a tanh, weights scaled to keep unit-order activations.
    hidden_weights = rng.normal(0.0, 1.0 / np.sqrt(8.0), size=(inputs.shape[1], config.hidden_dim))
    hidden_bias = rng.normal(0.0, 0.5, size=config.hidden_dim)
    output_weights = rng.normal(0.0, 1.0 / np.sqrt(config.hidden_dim), size=(config.hidden_dim, config.dim))
    attribute_part = np.tanh(inputs @ hidden_weights + hidden_bias) @ output_weights
    scale = attribute_part.std()
    style_weights = rng.normal(0.0, 1.0 / np.sqrt(config.style_dim), size=(config.style_dim, config.dim))
    style = rng.normal(0.0, 1.0, size=(num_images, config.style_dim)) @ style_weights
    noise = rng.normal(0.0, 1.0, size=(num_images, config.dim))
    features = attribute_part / scale + config.style_scale * style + config.noise_scale * noise
    # Round to a 2**-12 grid so that float64 rounding differences between BLAS builds cannot
    # change a single float32 bit.
    features = (np.round(features * 4096.0) / 4096.0).astype(np.float32)

    order = rng.permutation(num_images)
    splits = {"train": np.sort(order[: config.num_train]), "test": np.sort(order[config.num_train :])}
    category_names = np.asarray(SHOE_CATEGORIES)[codes["category"]]
    ids = [f"syn_{name.replace(' ', '_')}_{index:05d}" for index, name in enumerate(category_names)]
    spatial = _spatial_features(codes, config) if config.spatial_channels else None
    return Catalog(
        features=features,
        ids=ids,
        splits=splits,
        attributes=codes,
        attribute_schema=SHOE_ATTRIBUTES,
        name=f"synthetic-shoes(seed={config.seed}{', spatial' if spatial is not None else ''})",
        spatial_features=spatial,
    )


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


def _spatial_features(codes: Mapping[str, np.ndarray], config: SyntheticShoesConfig) -> np.ndarray:
    """The optional spatial features, ``(N, 7, C) float32``.

    Region ``r`` is a random linear view of the attributes of ``SPATIAL_REGIONS[r]`` plus noise,
    standardised, on the same 2**-12 grid as the features.
    """
    rng = stream(config.seed, "synthetic_attributes")  # its own stream: the features stay the same
    num_images = len(codes["category"])
    regions = np.empty((num_images, len(SPATIAL_REGIONS), config.spatial_channels), dtype=np.float32)
    for region, names in enumerate(SPATIAL_REGIONS):
        inputs = np.concatenate(_attribute_blocks(codes, names), axis=1)
        weights = rng.normal(0.0, 1.0, size=(inputs.shape[1], config.spatial_channels))
        view = inputs @ weights
        view = (view - view.mean(axis=0)) / (view.std() + 1e-12)
        view += config.noise_scale * rng.normal(0.0, 1.0, size=view.shape)
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
