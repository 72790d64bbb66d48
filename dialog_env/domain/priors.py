"""What shoes of each category tend to look like: the priors the synthetic generator draws from.

A stiletto has a high thin heel, a rain boot is shiny rubber with a tall shaft, an athletic shoe is
flat with laces... Every attribute but the shine is drawn from a per-category weight table
(:func:`category_priors`: the shared :data:`DEFAULT_PRIOR` with the category's
:data:`CATEGORY_PRIOR` on top); the shine follows the material (:data:`SHINE_GIVEN_MATERIAL`), and
black and white have a fixed lightness (:data:`ACHROMATIC_LIGHTNESS`). Weights are relative: they
need not sum to 1, and a value a table leaves out has weight 0.

The random draws themselves are the generator's (:mod:`dialog_env.synthetic`); this module only
holds the tables.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from dialog_env.domain.schema import SHOE_SCHEMA

__all__ = [
    "CATEGORY_SHARE",
    "DEFAULT_PRIOR",
    "CATEGORY_PRIOR",
    "SHINE_GIVEN_MATERIAL",
    "ACHROMATIC_LIGHTNESS",
    "category_priors",
    "prior_probabilities",
]

#: Share of each category (in the order of ``SHOE_CATEGORIES``) in the real Shoes relative
#: captions (train split), used as the category mix. Sums to 1 up to rounding.
CATEGORY_SHARE: tuple[float, ...] = (0.126, 0.119, 0.116, 0.111, 0.109, 0.101, 0.101, 0.076, 0.072, 0.069)

#: Attribute -> value -> weight, shared by all categories; a category overrides some of them.
DEFAULT_PRIOR: dict[str, Mapping[str, float]] = {
    "color": {
        "black": 20, "brown": 15, "white": 7, "red": 7, "blue": 6, "pink": 5, "gray": 6, "green": 3,
        "tan": 7, "gold": 3, "silver": 3, "purple": 4, "beige": 5, "yellow": 2, "orange": 2, "navy": 5,
    },
    "lightness": {"dark": 3, "medium": 4.5, "light": 2.5},
    "accent": {
        "none": 55, "black": 6, "white": 8, "silver": 9, "gold": 7, "red": 4, "brown": 4, "blue": 4, "pink": 3,
    },
    "heel_height": {"flat": 2, "low": 3, "medium": 3, "high": 2},
    "heel_shape": {"stiletto": 3, "block": 3, "chunky": 3, "wedge": 2},
    "toe": {"round": 45, "pointed": 25, "open": 20, "square": 10},
    "shaft": {"low": 1},
    "material": {
        "leather": 40, "suede": 15, "patent": 10, "satin": 5, "canvas": 8, "rubber": 5, "fur": 3, "mesh": 6,
    },
    "pattern": {
        "solid": 75, "floral": 5, "plaid": 4, "leopard": 5, "stripes": 4, "snakeskin": 4, "polka dots": 3,
    },
    "closure": {"slip-on": 50, "laces": 10, "buckle": 15, "strap": 20, "zipper": 3, "velcro": 2},
    "platform": {"none": 70, "low": 20, "high": 10},
    "ornament": {"none": 60, "bow": 10, "studs": 8, "rhinestones": 8, "flower": 7, "fringe": 7},
}  # fmt: skip

#: Category -> attribute -> value -> weight: what sets each category apart from :data:`DEFAULT_PRIOR`.
CATEGORY_PRIOR: dict[str, dict[str, Mapping[str, float]]] = {
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
        "color": {
            "white": 30, "black": 20, "gray": 15, "blue": 10, "red": 5, "pink": 8, "navy": 6, "green": 3, "yellow": 3,
        },
        "accent": {
            "none": 25, "black": 10, "white": 10, "silver": 10, "red": 10, "blue": 15, "pink": 10, "gold": 3,
            "brown": 2,
        },
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
        "color": {
            "black": 30, "red": 15, "pink": 8, "beige": 8, "silver": 6, "gold": 6, "white": 6, "blue": 5,
            "purple": 5, "brown": 6, "navy": 5,
        },
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
        "color": {
            "black": 15, "red": 10, "yellow": 10, "blue": 10, "pink": 10, "green": 10, "navy": 8, "purple": 7,
            "brown": 5, "gray": 5, "white": 5, "orange": 5,
        },
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
        "color": {
            "white": 25, "black": 20, "gray": 10, "blue": 10, "red": 8, "pink": 8, "navy": 7, "green": 4,
            "yellow": 4, "purple": 4,
        },
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

#: Material -> weights of the shine values ``(matte, semi-shiny, shiny)``: patent shines, suede and fur do not.
SHINE_GIVEN_MATERIAL: dict[str, tuple[float, float, float]] = {
    "leather": (4, 4, 2), "suede": (1, 0, 0), "patent": (0, 1, 9), "satin": (0, 3, 7),
    "canvas": (1, 0, 0), "rubber": (1, 3, 6), "fur": (1, 0, 0), "mesh": (8, 2, 0),
}  # fmt: skip

#: Colour -> the lightness it always has (achromatic colours).
ACHROMATIC_LIGHTNESS: dict[str, str] = {"black": "dark", "white": "light"}


def category_priors(category: str) -> dict[str, Mapping[str, float]]:
    """The weight tables of one category: :data:`DEFAULT_PRIOR` overridden by its :data:`CATEGORY_PRIOR`.

    Args:
        category: one of ``SHOE_CATEGORIES``.

    Returns:
        Attribute -> value -> weight, for every attribute except the shine.
    """
    return {**DEFAULT_PRIOR, **CATEGORY_PRIOR[category]}


def prior_probabilities(attribute: str, weights: Mapping[str, float]) -> np.ndarray:
    """The probability vector over an attribute's values from a (partial) weight table.

    Args:
        attribute: a shoe attribute name, e.g. ``"heel_height"``.
        weights: value -> relative weight; values left out get probability 0.

    Returns:
        ``(V,) float64`` probabilities summing to 1, in the order of the attribute's values.

    Raises:
        AssertionError: the table names a value the attribute does not have (a typo in a table).
    """
    values = SHOE_SCHEMA[attribute].values
    unknown = set(weights) - set(values)
    if unknown:  # a typo in the tables above must not pass silently
        raise AssertionError(f"prior of {attribute!r} names unknown values {sorted(unknown)}")
    probabilities = np.array([float(weights.get(v, 0.0)) for v in values])
    return probabilities / probabilities.sum()
