"""The rich phrase grammar: more of the ways real shoppers say things (``RuleBasedUser(phrasing="rich")``).

The basic grammar (:mod:`dialog_env.domain.phrases`) says each difference in a few canonical forms.
Real shoppers use many more words for the same statement: colour names ("cream", "burgundy"),
synonyms ("a bigger heel", "glossier", "lace up"), degrees ("slightly darker", "a bit higher"),
and remarks about things a shoe catalogue has no attribute for ("is more casual", "has a
different back"). This module adds them, in our own words, guided by measured facts about the
Shoes relative captions (which words are frequent, how long captions are), never by copying them:

- :func:`rich_difference_options`: the basic ways to say a difference plus the rich ones, each
  still true of the pair;
- :data:`HEDGES`: degree words put before a comparative ("slightly darker");
- :data:`OUTSIDE_REMARKS`: clauses about what the schema cannot say (sole texture, back, style),
  which carry no claim about the catalogue's attributes, as a real shopper's often do;
- :func:`rich_caption_words`: every word the rich grammar can say.

Every choice is made by a uniform number passed in by the caller, as in the basic grammar.
"""

from __future__ import annotations

import functools

from dialog_env.domain.phrases import (
    Phrase,
    adjective,
    caption_words,
    cumulative_weights,
    difference_phrases,
    noun_phrase,
)
from dialog_env.domain.schema import ATTRIBUTE_NAMES, SHOE_SCHEMA
from dialog_env.text import tokenize

__all__ = [
    "HEDGES",
    "OUTSIDE_REMARKS",
    "RICH_CONNECTORS",
    "choose_remark",
    "pick_hedge",
    "hedged",
    "rich_difference_options",
    "rich_caption_words",
]

# Other names shoppers use for each colour of the schema (each also a fair name for it).
_COLOR_NAMES = {
    "black": ("all black",), "brown": ("chocolate", "cognac", "chocolate brown"),
    "white": ("off white", "bright white"), "red": ("burgundy", "maroon", "wine", "brick red"),
    "blue": ("royal blue", "baby blue", "sky blue", "turquoise", "teal", "denim"),
    "pink": ("fuchsia", "hot pink", "rose", "coral", "magenta"), "gray": ("grey", "slate"),
    "green": ("olive", "lime", "emerald", "olive green"), "tan": ("camel", "khaki", "natural"),
    "gold": ("golden", "bronze"), "silver": ("pewter", "silvery"),
    "purple": ("lilac", "lavender", "plum", "violet"),
    "beige": ("cream", "ivory", "nude", "taupe", "sand", "bone", "champagne"),
    "yellow": ("bright yellow",), "orange": ("rust", "copper", "peach"), "navy": ("navy blue",),
}  # fmt: skip
_MATERIAL_NAMES = {
    "leather": ("smooth leather", "soft leather"), "suede": ("sueded", "soft suede"),
    "patent": ("glossy leather", "shiny patent"), "satin": ("silk", "silky"), "canvas": ("fabric", "cloth"),
    "rubber": ("plastic", "all rubber"), "fur": ("furry", "fuzzy", "fleece lined", "sheepskin"),
    "mesh": ("mesh fabric", "breathable mesh"),
}  # fmt: skip
_PATTERN_NAMES = {
    "floral": ("a flowery print", "a flower print", "flowery"), "plaid": ("checkered", "a checkered pattern", "tartan"),
    "leopard": ("a cheetah print", "an animal print", "spots"), "stripes": ("a stripe", "zebra stripes"),
    "snakeskin": ("a snake print", "a reptile print", "crocodile"), "polka dots": ("dots", "dotted"),
    "solid": ("one color", "a solid color", "no design"),
}  # fmt: skip
_CLOSURE_NAMES = {
    "laces": ("lace up", "shoelaces", "laced"), "buckle": ("buckles", "a buckle closure", "an ankle buckle"),
    "strap": ("an ankle strap", "a t strap", "more straps"), "zipper": ("a zip", "zippers", "a zip up"),
    "velcro": ("velcro closures",), "slip-on": ("slip ons", "no closure"),
}  # fmt: skip
_ORNAMENT_NAMES = {
    "bow": ("bows", "a little bow"), "studs": ("studded", "spikes", "rivets"),
    "rhinestones": ("jewels", "sparkles", "sequins", "glitter", "crystals", "beads"), "flower": ("flowers",),
    "fringe": ("tassels", "fringed"), "none": ("no decoration", "no embellishments", "less decoration"),
}  # fmt: skip
_CATEGORY_NAMES = {
    "boots": (Phrase("cat", "more of a boot", "more of a boot"), Phrase("cat", "a cowboy boot", "cowboy boots"),
              Phrase("cat", "a western boot", "western boots"), Phrase("cat", "a hiking boot", "hiking boots")),
    "sneakers": (Phrase("cat", "a sneaker", "sneakers"), Phrase("cat", "more of a sneaker", "more of a sneaker")),
    "athletic shoes": (
        adjective("sporty"), adjective("more athletic"), Phrase("cat", "a running shoe", "running shoes"),
        Phrase("cat", "a tennis shoe", "tennis shoes"), Phrase("cat", "a trainer", "trainers"),
    ),
    "clogs": (Phrase("cat", "a mule", "mules"),),
    "high heels": (Phrase("cat", "a heel", "heels"),),
    "flats": (Phrase("cat", "a ballet flat", "ballet flats"),),
    "pumps": (Phrase("cat", "a dress shoe", "dress shoes"),),
    "wedding shoes": (adjective("dressier"), adjective("more formal"), Phrase("cat", "a bridal shoe", "bridal shoes")),
    "rain boots": (Phrase("cat", "a rubber boot", "rubber boots"), Phrase("cat", "a galosh", "galoshes")),
    "stilettos": (Phrase("cat", "a stiletto heel", "stiletto heels"),),
}  # fmt: skip

#: Degree words that may precede a comparative ("slightly darker", "a bit higher heel").
HEDGES: tuple[str, ...] = ("slightly", "a bit", "a little", "a little bit")

#: Remarks about what the shoe schema has no attribute for: ``(role, singular, plural)`` texts.
OUTSIDE_REMARKS: tuple[Phrase, ...] = tuple(
    [noun_phrase(text) for text in (
        "a different back", "an open back", "a closed back", "a higher back", "holes on the sides",
        "a cutout on the side", "cutouts", "a cuff at the top", "a wider opening", "elastic panels",
        "an elastic band", "a logo on the side", "a bigger logo", "a rubber sole", "a cork sole", "a textured sole",
        "a softer upper", "a quilted upper", "a woven upper", "more coverage", "less coverage", "a slingback",
        "a different shape", "a sleeker shape", "ruffles", "buttons", "a tongue", "eyelets", "a chain", "a ring",
        "a tab at the back", "vents", "a thicker tread", "a waffle sole", "a bigger opening", "more lining",
        "a lining", "a wider toe box", "a narrower fit", "a panel on the side", "a cap toe", "a thick cuff",
        "a bit more design", "less design", "more designs", "a padded collar", "a longer tongue",
        "a wider band", "a thinner band", "more cutouts", "bigger holes", "perforations", "a scalloped edge",
        "a pleated front", "a knot", "a lower back", "a seam down the front", "a gum sole", "a lug sole",
        "a thicker lining", "a softer lining", "a side panel", "a wider front", "more texture", "a smoother finish",
        "a different texture", "a different color sole", "a contrasting sole", "a clear sole", "a lucite sole",
        "softer uppers", "a different vamp", "a cutout in the middle", "more coverage over the instep",
        "more support at the ankle", "more coverage of the foot", "a grippy bottom",
    )]
    + [adjective(text) for text in (
        "more casual", "less casual", "more formal", "sportier", "more rugged", "more textured", "smoother",
        "softer", "sleeker", "slouchy", "slouchier", "more elaborate", "busier", "more colorful", "multi colored",
        "two toned", "waterproof", "wider", "narrower", "more modern", "more simple", "fancier",
        "curvier", "sturdier", "more western", "more of a sandal", "more open", "more covered", "lower cut",
        "higher cut", "more tapered", "more padded", "bulkier", "heavier", "classier", "cuter", "prettier", "edgier",
        "more feminine", "more practical", "more vintage", "more classic", "retro", "trendier", "roomier", "tighter",
        "looser", "sturdy", "more flexible", "more stylish", "more professional", "more of a slide", "more of a loafer",
        "more like a sandal",
    )]
)  # fmt: skip


def hedged(phrase: Phrase, hedge: str) -> Phrase:
    """``phrase`` with a degree word before its comparative.

    "darker" -> "slightly darker", "a higher heel" -> "a slightly higher heel".
    """
    return phrase._replace(singular=_hedge_text(phrase.singular, hedge), plural=_hedge_text(phrase.plural, hedge))


def _hedge_text(text: str, hedge: str) -> str:
    words = text.split(" ")
    if words[0] in ("a", "an"):
        return " ".join(["a", hedge.removeprefix("a "), *words[1:]]) if hedge.startswith("a ") else " ".join(
            ["a", hedge, *words[1:]]
        )
    return f"{hedge} {text}"


_COMPARATIVES = frozenset(
    """higher lower taller shorter darker lighter shinier duller thicker thinner chunkier pointier rounder bigger
    larger smaller longer wider skinnier sharper flatter paler brighter glossier deeper more less""".split()
)


def _is_comparative(phrase: Phrase) -> bool:
    """Whether a phrase says a comparative that a degree word may soften ("darker", "a higher heel")."""
    words = phrase.singular.split(" ")
    first = words[1] if words[0] in ("a", "an") and len(words) > 1 else words[0]
    return first in _COMPARATIVES


@functools.cache
def rich_difference_options(
    attribute: str, target: str, shown: str, target_lightness: str
) -> tuple[tuple[Phrase, ...], list[float], tuple[bool, ...]]:
    """The basic and the rich ways to say that the target's ``attribute`` is ``target``, the shown image's ``shown``.

    Args:
        attribute: a shoe attribute name.
        target: the target's value.
        shown: the shown image's value (different from ``target``).
        target_lightness: the target's lightness.

    Returns:
        ``(options, cumulative weights, hedgeable)``: the phrases, their running weight sums for
        :func:`~dialog_env.domain.phrases.choose_phrase`, and whether each is a comparative that
        a :data:`HEDGES` word may precede.
    """
    base = list(difference_phrases(attribute, target, shown, target_lightness))
    values = SHOE_SCHEMA[attribute].values
    step = values.index(target) - values.index(shown)
    extra: list[Phrase] = []
    if attribute == "category":
        extra += _CATEGORY_NAMES.get(target, ())
    elif attribute == "color":
        extra += [adjective(name) for name in _COLOR_NAMES[target]]
        extra += [adjective(f"all {target}", 0.4), adjective(f"mostly {target}", 0.4), adjective(f"more {target}", 0.4)]
    elif attribute == "lightness":
        extra += [adjective("paler"), adjective("a lighter shade")] if step > 0 else [adjective("a darker shade")]
        extra += [adjective("brighter")] if step > 0 else [adjective("deeper in color")]
    elif attribute == "accent":
        if target == "none":
            extra += [noun_phrase("no trim"), noun_phrase("no contrast"), noun_phrase("no detailing")]
        else:
            extra += [noun_phrase(f"{target} {noun}") for noun in ("details", "stitching", "edging", "piping")]
            extra += [adjective(f"{target} accented")]
    elif attribute == "heel_height":
        if target == "flat":
            extra += [adjective("flatter"), noun_phrase("no heel at all")]
        elif step > 0:
            extra += [noun_phrase("a bigger heel"), noun_phrase("a larger heel"), adjective("higher heeled")]
        else:
            extra += [noun_phrase("a smaller heel"), adjective("lower heeled"), adjective("flatter")]
    elif attribute == "heel_shape":
        extra += {
            "stiletto": [noun_phrase("a thin heel"), noun_phrase("a skinnier heel"), noun_phrase("a spike heel")],
            "block": [noun_phrase("a stacked heel"), noun_phrase("a wider heel")],
            "chunky": [noun_phrase("a chunky heel"), noun_phrase("a thick heel"), noun_phrase("a wider heel")],
            "wedge": [noun_phrase("a wedged heel"), Phrase("cat", "a wedge", "wedges")],
            "flat": [],
        }[target]
    elif attribute == "toe":
        extra += {
            "pointed": [noun_phrase("a sharper toe"), noun_phrase("a more pointed toe")],
            "round": [noun_phrase("a rounded toe"), noun_phrase("a more rounded toe")],
            "square": [noun_phrase("a squared toe"), noun_phrase("a blunt toe")],
            "open": [noun_phrase("open toes"), adjective("peep toed")],
        }[target]
        if shown == "open":
            extra += [noun_phrase("a covered toe"), adjective("closed")]
    elif attribute == "shaft":
        if step > 0:
            extra += [noun_phrase("a longer shaft"), adjective("higher on the ankle"), adjective("higher on the leg")]
        else:
            extra += [adjective("lower on the ankle"), noun_phrase("a lower shaft")]
    elif attribute == "material":
        extra += [adjective(name) for name in _MATERIAL_NAMES[target]]
    elif attribute == "shine":
        extra += (
            [adjective("glossy"), adjective("shinier looking"), noun_phrase("more shine")]
            if step > 0
            else [adjective("not as shiny"), noun_phrase("less shine"), adjective("dull")]
        )
    elif attribute == "pattern":
        extra += [noun_phrase(text) if text.startswith(("a ", "an ", "no ", "dots", "spots", "flowers", "one")) else
                  adjective(text) for text in _PATTERN_NAMES[target]]  # fmt: skip
    elif attribute == "closure":
        extra += [noun_phrase(text) if " " in text and not text.startswith("lace") else adjective(text)
                  for text in _CLOSURE_NAMES[target]]  # fmt: skip
    elif attribute == "platform":
        if target == "none":
            extra += [noun_phrase("a flat sole"), noun_phrase("a thin sole")]
        elif step > 0:
            extra += [noun_phrase("a chunkier sole"), noun_phrase("thicker soles"), noun_phrase("a bigger platform")]
        else:
            extra += [noun_phrase("a flatter sole"), noun_phrase("thinner soles")]
    elif attribute == "ornament":
        extra += [adjective(text) if text.endswith("ed") else noun_phrase(text) for text in _ORNAMENT_NAMES[target]]
    options = tuple(base + extra)
    return options, cumulative_weights(options), tuple(_is_comparative(p) for p in options)


def rich_caption_words() -> set[str]:
    """Every word a caption of the rich grammar can contain (the basic grammar's included)."""
    words = set(caption_words())
    texts: list[str] = []
    for name in ATTRIBUTE_NAMES:
        values = SHOE_SCHEMA[name].values
        for target in values:
            for shown in values:
                if shown == target:
                    continue
                for lightness in SHOE_SCHEMA["lightness"].values:
                    for phrase in rich_difference_options(name, target, shown, lightness)[0]:
                        texts += [phrase.singular, phrase.plural]
    texts += [p.singular for p in OUTSIDE_REMARKS] + list(HEDGES) + list(_CONNECTOR_WORDS)
    for text in texts:
        words.update(tokenize(text))
    return words


#: Extra connectors of the rich grammar: (connector before a clause, by role).
RICH_CONNECTORS = {
    "adj": (" and {be} ", " and ", ", ", " but {be} ", ", and {be} ", ", but "),
    "cat": (" and {be} ", ", and {be} "),
    "np": (" with ", ", with ", " and {have} ", " but {have} ", ", and {have} ", " and "),
}
_CONNECTOR_WORDS = ("but", "and")


def choose_remark(uniform: float) -> Phrase:
    """The :data:`OUTSIDE_REMARKS` entry that ``uniform`` in ``[0, 1)`` picks."""
    return OUTSIDE_REMARKS[min(int(uniform * len(OUTSIDE_REMARKS)), len(OUTSIDE_REMARKS) - 1)]


def pick_hedge(uniform: float) -> str:
    """The :data:`HEDGES` word that ``uniform`` in ``[0, 1)`` picks."""
    return HEDGES[min(int(uniform * len(HEDGES)), len(HEDGES) - 1)]
