"""The phrase grammar: how shoppers say what a shoe is, and how it differs from another.

A caption is a few :class:`Phrase` objects joined by :func:`render_caption`: a first clause led by
"is"/"are" (an adjective or a category) or "has"/"have" (a noun phrase), then more clauses after
connectors (" and ", ", with ", ...): ``"is black and has a higher heel, with laces"``. The words
and sentence shapes are those that real shoppers use in the Shoes relative captions.

- :func:`difference_phrases`: the ways to say that the target's attribute has one value where the
  shown image's has another ("is darker", "has a higher heel", "are suede instead of leather").
- :func:`absolute_phrases`: the ways to say that an image has a value, with no comparison ("is
  black", "has laces"), for remarks about one image.
- :data:`SAME_CAPTIONS` and :data:`VAGUE_CAPTIONS`: what is said when nothing differs, or vaguely.

Every choice among variants is made by a uniform number in ``[0, 1)`` passed in by the caller, so
that this module draws no random numbers itself.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from dialog_env.domain.schema import ATTRIBUTE_NAMES, SHOE_CATEGORIES, SHOE_SCHEMA
from dialog_env.text import tokenize

__all__ = [
    "Phrase",
    "adjective",
    "noun_phrase",
    "cumulative_weights",
    "choose_phrase",
    "difference_phrases",
    "difference_options",
    "absolute_phrases",
    "SAME_CAPTIONS",
    "VAGUE_CAPTIONS",
    "same_caption",
    "vague_caption",
    "render_caption",
    "caption_words",
]


class Phrase(NamedTuple):
    """One way to say a statement about the target.

    Attributes:
        role: ``"adj"`` (said after is/are), ``"np"`` (a noun phrase, after has/have or with) or
            ``"cat"`` (a category noun phrase, after is/are).
        singular: the text when the caption speaks of one shoe ("is black").
        plural: the text when it speaks of the pair ("are black"); for most phrases the same.
        weight: how often it is chosen relative to the other ways of saying the same statement.
    """

    role: str
    singular: str
    plural: str
    weight: float = 1.0


def adjective(text: str, weight: float = 1.0) -> Phrase:
    """An ``"adj"`` phrase, the same in singular and plural ("is black", "are black")."""
    return Phrase("adj", text, text, weight)


def noun_phrase(text: str, weight: float = 1.0) -> Phrase:
    """An ``"np"`` phrase, the same in singular and plural ("has laces", "have laces")."""
    return Phrase("np", text, text, weight)


# Real shoppers rarely spell out the contrast ("instead of", "made of"): such forms are kept rare.
_RARE = 0.12


def cumulative_weights(options: Sequence[Phrase]) -> list[float]:
    """The running sums of the options' weights, as :func:`choose_phrase` takes them."""
    return list(itertools.accumulate(option.weight for option in options))


def choose_phrase(options: Sequence[Phrase], cumulative: Sequence[float], uniform: float) -> Phrase:
    """The option that ``uniform`` selects, in proportion to the options' weights.

    Args:
        options: the ways to say one statement.
        cumulative: :func:`cumulative_weights` of ``options``.
        uniform: a number in ``[0, 1)``.

    Returns:
        One of ``options``.
    """
    return options[min(bisect.bisect_right(cumulative, uniform * cumulative[-1]), len(options) - 1)]


#: What a shopper says when nothing perceptible differs, indexed by plural (``False``: one shoe).
SAME_CAPTIONS: tuple[tuple[str, ...], tuple[str, ...]] = (
    ("is the same", "is identical", "is the same shoe"),
    ("are the same", "are identical", "are the same shoes"),
)
#: A vague remark instead of a caption, indexed by plural.
VAGUE_CAPTIONS: tuple[tuple[str, ...], tuple[str, ...]] = (
    ("is a different style", "has a different design", "is different", "has a different look"),
    ("are a different style", "have a different design", "are different", "have a different look"),
)
# Connectors before a clause, by the clause's role: "{be}"/"{have}" are filled by number.
_CONNECTORS = {
    "adj": (" and {be} ", " and ", ", "),
    "cat": (" and {be} ",),
    "np": (" with ", ", with ", " and {have} "),
}
_FIRST = {"adj": "{be} ", "cat": "{be} ", "np": "{have} "}


def same_caption(plural: bool, uniform: float) -> str:
    """What a shopper says when nothing perceptible differs ("is the same", "are identical").

    Args:
        plural: speak of the pair rather than one shoe.
        uniform: a number in ``[0, 1)`` that picks the variant.
    """
    options = SAME_CAPTIONS[plural]
    return options[int(uniform * len(options))]


def vague_caption(plural: bool, uniform: float) -> str:
    """A vague remark ("is a different style"); arguments as for :func:`same_caption`."""
    options = VAGUE_CAPTIONS[plural]
    return options[int(uniform * len(options))]


_CATEGORY_SINGULAR = {
    "clogs": "a clog", "boots": "a boot", "athletic shoes": "an athletic shoe", "stilettos": "a stiletto",
    "high heels": "a high heel", "flats": "a flat", "pumps": "a pump", "wedding shoes": "a dressy shoe",
    "rain boots": "a rain boot", "sneakers": "a sneaker",
}  # fmt: skip
# Shoppers call wedding shoes dressy shoes; other categories by their name.
_CATEGORY_PLURAL = {category: category for category in SHOE_CATEGORIES} | {"wedding shoes": "dressy shoes"}
_MATERIAL_ADJ = {
    "leather": "leather", "suede": "suede", "patent": "patent leather", "satin": "satin", "canvas": "canvas",
    "rubber": "rubber", "fur": "fur", "mesh": "mesh",
}  # fmt: skip
_PATTERN_PHRASES = {
    "floral": (noun_phrase("a floral print"), noun_phrase("a floral pattern"), adjective("floral")),
    "plaid": (noun_phrase("a plaid pattern"), adjective("plaid")),
    "leopard": (noun_phrase("a leopard print"), adjective("leopard print")),
    "stripes": (noun_phrase("stripes"), adjective("striped")),
    "snakeskin": (noun_phrase("a snakeskin print"), adjective("snakeskin")),
    "polka dots": (noun_phrase("polka dots"),),
}
_CLOSURE_NP = {
    "laces": ("laces",), "buckle": ("a buckle", "buckles"), "strap": ("a strap", "straps"),
    "zipper": ("a zipper", "a side zipper"), "velcro": ("velcro", "velcro straps"),
}  # fmt: skip
_CLOSURE_NO = {
    "laces": "no laces", "buckle": "no buckle", "strap": "no strap", "zipper": "no zipper", "velcro": "no velcro",
}  # fmt: skip
_ORNAMENT_NP = {
    "bow": ("a bow",), "studs": ("studs",), "rhinestones": ("rhinestones",), "flower": ("a flower",),
    "fringe": ("fringe",),
}  # fmt: skip
_HEEL_THICKNESS = {"stiletto": 1, "block": 2, "chunky": 3}

# Category names are part of the schema; make sure every one has a singular form.
assert set(_CATEGORY_SINGULAR) == set(SHOE_CATEGORIES)


def _comparative(step: int, more: Sequence[Phrase], less: Sequence[Phrase], much: bool) -> list[Phrase]:
    """The ``more`` phrases for a step up the scale, the ``less`` ones for a step down."""
    phrases = list(more if step > 0 else less)
    if much:  # a big ordinal step: also the emphatic form of each phrase ("a much higher heel")
        phrases += [p._replace(singular=_emphasise(p.singular), plural=_emphasise(p.plural)) for p in phrases]
    return phrases


def _emphasise(text: str) -> str:
    """``"a higher heel"`` -> ``"a much higher heel"``, ``"shorter"`` -> ``"much shorter"``."""
    words = text.split(" ")
    if words[0] == "a":
        return " ".join(["a", "much", *words[1:]])
    return " ".join(["much", *words])


@functools.cache
def difference_phrases(attribute: str, target: str, shown: str, target_lightness: str) -> tuple[Phrase, ...]:
    """The ways to say that the target's ``attribute`` is ``target`` where the shown image's is ``shown``.

    Args:
        attribute: a shoe attribute name.
        target: the target's value.
        shown: the shown image's value (different from ``target``).
        target_lightness: the target's lightness, which a colour phrase may say ("dark blue").

    Returns:
        One or more phrases, to be chosen among in proportion to their weights.
    """
    values = SHOE_SCHEMA[attribute].values
    step = values.index(target) - values.index(shown)
    much = abs(step) >= 2
    if attribute == "category":
        return (
            Phrase("cat", _CATEGORY_SINGULAR[target], _CATEGORY_PLURAL[target]),
            Phrase(
                "cat",
                f"{_CATEGORY_SINGULAR[target]} instead of {_CATEGORY_SINGULAR[shown]}",
                f"{_CATEGORY_PLURAL[target]} instead of {_CATEGORY_PLURAL[shown]}",
                _RARE,
            ),
        )
    if attribute == "color":
        shade = {"dark": "dark ", "light": "light ", "medium": ""}[target_lightness]
        if target in ("black", "white", "silver", "gold", "navy"):
            shade = ""
        return (
            adjective(target, 3.0),
            adjective(f"{shade}{target}"),
            adjective(f"{target}, not {shown}", 0.3),
            adjective(f"{target} instead of {shown}", _RARE),
            adjective(f"{target} in color", 0.3),
            adjective(f"{target} colored", 0.3),
        )
    if attribute == "lightness":
        lighter = [adjective("lighter", 3.0), adjective("lighter in color")]
        darker = [adjective("darker", 3.0), adjective("darker in color")]
        return tuple(_comparative(step, lighter, darker, False))
    if attribute == "accent":
        if target == "none":
            return (noun_phrase("no accents"), noun_phrase(f"no {shown} accents"), noun_phrase(f"no {shown} trim"))
        return (noun_phrase(f"{target} accents"), noun_phrase(f"{target} trim"))
    if attribute == "heel_height":
        if target == "flat":
            return (adjective("flat"), noun_phrase("no heel"))
        higher = [noun_phrase("a higher heel"), noun_phrase("a taller heel")]
        lower = [noun_phrase("a lower heel"), noun_phrase("a shorter heel")]
        phrases = _comparative(step, higher, lower, much)
        if shown == "flat":
            phrases += [noun_phrase("a heel"), adjective("heeled")]
        return tuple(phrases)
    if attribute == "heel_shape":
        if target == "wedge":
            phrases = [noun_phrase("a wedge heel"), noun_phrase("a wedge")]
        else:
            phrases = [noun_phrase(f"a {target} heel")]
        if target in _HEEL_THICKNESS and shown in _HEEL_THICKNESS:
            if _HEEL_THICKNESS[target] > _HEEL_THICKNESS[shown]:
                phrases += [noun_phrase("a thicker heel"), noun_phrase("a chunkier heel")]
            else:
                phrases += [noun_phrase("a thinner heel")]
        return tuple(phrases)
    if attribute == "toe":
        if target == "open":
            return (noun_phrase("an open toe"), adjective("open toed"), noun_phrase("a peep toe"))
        phrases = [noun_phrase("a closed toe"), adjective("closed toed")] if shown == "open" else []
        if target == "pointed":
            phrases += [noun_phrase("a pointed toe"), adjective("pointy")]
            phrases += [noun_phrase("a pointier toe")] if shown != "open" else []
        elif target == "round":
            phrases += [noun_phrase("a round toe"), adjective("round toed")]
            phrases += [noun_phrase("a rounder toe")] if shown != "open" else []
        else:
            phrases += [noun_phrase("a square toe"), adjective("square toed")]
        return tuple(phrases)
    if attribute == "shaft":
        phrases = _comparative(
            step,
            [
                noun_phrase("a taller shaft"),
                noun_phrase("a higher shaft"),
                adjective("taller"),
                noun_phrase("a higher top"),
            ],
            [noun_phrase("a shorter shaft"), adjective("shorter"), noun_phrase("a lower top")],
            much,
        )
        if target == "knee":
            phrases += [adjective("knee high")]
        elif target == "ankle":
            phrases += [adjective("ankle high")]
        return tuple(phrases)
    if attribute == "material":
        if target == "fur":
            return (noun_phrase("fur"), noun_phrase("fur lining"))
        word = _MATERIAL_ADJ[target]
        return (
            adjective(word, 3.0),
            adjective(f"{word} instead of {_MATERIAL_ADJ[shown]}", _RARE),
            adjective(f"{word}, not {_MATERIAL_ADJ[shown]}", 0.3),
            adjective(f"made of {word}", _RARE),
        )
    if attribute == "shine":
        if step > 0:
            return (adjective("shinier"), adjective("more shiny"), *([adjective("shiny")] if target == "shiny" else []))
        duller = (adjective("less shiny"), adjective("more matte"), adjective("duller"))
        return (*duller, *([adjective("matte")] if target == "matte" else []))
    if attribute == "pattern":
        if target == "solid":
            return (adjective("solid"), adjective("plain"), noun_phrase("no pattern"), noun_phrase("no print"))
        return _PATTERN_PHRASES[target]
    if attribute == "closure":
        if target == "slip-on":
            return (adjective("slip on"), noun_phrase(_CLOSURE_NO[shown]))
        phrases = [noun_phrase(text) for text in _CLOSURE_NP[target]]
        if shown != "slip-on":
            phrases += [noun_phrase(f"{_CLOSURE_NP[target][0]} instead of {_CLOSURE_NP[shown][0]}", _RARE)]
        if target == "strap":
            phrases += [adjective("strappy")]
        return tuple(phrases)
    if attribute == "platform":
        if target == "none":
            return (noun_phrase("no platform"), noun_phrase("a thinner sole"))
        thicker = [noun_phrase("a thicker sole"), noun_phrase("a higher platform")]
        thinner = [noun_phrase("a thinner sole"), noun_phrase("a lower platform")]
        phrases = _comparative(step, thicker, thinner, False)
        if shown == "none":
            phrases += [noun_phrase("a platform"), noun_phrase("a platform sole")]
        return tuple(phrases)
    if attribute == "ornament":
        if target == "none":
            return (noun_phrase(f"no {_ORNAMENT_NP[shown][0].removeprefix('a ')}"), adjective("plainer"))
        return tuple(noun_phrase(text) for text in _ORNAMENT_NP[target])
    raise AssertionError(f"no phrases for attribute {attribute!r}")


@functools.cache
def difference_options(
    attribute: str, target: str, shown: str, target_lightness: str
) -> tuple[tuple[Phrase, ...], list[float]]:
    """:func:`difference_phrases` with their :func:`cumulative_weights`, for :func:`choose_phrase`."""
    options = difference_phrases(attribute, target, shown, target_lightness)
    return options, cumulative_weights(options)


@functools.cache
def absolute_phrases(attribute: str, value: str) -> tuple[Phrase, ...]:
    """The ways to say that an image's ``attribute`` is ``value``, with no comparison.

    Args:
        attribute: a shoe attribute name.
        value: one of its values.

    Returns:
        The phrases; empty when the value is unremarkable (a medium lightness, a low shaft).
    """
    if attribute == "category":
        return (Phrase("cat", _CATEGORY_SINGULAR[value], _CATEGORY_PLURAL[value]),)
    if attribute == "color":
        return (adjective(value),)
    if attribute == "lightness":
        return () if value == "medium" else (adjective(value),)
    if attribute == "accent":
        return (noun_phrase("no accents"),) if value == "none" else (noun_phrase(f"{value} accents"),)
    if attribute == "heel_height":
        return {
            "flat": (adjective("flat"),), "low": (noun_phrase("a low heel"),),
            "medium": (noun_phrase("a medium heel"),), "high": (noun_phrase("a high heel"),),
            "very high": (noun_phrase("a very high heel"),),
        }[value]  # fmt: skip
    if attribute == "heel_shape":
        return (noun_phrase("no heel"),) if value == "flat" else (noun_phrase(f"a {value} heel"),)
    if attribute == "toe":
        return {
            "round": (noun_phrase("a round toe"),), "pointed": (noun_phrase("a pointed toe"),),
            "open": (noun_phrase("an open toe"),), "square": (noun_phrase("a square toe"),),
        }[value]  # fmt: skip
    if attribute == "shaft":
        return {
            "low": (), "ankle": (adjective("ankle high"),), "mid-calf": (noun_phrase("a mid calf shaft"),),
            "knee": (adjective("knee high"),),
        }[value]  # fmt: skip
    if attribute == "material":
        return (noun_phrase("fur"),) if value == "fur" else (adjective(_MATERIAL_ADJ[value]),)
    if attribute == "shine":
        return {
            "matte": (adjective("matte"),), "semi-shiny": (adjective("slightly shiny"),),
            "shiny": (adjective("shiny"),),
        }[value]  # fmt: skip
    if attribute == "pattern":
        return (adjective("solid"),) if value == "solid" else _PATTERN_PHRASES[value][:1]
    if attribute == "closure":
        return (adjective("slip on"),) if value == "slip-on" else (noun_phrase(_CLOSURE_NP[value][0]),)
    if attribute == "platform":
        return {
            "none": (noun_phrase("no platform"),), "low": (noun_phrase("a platform"),),
            "high": (noun_phrase("a high platform"),),
        }[value]  # fmt: skip
    if attribute == "ornament":
        return (adjective("plain"),) if value == "none" else (noun_phrase(_ORNAMENT_NP[value][0]),)
    raise AssertionError(f"no phrases for attribute {attribute!r}")


def render_caption(
    phrases: Sequence[Phrase],
    plural: bool,
    connector_uniforms: Sequence[float],
    connectors: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """Join phrases into one caption: ``"is black and has a higher heel, with laces"``.

    Args:
        phrases: the clauses, in the order they are said (a category phrase is moved to the front).
        plural: speak of the pair ("are", "have") rather than one shoe ("is", "has").
        connector_uniforms: numbers in ``[0, 1)``; entry ``i`` picks the connector before clause
            ``i`` (entry 0 is not used), so at least ``len(phrases)`` of them.
        connectors: role -> connector texts (the first of each role is the one used after a
            clause of another role: "has laces and is black"); ``None``: this grammar's.

    Returns:
        The caption.
    """
    be, have = ("are", "have") if plural else ("is", "has")
    # A category noun phrase reads best first ("are boots with laces"): move it to the front.
    phrases = sorted(phrases, key=lambda p: p.role != "cat")
    parts = []
    for index, phrase in enumerate(phrases):
        text = phrase.plural if plural else phrase.singular
        if index == 0:
            lead = _FIRST[phrase.role]
        else:
            options = (connectors or _CONNECTORS)[phrase.role]
            if phrase.role == "adj" and phrases[index - 1].role != "adj":
                options = options[:1]  # "has laces and is black", not "has laces, black"
            lead = options[int(connector_uniforms[index] * len(options))]
        parts.append(lead.format(be=be, have=have) + text)
    return "".join(parts)


def caption_words() -> set[str]:
    """Every word that a caption built from this grammar can contain (tokenized, lower case)."""
    words: set[str] = set()
    texts: list[str] = []
    for name in ATTRIBUTE_NAMES:
        values = SHOE_SCHEMA[name].values
        for target in values:
            for phrase in absolute_phrases(name, target):
                texts += [phrase.singular, phrase.plural]
            for shown in values:
                if shown == target:
                    continue
                for lightness in SHOE_SCHEMA["lightness"].values:
                    for phrase in difference_phrases(name, target, shown, lightness):
                        texts += [phrase.singular, phrase.plural]
    for options in (*SAME_CAPTIONS, *VAGUE_CAPTIONS, *_CONNECTORS.values(), tuple(_FIRST.values())):
        texts += [text.format(be=be, have=have) for text in options for be, have in (("is", "has"), ("are", "have"))]
    for text in texts:
        words.update(tokenize(text))
    return words
