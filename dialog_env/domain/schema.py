"""The shoe attributes: their names, values and order, as shoppers talk about them.

One :class:`~dialog_env.catalog.AttributeSchema` per attribute, in a fixed order that every user,
agent and the generator share: column ``a`` of an ``(N, A)`` code matrix is attribute
``ATTRIBUTE_NAMES[a]``, and code ``c`` in that column means ``ATTRIBUTE_VALUES[a][c]``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from dialog_env.catalog import AttributeSchema, Catalog
from dialog_env.errors import UserSimulatorError

__all__ = [
    "SHOE_CATEGORIES",
    "COLORS",
    "SHOE_ATTRIBUTES",
    "SHOE_SCHEMA",
    "ATTRIBUTE_NAMES",
    "ATTRIBUTE_VALUES",
    "ORDINAL_FLAGS",
    "NUM_ATTRIBUTES",
    "attribute_codes",
    "check_catalog",
]

#: The ten shoe categories of the Shoes relative captions.
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

#: The main colours of a shoe (its ``color`` attribute).
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

#: Attribute name -> its schema.
SHOE_SCHEMA: Mapping[str, AttributeSchema] = {schema.name: schema for schema in SHOE_ATTRIBUTES}

#: ``A`` attribute names, in column order.
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(schema.name for schema in SHOE_ATTRIBUTES)

#: The value names of each attribute, in column order: ``ATTRIBUTE_VALUES[a][c]`` is code ``c`` of column ``a``.
ATTRIBUTE_VALUES: tuple[tuple[str, ...], ...] = tuple(schema.values for schema in SHOE_ATTRIBUTES)

#: Whether each attribute, in column order, is ordinal (its values ordered, "higher" meaningful).
ORDINAL_FLAGS: tuple[bool, ...] = tuple(schema.ordinal for schema in SHOE_ATTRIBUTES)

#: ``A``, the number of shoe attributes (14).
NUM_ATTRIBUTES: int = len(SHOE_ATTRIBUTES)


def attribute_codes(catalog: Catalog) -> np.ndarray:
    """The shoe-attribute codes of every image of a catalogue, in column order.

    Args:
        catalog: a catalogue with (at least) the shoe attributes (see :func:`check_catalog`).

    Returns:
        ``(N, A)`` integer codes, in the dtype of the catalogue's attribute arrays (``int16``).
    """
    return np.stack([catalog.attributes[name] for name in ATTRIBUTE_NAMES], axis=1)


def check_catalog(catalog: Catalog, user: str) -> None:
    """Check that a catalogue has the shoe attributes, with the same values in the same order.

    Args:
        catalog: the catalogue to describe.
        user: the name of the user simulator that needs them, for the message.

    Raises:
        UserSimulatorError: an attribute is missing or its values differ from :data:`SHOE_SCHEMA`.
    """
    missing = [name for name in ATTRIBUTE_NAMES if name not in catalog.attribute_schema]
    if missing:
        raise UserSimulatorError(
            f"user simulator {user!r} describes the shoe attributes {list(ATTRIBUTE_NAMES)}, but catalogue "
            f"{catalog.name!r} lacks {missing}. Use a catalogue with these attributes (e.g. the synthetic "
            f"default) or another user simulator"
        )
    for name in ATTRIBUTE_NAMES:
        if catalog.attribute_schema[name].values != SHOE_SCHEMA[name].values:
            raise UserSimulatorError(
                f"catalogue {catalog.name!r}: attribute {name!r} has values "
                f"{list(catalog.attribute_schema[name].values)}, user simulator {user!r} expects "
                f"{list(SHOE_SCHEMA[name].values)}"
            )
