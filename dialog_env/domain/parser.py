"""From a shopper's relative caption to claims about the shoe attributes of the target.

:func:`parse_caption` reads a caption such as ``"is darker, with no strap and a higher heel"`` and
returns :class:`Claim` objects over the shoe schema (:mod:`dialog_env.domain.schema`)::

    lightness less             the target is darker than the shown image
    closure not_in {strap}     the target has no strap
    heel_height more           the target's heel is higher

A claim is one of four relations: ``in`` (the target's value is one of ``values``), ``not_in`` (it
is none of them), ``more`` / ``less`` (an ordinal attribute: the target's value is above / below
the shown image's). :func:`claim_holds` decides a claim for a pair of images from their attribute
codes. A caption that only says the two are alike ("are identical") gives the single claim
:data:`SAME`.

How it reads (a lexicon of phrases, matched longest first, plus a few modifiers):

- comparatives: "higher heel", "darker", "shinier", "more shiny", "less pointy", "more of a boot";
- negation: "no strap", "not as tall", "without laces or buckles" (it carries over "or"/"nor");
- contrast: "suede instead of leather", "black not brown", "rather than", "vs" (a negation implied by
  another claim, "not leather" beside "suede", is dropped; so are a claim and its negation both);
- coordination: "black and white" (either colour), "has laces and a higher heel";
- context: "is a high heel" names the category, "has a high heel" the heel height.

Words that no phrase explains, other than function words ("is", "a", "with"...), are kept in
:attr:`ParsedCaption.unparsed`; a phrase about something the schema has no attribute for ("open
back", "rubber sole") is recognised and reported as unparsed too, so that it is never mistaken for
a claim. The lexicon is our own description of how people talk about shoes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from dialog_env.domain.schema import ATTRIBUTE_NAMES, COLORS, SHOE_SCHEMA
from dialog_env.text import tokenize

__all__ = [
    "Claim",
    "ParsedCaption",
    "RELATIONS",
    "SAME",
    "claim_holds",
    "claim_table",
    "parse_caption",
]

#: The relations of a :class:`Claim`.
RELATIONS = ("in", "not_in", "more", "less", "same")


class Claim(NamedTuple):
    """One thing a caption says about the target, relative to the shown image.

    Attributes:
        attribute: a shoe attribute name (``"*"`` for :data:`SAME`).
        relation: one of :data:`RELATIONS`.
        values: for ``in`` / ``not_in``, the attribute's values meant (sorted in schema order);
            empty for the other relations.
    """

    attribute: str
    relation: str
    values: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.relation in ("in", "not_in"):
            return f"{self.attribute} {self.relation} {{{', '.join(self.values)}}}"
        return f"{self.attribute} {self.relation}"


#: The claim of a caption that says the images are alike ("is the same", "are identical").
SAME = Claim("*", "same")


class ParsedCaption(NamedTuple):
    """What :func:`parse_caption` found.

    Attributes:
        claims: the claims, in the order said, without duplicates.
        unparsed: the content words no claim explains, in caption order (with repeats).
        tokens: the caption's words (:func:`dialog_env.text.tokenize`).
    """

    claims: tuple[Claim, ...]
    unparsed: tuple[str, ...]
    tokens: tuple[str, ...]

    @property
    def fully_parsed(self) -> bool:
        """At least one claim and no unparsed word."""
        return bool(self.claims) and not self.unparsed


# ------------------------------------------------------------------------------------------ lexicon
class _Meaning(NamedTuple):
    """What a phrase of the lexicon means.

    ``claims`` are said as they are; ``scale`` is the ordinal attribute and direction (+1 / -1)
    that "more" / "less" before the phrase turn it into ("more shiny": shine more). A phrase with
    neither is outside the schema (recognised, reported as unparsed).
    """

    claims: tuple[Claim, ...]
    scale: tuple[str, int] | None = None


def _values(attribute: str, values: Iterable[str]) -> tuple[str, ...]:
    """``values`` of ``attribute``, checked against the schema and sorted in schema order."""
    known = SHOE_SCHEMA[attribute].values
    wanted = set(values)
    unknown = wanted - set(known)
    if unknown:
        raise AssertionError(f"lexicon: {attribute} has no values {sorted(unknown)}")
    return tuple(v for v in known if v in wanted)


def _is(attribute: str, *values: str, scale: int = 0) -> _Meaning:
    """The phrase says the target's ``attribute`` is one of ``values`` (scale: see :class:`_Meaning`)."""
    return _Meaning((Claim(attribute, "in", _values(attribute, values)),), (attribute, scale) if scale else None)


def _not(attribute: str, *values: str) -> _Meaning:
    """The phrase says the target's ``attribute`` is none of ``values``."""
    return _Meaning((Claim(attribute, "not_in", _values(attribute, values)),))


def _step(attribute: str, direction: int) -> _Meaning:
    """The phrase says the target's ordinal ``attribute`` is above (+1) or below (-1) the shown image's."""
    return _Meaning((Claim(attribute, "more" if direction > 0 else "less"),), (attribute, direction))


_OUTSIDE = _Meaning(())

# Colour words: the schema's colours and the names shoppers also use for them.
_COLOR_WORDS: dict[str, tuple[str, ...]] = {c: (c,) for c in COLORS} | {
    "grey": ("gray",), "charcoal": ("gray",), "slate": ("gray",), "golden": ("gold",), "silvery": ("silver",),
    "blue": ("blue", "navy"), "cream": ("beige", "white"), "ivory": ("beige", "white"), "nude": ("beige", "tan"),
    "taupe": ("tan", "beige", "gray"), "khaki": ("tan", "beige"), "camel": ("tan", "brown"),
    "burgundy": ("red",), "maroon": ("red",), "crimson": ("red",), "reddish": ("red",), "wine": ("red",),
    "teal": ("blue", "green"), "turquoise": ("blue", "green"), "aqua": ("blue", "green"), "olive": ("green",),
    "lime": ("green",), "lilac": ("purple",), "lavender": ("purple",), "violet": ("purple",), "plum": ("purple",),
    "magenta": ("pink", "purple"), "fuchsia": ("pink",), "coral": ("pink", "orange"), "peach": ("pink", "orange"),
    "rose": ("pink",), "bronze": ("gold", "brown"), "copper": ("orange", "brown", "gold"),
    "rust": ("orange", "red", "brown"), "russet": ("orange", "red", "brown"), "brick": ("red", "orange"),
    "chocolate": ("brown",), "cognac": ("brown", "tan"), "mocha": ("brown",), "whiter": ("white",),
    "blacker": ("black",), "browner": ("brown",), "redder": ("red",), "pinker": ("pink",),
    "navy blue": ("navy",), "dark navy": ("navy",), "royal blue": ("blue",), "baby blue": ("blue",),
    "sky blue": ("blue",), "off white": ("white", "beige"), "hot pink": ("pink",), "greyish": ("gray",),
    "grayish": ("gray",), "brownish": ("brown",), "blackish": ("black",),
}  # fmt: skip
_ACCENT_NOUNS = ("accent", "accents", "accented", "trim", "trims", "trimmed", "detail", "details", "detailing",
                 "stitching", "edging", "piping")  # fmt: skip
_HEEL = ("heel", "heels")
_SOLE = ("sole", "soles", "platform", "platforms", "bottom", "bottoms")
_SHAFT = ("shaft", "shafts", "top", "tops", "boot", "boots", "leg")
_TOE = ("toe", "toes", "toed", "tip")


def _phrases(words: Iterable[str], *heads: Iterable[str]) -> list[tuple[str, ...]]:
    """Every ``word head...`` token sequence (or the words alone when no heads are given)."""
    result = []
    for word in words:
        lead = tuple(word.split())
        if not heads:
            result.append(lead)
        for head_group in heads:
            result += [(*lead, *head.split()) for head in head_group]
    return result


@functools.cache
def _lexicon() -> dict[tuple[str, ...], _Meaning]:
    """Token sequence -> meaning, built once."""
    lex: dict[tuple[str, ...], _Meaning] = {}

    def add(sequences: Iterable[tuple[str, ...]], meaning: _Meaning) -> None:
        for sequence in sequences:
            lex[sequence] = meaning

    # Colours, lightness and accents.
    accent_values = set(SHOE_SCHEMA["accent"].values)
    for word, colors in _COLOR_WORDS.items():
        add(_phrases([word], ["", "colored", "color", "in color", "toned"]), _is("color", *colors))
        accents = [c for c in colors if c in accent_values]
        add(_phrases([word], _ACCENT_NOUNS), _is("accent", *accents) if accents else _OUTSIDE)
    add(_phrases(["dark", "deep"]), _is("lightness", "dark", scale=-1))
    add(_phrases(["light", "pale", "pastel"]), _is("lightness", "light", scale=+1))
    add(_phrases(["darker", "deeper", "darker colored", "darker in color", "darker color", "darker shade"]),
        _step("lightness", -1))  # fmt: skip
    add(_phrases(["lighter", "paler", "brighter", "lighter colored", "lighter in color", "lighter color",
                  "lighter shade"]), _step("lightness", +1))  # fmt: skip
    add(_phrases(["no", "without"], _ACCENT_NOUNS), _is("accent", "none"))
    add(_phrases(_ACCENT_NOUNS), _not("accent", "none"))
    # Heel height and shape.
    add(_phrases(["higher", "taller", "bigger", "larger", "longer"], _HEEL), _step("heel_height", +1))
    add(_phrases(["lower", "shorter", "smaller", "flatter"], _HEEL), _step("heel_height", -1))
    add([("higher",), ("heeled",), ("higher", "heeled")], _step("heel_height", +1))
    add([("lower",), ("flatter",), ("lower", "heeled")], _step("heel_height", -1))
    add(_phrases(["high", "tall"], _HEEL), _is("heel_height", "high", "very high", scale=+1))
    add(_phrases(["very high", "very tall", "super high", "sky high"], _HEEL), _is("heel_height", "very high"))
    add(_phrases(["low", "short", "small", "kitten"], _HEEL), _is("heel_height", "low", scale=-1))
    add(_phrases(["medium", "mid", "moderate"], _HEEL), _is("heel_height", "low", "medium"))
    add([("flat",), ("no", "heel"), ("no", "heels"), ("without", "heel"), ("heelless",)],
        _is("heel_height", "flat", scale=-1))  # fmt: skip
    add([("heel",), ("heels",), ("high", "heeled"), ("heeled",)], _not("heel_height", "flat"))
    add(_phrases(["thicker", "chunkier", "wider", "thick", "chunky", "fatter", "sturdier"], _HEEL),
        _is("heel_shape", "block", "chunky", "wedge"))  # fmt: skip
    add(_phrases(["thinner", "skinnier", "slimmer", "narrower"], _HEEL), _is("heel_shape", "stiletto", "block"))
    add(_phrases(["thin", "skinny", "stiletto", "spike", "spiked", "needle"], _HEEL), _is("heel_shape", "stiletto"))
    add(_phrases(["block", "square", "stacked"], _HEEL), _is("heel_shape", "block", "chunky"))
    add(_phrases(["wedge", "wedges", "wedged", "wedge heel", "wedge heels"]), _is("heel_shape", "wedge"))
    # Toe.
    add(_phrases(["open", "peep", "peep open"], _TOE) + [("open", "toed"), ("peep", "toed")], _is("toe", "open"))
    add(_phrases(["closed", "close", "covered", "enclosed"], _TOE), _not("toe", "open"))
    add(_phrases(["pointed", "pointy", "pointier", "pointer", "sharper", "sharp", "narrow", "narrower"], _TOE)
        + [("pointy",), ("pointier",), ("pointed",), ("pointer",)], _is("toe", "pointed"))  # fmt: skip
    add(_phrases(["round", "rounded", "rounder", "rounder"], _TOE) + [("rounder",), ("rounded",)], _is("toe", "round"))
    add(_phrases(["square", "squared", "squarer", "squarish", "blunt"], _TOE), _is("toe", "square"))
    # Shaft.
    shaft_up = [("taller",), ("higher", "on", "the", "ankle"), ("higher", "on", "the", "leg"),
                ("higher", "on", "the", "shaft"), ("higher", "top")]  # fmt: skip
    add(_phrases(["taller", "higher", "longer", "bigger"], _SHAFT[:-3]) + shaft_up, _step("shaft", +1))
    add(_phrases(["shorter", "lower"], _SHAFT[:-3]) + [("shorter",), ("lower", "on", "the", "ankle")],
        _step("shaft", -1))  # fmt: skip
    add([("knee", "high"), ("knee", "length"), ("knee", "boots"), ("knee", "boot"), ("thigh", "high"),
         ("over", "the", "knee"), ("tall", "boot"), ("tall", "boots"), ("tall",)],
        _is("shaft", "knee", scale=+1))  # fmt: skip
    add([("mid", "calf"), ("calf", "high"), ("calf", "length"), ("mid", "calf", "length")], _is("shaft", "mid-calf"))
    add([("ankle", "high"), ("ankle", "length"), ("bootie",), ("booties",), ("ankle", "bootie"), ("ankle", "booties")],
        _is("shaft", "ankle"))  # fmt: skip
    add([("high", "top"), ("high", "tops")], _not("shaft", "low"))
    add([("low", "top"), ("low", "tops"), ("low", "cut")], _is("shaft", "low", scale=-1))
    # Category (names a kind of shoe).
    for words, category in (
        (["clog", "clogs", "mule", "mules"], "clogs"),
        (["boot", "boots", "cowboy boots", "cowboy boot", "western boots", "biker boots", "combat boots",
          "hiking boots",
          "riding boots", "work boots"], "boots"),
        (["athletic", "athletic shoe", "athletic shoes", "running shoe", "running shoes", "tennis shoe",
          "tennis shoes", "trainers", "running", "tennis"], "athletic shoes"),
        (["stiletto", "stilettos"], "stilettos"),
        (["pump", "pumps"], "pumps"),
        (["flats", "ballet flats", "ballet flat", "flat shoes", "ballet shoes", "ballerinas"], "flats"),
        (["wedding shoe", "wedding shoes", "bridal", "bridal shoes", "dressy shoe", "dressy shoes"], "wedding shoes"),
        (["rain boot", "rain boots", "rainboots", "rubber boot", "rubber boots", "wellies", "galoshes"], "rain boots"),
        (["sneaker", "sneakers"], "sneakers"),
    ):  # fmt: skip
        add(_phrases(words), _is("category", category))
    add([("ankle", "boot"), ("ankle", "boots")], _Meaning((Claim("category", "in", ("boots",)),
                                                           Claim("shaft", "in", ("ankle",)))))  # fmt: skip
    # Material.
    add(_phrases(["leather", "leathers"]), _is("material", "leather", "patent"))
    add(_phrases(["patent", "patent leather", "patent leathers"]), _is("material", "patent"))
    add(_phrases(["suede", "nubuck", "suedes", "sueded"]), _is("material", "suede"))
    add(_phrases(["satin", "silk", "silky", "satiny"]), _is("material", "satin"))
    add(_phrases(["canvas", "fabric", "cloth", "textile"]), _is("material", "canvas", "mesh"))
    add(_phrases(["rubber", "plastic", "jelly", "rubbery"]), _is("material", "rubber"))
    add(_phrases(["fur", "furry", "fuzzy", "fleece", "sheepskin", "shearling", "faux fur", "fur lined", "fur lining",
                  "fur trim", "fur trimmed", "fur linings", "furred"]), _is("material", "fur"))  # fmt: skip
    add(_phrases(["mesh"]), _is("material", "mesh"))
    # Shine.
    add(_phrases(["shiny", "glossy", "metallic", "shimmery", "shiney"]), _is("shine", "semi-shiny", "shiny", scale=+1))
    add(_phrases(["shinier", "shiner", "glossier", "shinnier", "more shine", "more sheen"]), _step("shine", +1))
    add(_phrases(["matte", "dull", "flat finish"]), _is("shine", "matte", scale=-1))
    add(_phrases(["duller", "less shine", "matter"]), _step("shine", -1))
    # Pattern.
    add(_phrases(["floral", "flowered", "flowery", "floral print", "floral pattern", "flower print",
                  "flower pattern", "floral design"]), _is("pattern", "floral"))  # fmt: skip
    add(_phrases(["plaid", "checkered", "tartan", "gingham", "checked", "plaid pattern", "plaid print"]),
        _is("pattern", "plaid"))  # fmt: skip
    add(_phrases(["leopard", "cheetah", "leopard print", "cheetah print", "leopard spots"]), _is("pattern", "leopard"))
    add(_phrases(["animal print", "animal pattern", "animal skin"]), _is("pattern", "leopard", "snakeskin"))
    add(_phrases(["stripes", "striped", "stripe", "stripey", "pinstripes", "pinstriped", "zebra", "zebra print",
                  "zebra stripes"]), _is("pattern", "stripes"))  # fmt: skip
    add(_phrases(["snakeskin", "snake", "snake skin", "snake print", "python", "reptile", "crocodile", "croc",
                  "alligator", "snakeskin print", "reptile print", "crocodile print"]),
        _is("pattern", "snakeskin"))  # fmt: skip
    add(_phrases(["polka dots", "polka dot", "polka dotted", "dots", "dotted"]), _is("pattern", "polka dots"))
    add(_phrases(["print", "pattern", "patterned", "printed", "prints", "patterns"]), _not("pattern", "solid"))
    add(_phrases(["solid", "solid color", "solid colored", "plain", "no pattern", "no print", "one color"]),
        _is("pattern", "solid"))  # fmt: skip
    # Closure.
    add(_phrases(["laces", "lace up", "lace ups", "laced", "laced up", "lacing", "shoelaces", "shoe laces", "lace",
                  "shoestrings"]), _is("closure", "laces"))  # fmt: skip
    add(_phrases(["buckle", "buckles", "buckled", "ankle buckle"]), _is("closure", "buckle"))
    add(_phrases(["strap", "straps", "strappy", "strappier", "ankle strap", "ankle straps", "t strap", "mary janes",
                  "mary jane"]), _is("closure", "strap"))  # fmt: skip
    add(_phrases(["zipper", "zippers", "zip", "zipped", "zippered", "side zipper", "zip up"]), _is("closure", "zipper"))
    add(_phrases(["velcro", "velcro straps", "velcro strap"]), _is("closure", "velcro"))
    add(_phrases(["slip on", "slip ons", "slip", "slipon", "slipons"]), _is("closure", "slip-on"))
    add(_phrases(["strapless"]), _not("closure", "strap"))
    add(_phrases(["laceless"]), _not("closure", "laces"))
    # Platform (a thick sole).
    add(_phrases(["thicker", "higher", "bigger", "larger", "taller", "chunkier", "heavier"], _SOLE),
        _step("platform", +1))
    add(_phrases(["thinner", "lower", "smaller", "flatter", "slimmer"], _SOLE), _step("platform", -1))
    add(_phrases(["platform", "platforms", "platform sole", "platform soles", "thick sole", "thick soles",
                  "chunky sole", "chunky soles"]), _not("platform", "none"))  # fmt: skip
    add(_phrases(["high platform", "tall platform", "big platform"]), _is("platform", "high"))
    add(_phrases(["no platform", "thin sole", "thin soles", "flat sole", "flat soles"]), _is("platform", "none"))
    # Ornament.
    add(_phrases(["bow", "bows"]), _is("ornament", "bow"))
    add(_phrases(["studs", "studded", "stud", "spikes", "spiked", "rivets", "riveted"]), _is("ornament", "studs"))
    add(_phrases(["rhinestones", "rhinestone", "jewels", "jeweled", "jewel", "gems", "crystals", "sequins",
                  "sequined", "sparkles", "sparkly", "sparkling", "glitter", "glittery", "bling", "stones",
                  "beads", "beaded"]), _is("ornament", "rhinestones"))  # fmt: skip
    add(_phrases(["flower", "flowers"]), _is("ornament", "flower"))
    add(_phrases(["fringe", "fringed", "fringes", "tassels", "tassel"]), _is("ornament", "fringe"))
    add(_phrases(["plainer", "simpler", "no decoration", "no decorations", "no embellishments", "no embellishment",
                  "no ornaments", "less decorated", "less embellished"]), _is("ornament", "none"))  # fmt: skip
    add(_phrases(["embellishment", "embellishments", "embellished", "decorations", "decorated", "decoration",
                  "decorative", "ornaments", "ornament", "ornamented"]), _not("ornament", "none"))  # fmt: skip
    # Recognised but outside the schema: never read as a claim.
    add(_phrases(["open back", "open backs", "open sides", "open side", "open heel", "rubber sole", "rubber soles",
                  "lug sole", "lug soles", "heel strap", "heel straps", "sling back", "slingback", "slingbacks",
                  "back strap", "high back", "low back", "white sole", "white soles", "black sole", "black soles",
                  "brown sole", "brown soles", "red sole", "red soles", "toe strap", "toe straps", "lace material",
                  "flat top", "lining", "linings", "insole", "insoles", "interior", "inside", "closed heel",
                  "closed heels",
                  "closed back", "closed backs", "closed sides", "closed side", "darker accents", "lighter accents",
                  "lower back", "higher back", "higher cut", "lower cut", "buttons", "button", "toe", "toes",
                  "parts", "part", "insets", "inset", "panel", "panels"]),
        _OUTSIDE)  # fmt: skip
    # "same" is handled by parse_caption: a caption that says nothing else is SAME.
    for sequence in lex:
        if tokenize(" ".join(sequence)) != list(sequence):
            raise AssertionError(f"lexicon: {sequence} is not a token sequence")
    return lex


@functools.cache
def _longest() -> int:
    """The length of the longest phrase of the lexicon, in tokens."""
    return max(len(sequence) for sequence in _lexicon())


# Words that carry no claim of their own; never reported as unparsed.
_FUNCTION_WORDS = frozenset(
    """a an the is are was were be it its they them their this that these those has have had having with and or
    nor but also in on of to at for as than more less fewer much slightly bit little lot very really quite
    somewhat some any all both one ones pair shoe shoes color colored colors colour tone toned same identical
    similar exactly essentially basically nearly almost just only mostly mainly not no without isn't aren't doesn't
    don't lacks lacking instead rather vs versus does do too so like looks look over around along style
    version kind type sort overall i want need would prefer""".split()
)
_NEGATORS = frozenset(("no", "not", "without", "isn't", "aren't", "doesn't", "don't", "lacks", "lacking", "nor"))
_BE_WORDS = frozenset(("is", "are", "was", "were"))
_HAVE_WORDS = frozenset(("has", "have", "with", "had"))
# Words that end what a negator or "more"/"less" applies to ("no strap and a higher heel").
_CLAUSE_BREAKS = frozenset(("and", "but", "with", "while", "though"))
_SAME_WORDS = frozenset(("same", "identical", "similar"))
_CATEGORY_HEELS = frozenset((("high", "heel"), ("high", "heels"), ("heels",)))
# A colour said of one of these parts is the part's colour, not the shoe's ("black bows", "a white sole").
_PART_ATTRIBUTES = frozenset(("pattern", "closure", "ornament", "platform", "toe", "accent"))
_PART_WORDS = frozenset(("sole", "soles", "lining", "linings", "insole", "insoles", "interior", "inside", "button",
                         "buttons", "toe", "toes", "parts", "part", "insets", "inset", "panel", "panels"))  # fmt: skip
# "less straps": fewer of a countable thing, not none of it.
_COUNTABLE = frozenset(("closure", "ornament"))


def _match(tokens: tuple[str, ...], i: int) -> tuple[int, _Meaning] | None:
    """The longest lexicon phrase starting at token ``i``: its length and meaning."""
    lex = _lexicon()
    for length in range(min(_longest(), len(tokens) - i), 0, -1):
        meaning = lex.get(tokens[i : i + length])
        if meaning is not None:
            return length, meaning
    return None


def _is_part(tokens: tuple[str, ...], i: int) -> bool:
    """Whether the phrase at token ``i`` names a part of the shoe whose colour is not the shoe's."""
    match = _match(tokens, i)
    if match is None:
        return False
    length, meaning = match
    if not meaning.claims:
        return tokens[i + length - 1] in _PART_WORDS
    return meaning.claims[0].attribute in _PART_ATTRIBUTES


def parse_caption(text: str) -> ParsedCaption:
    """The claims a relative caption makes about the target (see the module docstring).

    Args:
        text: one caption, e.g. ``"are suede instead of leather, with laces"``.

    Returns:
        The :class:`ParsedCaption`.

    >>> [str(c) for c in parse_caption("are suede instead of leather, with laces").claims]
    ['material in {suede}', 'closure in {laces}']
    """
    return _parse(tuple(tokenize(text)))


@functools.lru_cache(maxsize=1 << 15)
def _parse(tokens: tuple[str, ...]) -> ParsedCaption:
    """:func:`parse_caption` of a token sequence (memoised: shoppers repeat themselves)."""
    claims: list[Claim] = []
    unparsed: list[str] = []
    negate = False  # a negator waits for the next phrase
    carry: str | None = None  # the attribute of the last negated claim: "not brown or cream" negates both
    degree = 0  # "more" (+1) or "less" (-1; -2 for "less of a") waits for the next phrase
    context = "be"  # the last verb: "be" (is/are, or none yet) or "have" (has/have/with)
    pending_colors: list[int] = []  # claims[j] of colours joined by "and"/"or" ("black and white")
    said_same = False
    i = 0
    while i < len(tokens):
        word = tokens[i]
        match = _match(tokens, i)
        if match is None:
            if word in ("instead", "rather") and i + 1 < len(tokens) and tokens[i + 1] in ("of", "than"):
                negate, i = True, i + 2
                continue
            if word in _NEGATORS or word in ("vs", "versus"):
                negate = True
            elif word in ("more", "less", "fewer"):
                degree = 1 if word == "more" else -1
                if word == "less" and i + 1 < len(tokens) and tokens[i + 1] == "of":
                    degree = -2  # "less of a boot": not a boot
            elif word in _SAME_WORDS:
                said_same = True
            elif word not in _FUNCTION_WORDS:
                unparsed.append(word)
            if word in _BE_WORDS:
                context = "be"
            elif word in _HAVE_WORDS:
                context = "have"
            if word in _CLAUSE_BREAKS:
                negate, degree = False, 0
            if word not in ("and", "or", "nor"):
                pending_colors = []
            i += 1
            continue
        length, meaning = match
        phrase = tokens[i : i + length]
        if phrase in _CATEGORY_HEELS and context == "be" and degree == 0:
            meaning = _is("category", "high heels")  # "is a high heel", "are heels": the kind of shoe
        elif phrase == ("flat",) and i > 0 and tokens[i - 1] == "a" and context == "be":
            meaning = _is("category", "flats")  # "is a flat"
        if not meaning.claims and meaning.scale is None:
            unparsed.extend(phrase)
        new = _modify(meaning, negate, degree, as_compared=i > 0 and tokens[i - 1] == "as")
        if not negate and carry is not None and i > 0 and tokens[i - 1] in ("and", "or", "nor"):
            if new and new[0].attribute == carry:  # "not brown or cream"
                new = [c for c in (_negated(claim) for claim in new) if c is not None]
        is_color = bool(new) and new[0].attribute == "color" and new[0].relation == "in"
        if is_color and _is_part(tokens, i + length):
            new = new[1:]  # "black bows", "a white sole": the colour of a part
            is_color = False
        if new and new[0].relation == "in" and new[0].attribute == "accent" and pending_colors:
            # "silver and gold accents": the colours before are accents too
            accent_values = set(SHOE_SCHEMA["accent"].values)
            values = set(new[0].values)
            for j in pending_colors:
                values |= {v for v in claims[j].values if v in accent_values}
                claims[j] = SAME  # removed below
            new = [Claim("accent", "in", _values("accent", values)), *new[1:]]
        elif negate and new and new[0].attribute == "color" and claims and claims[-1].attribute == "accent":
            # "blue accents, not pink": the contrast is about the accents
            values = [v for v in new[0].values if v in set(SHOE_SCHEMA["accent"].values)]
            new = [Claim("accent", "not_in", _values("accent", values))] if values else []
        if is_color and pending_colors and tokens[i - 1] in ("and", "or"):
            j = pending_colors[-1]
            claims[j] = Claim("color", "in", _values("color", (*claims[j].values, *new[0].values)))
            new = new[1:]
        elif is_color:
            pending_colors = [len(claims)]
        else:
            pending_colors = []
        claims = [c for c in claims if c != SAME]
        for claim in new:
            if claim not in claims:
                claims.append(claim)
        carry = new[0].attribute if negate and new else None
        negate, degree = False, 0
        i += length
    claims = _simplified(claims)
    if not claims and said_same:
        claims.append(SAME)
    return ParsedCaption(tuple(claims), tuple(unparsed), tokens)


def _simplified(claims: list[Claim]) -> list[Claim]:
    """``claims`` without contradictions and without claims implied by another.

    A negation loses the values asserted beside it ("patent leather, not leather": ``material
    in {patent}``, ``not_in {leather}``); a claim and its negation are both dropped;
    ``pattern not_in {solid}`` beside ``pattern in {floral}`` is dropped as implied.
    """
    # "patent leather, not leather": a negation does not deny what is asserted beside it
    asserted: dict[str, set[str]] = {}
    for claim in claims:
        if claim.relation == "in":
            asserted.setdefault(claim.attribute, set()).update(claim.values)
    narrowed = []
    for claim in claims:
        if claim.relation == "not_in" and set(claim.values) & asserted.get(claim.attribute, set()):
            rest = tuple(v for v in claim.values if v not in asserted[claim.attribute])
            if not rest:
                continue
            claim = Claim(claim.attribute, "not_in", rest)
        narrowed.append(claim)
    claims = narrowed
    kept = []
    for claim in claims:
        if _negated(claim) in claims:
            continue
        implied = claim.relation == "not_in" and any(
            other.attribute == claim.attribute and other.relation == "in" and not set(other.values) & set(claim.values)
            for other in claims
        )
        if not implied:
            kept.append(claim)
    return kept


def _modify(meaning: _Meaning, negate: bool, degree: int, as_compared: bool) -> list[Claim]:
    """The claims of a phrase after a negator and/or "more"/"less" before it.

    ``as_compared``: the phrase follows "as" ("not as tall": the shaft is lower).
    """
    if negate and as_compared and meaning.scale is not None:
        attribute, direction = meaning.scale
        return [Claim(attribute, "less" if direction > 0 else "more")]
    claims = list(meaning.claims)
    if degree in (1, -1) and meaning.scale is not None:
        attribute, direction = meaning.scale
        relation = "more" if direction * degree > 0 else "less"
        claims = [Claim(attribute, relation)]
    elif degree == -1 and claims and claims[0].attribute in _COUNTABLE:
        claims = []  # "less straps": fewer, which the schema cannot say
    elif degree < 0:  # "less pointy", "less of a boot": not that
        claims = [_negated(claim) for claim in claims]
    if negate:
        claims = [_negated(claim) for claim in claims]
    return [claim for claim in claims if claim is not None]  # type: ignore[misc]


def _negated(claim: Claim | None) -> Claim | None:
    """``not claim`` where the relations can say it (``in`` <-> ``not_in``); ``None`` otherwise.

    "not darker" does not mean "lighter" (it may be the same): a negated comparison is dropped.
    """
    if claim is None or claim.relation not in ("in", "not_in"):
        return None
    values = claim.values
    if claim.relation == "in":
        return Claim(claim.attribute, "not_in", values)
    return Claim(claim.attribute, "in", values)


# ------------------------------------------------------------------------------------------ truth
@functools.cache
def claim_table(claim: Claim) -> tuple[tuple[bool, ...], ...]:
    """Whether ``claim`` holds for each pair of codes of its attribute.

    Returns:
        ``table[t][s]``: the claim holds when the target's code is ``t`` and the shown image's
        ``s`` (``V x V`` for an attribute of ``V`` values).

    Raises:
        ValueError: :data:`SAME` (it depends on every attribute) or an unknown attribute/relation.
    """
    if claim.attribute not in ATTRIBUTE_NAMES:
        raise ValueError(f"claim {claim} is not about one shoe attribute")
    schema = SHOE_SCHEMA[claim.attribute]
    values = schema.values
    size = len(values)
    if claim.relation in ("more", "less"):
        if not schema.ordinal:
            raise ValueError(f"claim {claim}: {claim.attribute} is not ordinal")
        sign = 1 if claim.relation == "more" else -1
        return tuple(tuple(sign * (t - s) > 0 for s in range(size)) for t in range(size))
    if claim.relation in ("in", "not_in"):
        inside = claim.relation == "in"
        return tuple(tuple((values[t] in claim.values) == inside for _ in range(size)) for t in range(size))
    raise ValueError(f"claim {claim}: unknown relation {claim.relation!r}")


def claim_holds(claim: Claim, target_codes: Sequence[int], shown_codes: Sequence[int]) -> bool:
    """Whether ``claim`` is true of a target and a shown image.

    Args:
        claim: a claim of :func:`parse_caption`.
        target_codes: the target's ``A`` shoe-attribute codes (schema column order).
        shown_codes: the shown image's codes.
    """
    if claim == SAME:
        return list(target_codes) == list(shown_codes)
    column = ATTRIBUTE_NAMES.index(claim.attribute)
    return claim_table(claim)[int(target_codes[column])][int(shown_codes[column])]
