"""The embedded default catalogue: a seeded, synthetic, Shoes-like catalogue.

Images are described by the attributes real shoppers talk about in the Shoes relative captions
(category, colour and lightness, accent colour, heel height and shape, toe, shaft height,
material, shine, pattern, closure, platform, ornament), drawn from category-consistent priors: a
stiletto has a high thin heel, a rain boot is shiny rubber with a tall shaft, an athletic shoe is
flat with laces...

Features (``D = 256`` by default) are made from the attributes through a fixed random non-linear
map, plus an item-specific style component and noise, so that they are informative (neighbours
tend to share salient attributes) without being a copy of the attributes. Every random number
comes from ``numpy.random.default_rng(seed)``; the features are computed in float64 and rounded
to a 2**-12 grid before the cast to float32, so that the catalogue is bit-identical on every
machine and BLAS library (a checksum test pins it).

Default sizes are those of the real Shoes split: 10,000 train and 4,658 test images.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from dialog_env.catalog import AttributeSchema, Catalog
from dialog_env.errors import ConfigurationError

__all__ = [
    "SHOE_ATTRIBUTES",
    "SHOE_CATEGORIES",
    "SyntheticShoesConfig",
    "SPATIAL_REGIONS",
    "make_synthetic_shoes",
    "draw_pairs",
    "SAME_CATEGORY_SHARE",
    "default_catalog",
    "DEFAULT_SEED",
]

DEFAULT_SEED = 2018

SHOE_CATEGORIES: tuple[str, ...] = (
    "clogs",
    "boots",
    "athletic shoes",
    "stilettos",
    "high heels",
    "flats",
    "pumps",
    "wedding shoes",
    "rain boots",
    "sneakers",
)

COLORS: tuple[str, ...] = (
    "black", "brown", "white", "red", "blue", "pink", "gray", "green",
    "tan", "gold", "silver", "purple", "beige", "yellow", "orange", "navy",
)  # fmt: skip

#: The attribute schema of the synthetic catalogue, which the rule-based user speaks about.
SHOE_ATTRIBUTES: tuple[AttributeSchema, ...] = (
    AttributeSchema("category", SHOE_CATEGORIES),
    AttributeSchema("color", COLORS),
    AttributeSchema("lightness", ("dark", "medium", "light"), ordinal=True),
    AttributeSchema("accent", ("none", "black", "white", "silver", "gold", "red", "brown", "blue", "pink")),
    AttributeSchema("heel_height", ("flat", "low", "medium", "high", "very high"), ordinal=True),
    AttributeSchema("heel_shape", ("flat", "stiletto", "block", "chunky", "wedge")),
    AttributeSchema("toe", ("round", "pointed", "open", "square")),
    AttributeSchema("shaft", ("low", "ankle", "mid-calf", "knee"), ordinal=True),
    AttributeSchema("material", ("leather", "suede", "patent", "satin", "canvas", "rubber", "fur", "mesh")),
    AttributeSchema("shine", ("matte", "semi-shiny", "shiny"), ordinal=True),
    AttributeSchema("pattern", ("solid", "floral", "plaid", "leopard", "stripes", "snakeskin", "polka dots")),
    AttributeSchema("closure", ("slip-on", "laces", "buckle", "strap", "zipper", "velcro")),
    AttributeSchema("platform", ("none", "low", "high"), ordinal=True),
    AttributeSchema("ornament", ("none", "bow", "studs", "rhinestones", "flower", "fringe")),
)
_SCHEMA = {schema.name: schema for schema in SHOE_ATTRIBUTES}

# Share of each category in the real Shoes relative captions (train split), used as the category mix.
_CATEGORY_SHARE = (0.126, 0.119, 0.116, 0.111, 0.109, 0.101, 0.101, 0.076, 0.072, 0.069)

# Priors shared by all categories; a category overrides some of them below. Weights need not sum to 1.
_DEFAULT_PRIOR: dict[str, Mapping[str, float]] = {
    "color": {
        "black": 20, "brown": 15, "white": 7, "red": 7, "blue": 6, "pink": 5, "gray": 6, "green": 3,
        "tan": 7, "gold": 3, "silver": 3, "purple": 4, "beige": 5, "yellow": 2, "orange": 2, "navy": 5,
    },
    "lightness": {"dark": 3, "medium": 4.5, "light": 2.5},
    "accent": {"none": 55, "black": 6, "white": 8, "silver": 9, "gold": 7, "red": 4, "brown": 4, "blue": 4, "pink": 3},
    "heel_height": {"flat": 2, "low": 3, "medium": 3, "high": 2},
    "heel_shape": {"stiletto": 3, "block": 3, "chunky": 3, "wedge": 2},
    "toe": {"round": 45, "pointed": 25, "open": 20, "square": 10},
    "shaft": {"low": 1},
    "material": {"leather": 40, "suede": 15, "patent": 10, "satin": 5, "canvas": 8, "rubber": 5, "fur": 3, "mesh": 6},
    "pattern": {"solid": 75, "floral": 5, "plaid": 4, "leopard": 5, "stripes": 4, "snakeskin": 4, "polka dots": 3},
    "closure": {"slip-on": 50, "laces": 10, "buckle": 15, "strap": 20, "zipper": 3, "velcro": 2},
    "platform": {"none": 70, "low": 20, "high": 10},
    "ornament": {"none": 60, "bow": 10, "studs": 8, "rhinestones": 8, "flower": 7, "fringe": 7},
}  # fmt: skip

_CATEGORY_PRIOR: dict[str, dict[str, Mapping[str, float]]] = {
    "clogs": {
        "heel_height": {"flat": 2, "low": 5, "medium": 3},
        "heel_shape": {"chunky": 4, "wedge": 3, "block": 3},
        "toe": {"round": 7, "square": 2, "open": 1},
        "closure": {"slip-on": 6, "strap": 3, "buckle": 1},
        "material": {"leather": 5, "suede": 2, "rubber": 2, "patent": 1},
        "platform": {"none": 3, "low": 5, "high": 2},
    },
    "boots": {
        "color": {"black": 30, "brown": 30, "tan": 12, "gray": 6, "beige": 4, "red": 3, "navy": 3, "white": 2},
        "heel_height": {"flat": 2, "low": 3.5, "medium": 3, "high": 1.5},
        "heel_shape": {"chunky": 4, "block": 4, "stiletto": 1.5, "wedge": 1},
        "toe": {"round": 5, "pointed": 4, "square": 1},
        "shaft": {"ankle": 35, "mid-calf": 35, "knee": 30},
        "closure": {"zipper": 45, "laces": 25, "buckle": 15, "slip-on": 15},
        "material": {"leather": 50, "suede": 35, "fur": 8, "patent": 4, "canvas": 3},
        "ornament": {"none": 60, "studs": 10, "fringe": 15, "bow": 3, "flower": 2, "rhinestones": 2},
    },
    "athletic shoes": {
        "color": {"white": 30, "black": 20, "gray": 15, "blue": 10, "red": 5, "pink": 8, "navy": 6, "green": 3, "yellow": 3},
        "accent": {"none": 25, "black": 10, "white": 10, "silver": 10, "red": 10, "blue": 15, "pink": 10, "gold": 3, "brown": 2},
        "heel_height": {"flat": 1},
        "toe": {"round": 1},
        "shaft": {"low": 9, "ankle": 1},
        "closure": {"laces": 80, "velcro": 15, "slip-on": 5},
        "material": {"mesh": 50, "leather": 30, "canvas": 10, "rubber": 10},
        "platform": {"none": 6, "low": 4},
        "pattern": {"solid": 85, "stripes": 12, "plaid": 3},
        "ornament": {"none": 95, "studs": 5},
    },
    "stilettos": {
        "color": {"black": 30, "red": 15, "pink": 8, "beige": 8, "silver": 6, "gold": 6, "white": 6, "blue": 5, "purple": 5, "brown": 6, "navy": 5},
        "heel_height": {"high": 5, "very high": 5},
        "heel_shape": {"stiletto": 1},
        "toe": {"pointed": 5, "open": 3.5, "round": 1.5},
        "closure": {"slip-on": 5, "strap": 4, "buckle": 1},
        "material": {"leather": 30, "patent": 30, "satin": 15, "suede": 25},
        "platform": {"none": 6, "low": 3, "high": 1},
    },
    "high heels": {
        "heel_height": {"medium": 3, "high": 5, "very high": 2},
        "heel_shape": {"stiletto": 4, "block": 3, "chunky": 1.5, "wedge": 1.5},
        "toe": {"open": 4, "round": 3, "pointed": 3},
        "closure": {"strap": 5, "slip-on": 3.5, "buckle": 1.5},
    },
    "flats": {
        "heel_height": {"flat": 9, "low": 1},
        "heel_shape": {"block": 1},
        "toe": {"round": 6, "pointed": 3, "open": 1},
        "closure": {"slip-on": 7, "strap": 2, "buckle": 1},
        "ornament": {"none": 55, "bow": 25, "flower": 8, "rhinestones": 5, "studs": 5, "fringe": 2},
    },
    "pumps": {
        "heel_height": {"low": 1.5, "medium": 4, "high": 4.5},
        "heel_shape": {"stiletto": 4, "block": 3, "chunky": 3},
        "toe": {"pointed": 45, "round": 40, "open": 15},
        "closure": {"slip-on": 85, "strap": 15},
        "material": {"leather": 40, "patent": 25, "suede": 25, "satin": 10},
    },
    "wedding shoes": {
        "color": {"white": 60, "beige": 15, "silver": 10, "gold": 5, "pink": 10},
        "lightness": {"medium": 3, "light": 7},
        "heel_height": {"low": 1, "medium": 3, "high": 5, "very high": 1},
        "heel_shape": {"stiletto": 6, "block": 2, "wedge": 2},
        "material": {"satin": 60, "leather": 20, "patent": 20},
        "ornament": {"none": 35, "rhinestones": 30, "bow": 15, "flower": 20},
        "pattern": {"solid": 9, "floral": 1},
    },
    "rain boots": {
        "color": {"black": 15, "red": 10, "yellow": 10, "blue": 10, "pink": 10, "green": 10, "navy": 8, "purple": 7, "brown": 5, "gray": 5, "white": 5, "orange": 5},
        "heel_height": {"flat": 6, "low": 4},
        "heel_shape": {"block": 1},
        "toe": {"round": 1},
        "shaft": {"ankle": 1, "mid-calf": 5, "knee": 4},
        "material": {"rubber": 95, "canvas": 5},
        "pattern": {"solid": 55, "floral": 15, "plaid": 10, "polka dots": 12, "stripes": 5, "leopard": 3},
        "closure": {"slip-on": 8, "buckle": 2},
        "ornament": {"none": 90, "bow": 5, "studs": 5},
    },
    "sneakers": {
        "color": {"white": 25, "black": 20, "gray": 10, "blue": 10, "red": 8, "pink": 8, "navy": 7, "green": 4, "yellow": 4, "purple": 4},
        "heel_height": {"flat": 9, "low": 1},
        "heel_shape": {"wedge": 1},
        "toe": {"round": 1},
        "shaft": {"low": 8, "ankle": 2},
        "closure": {"laces": 70, "slip-on": 20, "velcro": 10},
        "material": {"canvas": 50, "leather": 30, "mesh": 20},
        "platform": {"none": 6, "low": 3, "high": 1},
        "pattern": {"solid": 70, "stripes": 10, "plaid": 6, "leopard": 5, "floral": 5, "polka dots": 4},
    },
}  # fmt: skip

# Shine depends on the material: patent shines, suede and fur do not.
_SHINE_GIVEN_MATERIAL: dict[str, tuple[float, float, float]] = {
    "leather": (4, 4, 2), "suede": (1, 0, 0), "patent": (0, 1, 9), "satin": (0, 3, 7),
    "canvas": (1, 0, 0), "rubber": (1, 3, 6), "fur": (1, 0, 0), "mesh": (8, 2, 0),
}  # fmt: skip

# Rough RGB of each colour at medium lightness: makes similar colours close in feature space.
_COLOR_RGB: dict[str, tuple[float, float, float]] = {
    "black": (0.05, 0.05, 0.05), "brown": (0.45, 0.28, 0.15), "white": (0.97, 0.97, 0.97),
    "red": (0.8, 0.1, 0.1), "blue": (0.15, 0.3, 0.8), "pink": (0.95, 0.6, 0.7), "gray": (0.5, 0.5, 0.5),
    "green": (0.2, 0.6, 0.25), "tan": (0.8, 0.65, 0.45), "gold": (0.85, 0.7, 0.25),
    "silver": (0.75, 0.75, 0.78), "purple": (0.5, 0.2, 0.6), "beige": (0.9, 0.85, 0.7),
    "yellow": (0.95, 0.85, 0.15), "orange": (0.95, 0.5, 0.1), "navy": (0.1, 0.12, 0.4),
}  # fmt: skip
_ACHROMATIC_LIGHTNESS = {"black": "dark", "white": "light"}

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


def _weights(attribute: str, prior: Mapping[str, float]) -> np.ndarray:
    """Probability vector over the attribute's values from a (partial) weight mapping."""
    values = _SCHEMA[attribute].values
    unknown = set(prior) - set(values)
    if unknown:  # a typo in the tables above must not pass silently
        raise AssertionError(f"prior of {attribute!r} names unknown values {sorted(unknown)}")
    weights = np.array([float(prior.get(v, 0.0)) for v in values])
    return weights / weights.sum()


def _sample_attributes(rng: np.random.Generator, num_images: int) -> dict[str, np.ndarray]:
    """Draw ``(N,) int16`` attribute codes for every attribute of :data:`SHOE_ATTRIBUTES`."""
    codes = {schema.name: np.zeros(num_images, dtype=np.int16) for schema in SHOE_ATTRIBUTES}
    category = rng.choice(len(SHOE_CATEGORIES), size=num_images, p=np.array(_CATEGORY_SHARE) / sum(_CATEGORY_SHARE))
    codes["category"][:] = category
    independent = ("color", "lightness", "accent", "toe", "shaft", "material", "pattern", "closure", "platform", "ornament")
    for category_code, category_name in enumerate(SHOE_CATEGORIES):
        members = np.flatnonzero(category == category_code)
        prior = {**_DEFAULT_PRIOR, **_CATEGORY_PRIOR[category_name]}
        for attribute in independent:
            p = _weights(attribute, prior[attribute])
            codes[attribute][members] = rng.choice(p.size, size=members.size, p=p)
        # A heel shape only exists for a heel: flat heel height <=> flat heel shape.
        height = rng.choice(5, size=members.size, p=_weights("heel_height", prior["heel_height"]))
        shape_prior = dict(prior["heel_shape"])
        shape_prior.pop("flat", None)
        shape = rng.choice(5, size=members.size, p=_weights("heel_shape", shape_prior))
        codes["heel_height"][members] = height
        codes["heel_shape"][members] = np.where(height == 0, 0, shape)
    # Achromatic colours have a fixed lightness.
    color_names = np.asarray(COLORS)[codes["color"]]
    for color, lightness in _ACHROMATIC_LIGHTNESS.items():
        codes["lightness"][color_names == color] = _SCHEMA["lightness"].values.index(lightness)
    # Shine follows the material.
    material_names = np.asarray(_SCHEMA["material"].values)[codes["material"]]
    for material, weights in _SHINE_GIVEN_MATERIAL.items():
        members = np.flatnonzero(material_names == material)
        p = np.asarray(weights, dtype=np.float64)
        codes["shine"][members] = rng.choice(3, size=members.size, p=p / p.sum())
    return codes


def _attribute_blocks(codes: Mapping[str, np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
    """Weighted one-hot codes (and ordinal levels) of some attributes, ``(N, k) float64`` each."""
    blocks = []
    for name in names:
        schema = _SCHEMA[name]
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
    """``(N, 7, C) float32``: region ``r`` is a random linear view of the attributes of
    ``SPATIAL_REGIONS[r]`` plus noise, standardised, on the same 2**-12 grid as the features."""
    rng = np.random.default_rng([config.seed, 1])  # its own stream: the features stay the same
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
    for i, (target, want_same) in enumerate(zip(targets, same)):
        pool = members[category[target]]
        if not want_same or pool.size < 2:
            other = np.flatnonzero(category != category[target])
            pool = other if other.size else np.arange(catalog.num_images)
        choice = int(pool[rng.integers(pool.size)])
        while choice == target:
            choice = int(pool[rng.integers(pool.size)])
        references[i] = choice
    return targets, references
