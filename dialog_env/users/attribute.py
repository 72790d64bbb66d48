"""The rule-based user: relative captions in shoppers' words from the catalogue's shoe attributes.

For each (target, shown image) pair the simulator lists the attributes that differ, scores each
difference by salience (a per-attribute weight, larger for bigger ordinal steps, with a little
random perturbation), keeps the 1-3 most salient and says them in the words and sentence shapes
that real shoppers use in the Shoes relative captions: ``"is black"``, ``"is darker"``,
``"has a higher heel"``, ``"are suede instead of leather, with laces"``, ``"have no strap"``...
When no attribute differs it says so (``"is the same"``, ``"are identical"``).

Optional noise knobs (all off by default) make the user less perfect: a vague remark instead of
the caption, an irrelevant (true but uninformative) remark, or a mistaken remark (a false claim
about the target). All randomness comes from the per-dialog generators passed to
:meth:`RuleBasedUser.describe`; each call draws a fixed number of numbers per dialog.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from dialog_env.catalog import Catalog
from dialog_env.errors import ConfigurationError, UserSimulatorError
from dialog_env.synthetic import SHOE_ATTRIBUTES, SHOE_CATEGORIES
from dialog_env.text import Vocabulary, tokenize
from dialog_env.users.base import UserSimulator, register_user

__all__ = ["RuleBasedUser", "Statement", "Feedback", "DEFAULT_SALIENCE"]

_SCHEMA = {schema.name: schema for schema in SHOE_ATTRIBUTES}
_ATTRIBUTES: tuple[str, ...] = tuple(schema.name for schema in SHOE_ATTRIBUTES)
_VALUES: tuple[tuple[str, ...], ...] = tuple(schema.values for schema in SHOE_ATTRIBUTES)
_COLOR, _LIGHTNESS = _ATTRIBUTES.index("color"), _ATTRIBUTES.index("lightness")
_HEEL_HEIGHT, _HEEL_SHAPE = _ATTRIBUTES.index("heel_height"), _ATTRIBUTES.index("heel_shape")

#: How salient a difference in each attribute is (a larger weight is said first and more often).
DEFAULT_SALIENCE: dict[str, float] = {
    "category": 10.0, "color": 4.0, "lightness": 2.0, "accent": 1.4, "heel_height": 2.6, "heel_shape": 1.6,
    "toe": 2.0, "shaft": 2.2, "material": 2.3, "shine": 1.5, "pattern": 2.8, "closure": 1.9,
    "platform": 1.2, "ornament": 1.5,
}  # fmt: skip

# Uniform random numbers drawn per dialog and call, and where each is used.
_U_COUNT = 1
_U_PLURAL = 2
_U_VAGUE = 3
_U_IRRELEVANT = 4
_U_MISTAKE = 5
_U_IRRELEVANT_PICK = 6  # 6, 7, 8: attribute / value / phrase of the irrelevant remark
_U_MISTAKE_PICK = 9  # 9, 10, 11: attribute / value / phrase of the mistaken remark
_U_VARIANT = 12  # 12..14: phrase variant of each said difference
_U_CONNECTOR = 15  # 15..19: connector before each clause (index 0 unused)
_U_SALIENCE = 20  # 20..33: salience perturbation of each attribute
_NUM_UNIFORMS = _U_SALIENCE + len(_ATTRIBUTES)


class _Phrase(NamedTuple):
    """One way to say a statement. ``role``: "adj" (after is/are), "np" (after has/have or with),
    "cat" (a category noun phrase, after is/are). ``weight``: how often it is chosen relative to
    the other ways of saying the same statement."""

    role: str
    singular: str
    plural: str
    weight: float = 1.0


def _adj(text: str, weight: float = 1.0) -> _Phrase:
    return _Phrase("adj", text, text, weight)


def _np(text: str, weight: float = 1.0) -> _Phrase:
    return _Phrase("np", text, text, weight)


# Real shoppers rarely spell out the contrast ("instead of", "made of"): such forms are kept rare.
_RARE = 0.12


def _choose(options: Sequence[_Phrase], cumulative: Sequence[float], uniform: float) -> _Phrase:
    """The option that ``uniform`` in [0, 1) selects, in proportion to the options' weights
    (``cumulative``: their running sums)."""
    return options[min(bisect.bisect_right(cumulative, uniform * cumulative[-1]), len(options) - 1)]


def _cumulative(options: Sequence[_Phrase]) -> list[float]:
    return list(itertools.accumulate(option.weight for option in options))


def _same_caption(plural: bool, uniform: float) -> str:
    """What a shopper says when nothing perceptible differs ("is the same", "are identical")."""
    options = _SAME[plural]
    return options[int(uniform * len(options))]


@dataclass(frozen=True)
class Statement:
    """What a caption asserts about the target, for tests and analysis.

    Attributes:
        attribute: the attribute the statement is about.
        target_value: the target's value of that attribute.
        shown_value: the shown image's value.
        kind: ``"difference"`` (a true difference), ``"irrelevant"`` (true of both images),
            ``"mistaken"`` (a false claim; ``claimed_value`` is what was said) or ``"vague"``.
        claimed_value: the value the statement attributes to the target.
    """

    attribute: str
    target_value: str
    shown_value: str
    kind: str
    claimed_value: str


@dataclass(frozen=True)
class Feedback:
    """A caption with the statements it was made from."""

    text: str
    statements: tuple[Statement, ...]


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
    "floral": (_np("a floral print"), _np("a floral pattern"), _adj("floral")),
    "plaid": (_np("a plaid pattern"), _adj("plaid")),
    "leopard": (_np("a leopard print"), _adj("leopard print")),
    "stripes": (_np("stripes"), _adj("striped")),
    "snakeskin": (_np("a snakeskin print"), _adj("snakeskin")),
    "polka dots": (_np("polka dots"),),
}
_CLOSURE_NP = {
    "laces": ("laces",), "buckle": ("a buckle", "buckles"), "strap": ("a strap", "straps"),
    "zipper": ("a zipper", "a side zipper"), "velcro": ("velcro", "velcro straps"),
}  # fmt: skip
_CLOSURE_NO = {"laces": "no laces", "buckle": "no buckle", "strap": "no strap", "zipper": "no zipper", "velcro": "no velcro"}
_ORNAMENT_NP = {
    "bow": ("a bow",), "studs": ("studs",), "rhinestones": ("rhinestones",), "flower": ("a flower",),
    "fringe": ("fringe",),
}  # fmt: skip
_HEEL_THICKNESS = {"stiletto": 1, "block": 2, "chunky": 3}


def _comparative(step: int, more: Sequence[_Phrase], less: Sequence[_Phrase], much: bool) -> list[_Phrase]:
    phrases = list(more if step > 0 else less)
    if much:  # a big ordinal step: also the emphatic form of each phrase ("a much higher heel")
        phrases += [p._replace(singular=_emphasise(p.singular), plural=_emphasise(p.plural)) for p in phrases]
    return phrases


def _emphasise(text: str) -> str:
    words = text.split(" ")
    if words[0] == "a":
        return " ".join(["a", "much", *words[1:]])
    if words[0] in ("more", "less"):
        return " ".join(["much", *words])
    return " ".join(["much", *words])


@functools.lru_cache(maxsize=None)
def _difference_phrases(attribute: str, target: str, shown: str, target_lightness: str) -> tuple[_Phrase, ...]:
    """Ways to say that the target's ``attribute`` is ``target`` where the shown image's is ``shown``."""
    values = _SCHEMA[attribute].values
    step = values.index(target) - values.index(shown)
    much = abs(step) >= 2
    if attribute == "category":
        return (
            _Phrase("cat", _CATEGORY_SINGULAR[target], _CATEGORY_PLURAL[target]),
            _Phrase(
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
            _adj(target, 3.0),
            _adj(f"{shade}{target}"),
            _adj(f"{target}, not {shown}", 0.3),
            _adj(f"{target} instead of {shown}", _RARE),
            _adj(f"{target} in color", 0.3),
            _adj(f"{target} colored", 0.3),
        )
    if attribute == "lightness":
        return tuple(
            _comparative(step, [_adj("lighter", 3.0), _adj("lighter in color")], [_adj("darker", 3.0), _adj("darker in color")], False)
        )
    if attribute == "accent":
        if target == "none":
            return (_np("no accents"), _np(f"no {shown} accents"), _np(f"no {shown} trim"))
        return (_np(f"{target} accents"), _np(f"{target} trim"))
    if attribute == "heel_height":
        if target == "flat":
            return (_adj("flat"), _np("no heel"))
        phrases = _comparative(step, [_np("a higher heel"), _np("a taller heel")], [_np("a lower heel"), _np("a shorter heel")], much)
        if shown == "flat":
            phrases += [_np("a heel"), _adj("heeled")]
        return tuple(phrases)
    if attribute == "heel_shape":
        phrases = [_np(f"a {target} heel")] if target != "wedge" else [_np("a wedge heel"), _np("a wedge")]
        if target in _HEEL_THICKNESS and shown in _HEEL_THICKNESS:
            thicker = _HEEL_THICKNESS[target] > _HEEL_THICKNESS[shown]
            phrases += [_np("a thicker heel"), _np("a chunkier heel")] if thicker else [_np("a thinner heel")]
        return tuple(phrases)
    if attribute == "toe":
        if target == "open":
            return (_np("an open toe"), _adj("open toed"), _np("a peep toe"))
        phrases = [_np("a closed toe"), _adj("closed toed")] if shown == "open" else []
        if target == "pointed":
            phrases += [_np("a pointed toe"), _adj("pointy")] + ([_np("a pointier toe")] if shown != "open" else [])
        elif target == "round":
            phrases += [_np("a round toe"), _adj("round toed")] + ([_np("a rounder toe")] if shown != "open" else [])
        else:
            phrases += [_np("a square toe"), _adj("square toed")]
        return tuple(phrases)
    if attribute == "shaft":
        phrases = _comparative(
            step,
            [_np("a taller shaft"), _np("a higher shaft"), _adj("taller"), _np("a higher top")],
            [_np("a shorter shaft"), _adj("shorter"), _np("a lower top")],
            much,
        )
        if target == "knee":
            phrases += [_adj("knee high")]
        elif target == "ankle":
            phrases += [_adj("ankle high")]
        return tuple(phrases)
    if attribute == "material":
        if target == "fur":
            return (_np("fur"), _np("fur lining"))
        word = _MATERIAL_ADJ[target]
        return (
            _adj(word, 3.0),
            _adj(f"{word} instead of {_MATERIAL_ADJ[shown]}", _RARE),
            _adj(f"{word}, not {_MATERIAL_ADJ[shown]}", 0.3),
            _adj(f"made of {word}", _RARE),
        )
    if attribute == "shine":
        if step > 0:
            return tuple([_adj("shinier"), _adj("more shiny")] + ([_adj("shiny")] if target == "shiny" else []))
        return tuple([_adj("less shiny"), _adj("more matte"), _adj("duller")] + ([_adj("matte")] if target == "matte" else []))
    if attribute == "pattern":
        if target == "solid":
            return (_adj("solid"), _adj("plain"), _np("no pattern"), _np("no print"))
        return _PATTERN_PHRASES[target]
    if attribute == "closure":
        if target == "slip-on":
            return (_adj("slip on"), _np(_CLOSURE_NO[shown]))
        phrases = [_np(text) for text in _CLOSURE_NP[target]]
        if shown != "slip-on":
            phrases += [_np(f"{_CLOSURE_NP[target][0]} instead of {_CLOSURE_NP[shown][0]}", _RARE)]
        if target == "strap":
            phrases += [_adj("strappy")]
        return tuple(phrases)
    if attribute == "platform":
        if target == "none":
            return (_np("no platform"), _np("a thinner sole"))
        phrases = _comparative(step, [_np("a thicker sole"), _np("a higher platform")], [_np("a thinner sole"), _np("a lower platform")], False)
        if shown == "none":
            phrases += [_np("a platform"), _np("a platform sole")]
        return tuple(phrases)
    if attribute == "ornament":
        if target == "none":
            return (_np(f"no {_ORNAMENT_NP[shown][0].removeprefix('a ')}"), _adj("plainer"))
        return tuple(_np(text) for text in _ORNAMENT_NP[target])
    raise AssertionError(f"no phrases for attribute {attribute!r}")


@functools.lru_cache(maxsize=None)
def _difference_options(attribute: str, target: str, shown: str, target_lightness: str) -> tuple[tuple[_Phrase, ...], list[float]]:
    """:func:`_difference_phrases` with the cumulative weights used to choose among them."""
    options = _difference_phrases(attribute, target, shown, target_lightness)
    return options, _cumulative(options)


@functools.lru_cache(maxsize=None)
def _absolute_phrases(attribute: str, value: str) -> tuple[_Phrase, ...]:
    """Ways to say that an image's ``attribute`` is ``value`` (no comparison); empty if unremarkable."""
    if attribute == "category":
        return (_Phrase("cat", _CATEGORY_SINGULAR[value], _CATEGORY_PLURAL[value]),)
    if attribute == "color":
        return (_adj(value),)
    if attribute == "lightness":
        return () if value == "medium" else (_adj(value),)
    if attribute == "accent":
        return (_np("no accents"),) if value == "none" else (_np(f"{value} accents"),)
    if attribute == "heel_height":
        return {
            "flat": (_adj("flat"),), "low": (_np("a low heel"),), "medium": (_np("a medium heel"),),
            "high": (_np("a high heel"),), "very high": (_np("a very high heel"),),
        }[value]  # fmt: skip
    if attribute == "heel_shape":
        return (_np("no heel"),) if value == "flat" else (_np(f"a {value} heel"),)
    if attribute == "toe":
        return {"round": (_np("a round toe"),), "pointed": (_np("a pointed toe"),), "open": (_np("an open toe"),),
                "square": (_np("a square toe"),)}[value]  # fmt: skip
    if attribute == "shaft":
        return {"low": (), "ankle": (_adj("ankle high"),), "mid-calf": (_np("a mid calf shaft"),), "knee": (_adj("knee high"),)}[value]
    if attribute == "material":
        return (_np("fur"),) if value == "fur" else (_adj(_MATERIAL_ADJ[value]),)
    if attribute == "shine":
        return {"matte": (_adj("matte"),), "semi-shiny": (_adj("slightly shiny"),), "shiny": (_adj("shiny"),)}[value]
    if attribute == "pattern":
        return (_adj("solid"),) if value == "solid" else _PATTERN_PHRASES[value][:1]
    if attribute == "closure":
        return (_adj("slip on"),) if value == "slip-on" else (_np(_CLOSURE_NP[value][0]),)
    if attribute == "platform":
        return {"none": (_np("no platform"),), "low": (_np("a platform"),), "high": (_np("a high platform"),)}[value]
    if attribute == "ornament":
        return (_adj("plain"),) if value == "none" else (_np(_ORNAMENT_NP[value][0]),)
    raise AssertionError(f"no phrases for attribute {attribute!r}")


_SAME = (("is the same", "is identical", "is the same shoe"), ("are the same", "are identical", "are the same shoes"))
_VAGUE = (
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


class RuleBasedUser(UserSimulator):
    """Relative captions from the shoe attributes of the catalogue (the default user).

    Args:
        salience: attribute -> weight; overrides :data:`DEFAULT_SALIENCE` for the given names.
        count_probabilities: probabilities of saying 1, 2 or 3 differences (fewer when fewer
            differ).
        plural_probability: how often the caption speaks of the pair ("are black", "have laces")
            rather than one shoe ("is black", "has laces").
        salience_jitter: half-width of the uniform random perturbation of the log-salience, so
            that differences whose salience is within a factor ``exp(2 * salience_jitter)`` may
            swap places; 0 always says the most salient differences in a fixed order.
        vague_rate: probability of a vague remark ("is a different style") instead of the caption.
        irrelevant_rate: probability of adding a true remark about an attribute that does not
            differ ("is black" when both are black).
        mistake_rate: probability of adding a false remark about the target.
    """

    name = "rule"

    def __init__(
        self,
        salience: Mapping[str, float] | None = None,
        count_probabilities: Sequence[float] = (0.38, 0.43, 0.19),
        plural_probability: float = 0.55,
        salience_jitter: float = 0.5,
        vague_rate: float = 0.0,
        irrelevant_rate: float = 0.0,
        mistake_rate: float = 0.0,
    ) -> None:
        weights = dict(DEFAULT_SALIENCE)
        for attribute, weight in (salience or {}).items():
            if attribute not in weights:
                raise ConfigurationError(f"salience names unknown attribute {attribute!r}; known: {list(weights)}")
            if not weight > 0:
                raise ConfigurationError(f"salience of {attribute!r} must be > 0, got {weight}")
            weights[attribute] = float(weight)
        counts = np.asarray(count_probabilities, dtype=np.float64)
        if counts.shape != (3,) or (counts < 0).any() or not np.isclose(counts.sum(), 1.0):
            raise ConfigurationError(f"count_probabilities must be 3 probabilities summing to 1, got {count_probabilities}")
        for name, rate in (
            ("plural_probability", plural_probability),
            ("vague_rate", vague_rate),
            ("irrelevant_rate", irrelevant_rate),
            ("mistake_rate", mistake_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ConfigurationError(f"{name} must be in [0, 1], got {rate}")
        if salience_jitter < 0:
            raise ConfigurationError(f"salience_jitter must be >= 0, got {salience_jitter}")
        self.salience = weights
        self.count_probabilities = tuple(float(p) for p in counts)
        self.plural_probability = float(plural_probability)
        self.salience_jitter = float(salience_jitter)
        self.vague_rate = float(vague_rate)
        self.irrelevant_rate = float(irrelevant_rate)
        self.mistake_rate = float(mistake_rate)
        self._log_salience = np.log(np.array([weights[a] for a in _ATTRIBUTES]))
        self._count_cdf = np.cumsum(counts)
        self._vocabulary: Vocabulary | None = None

    def __repr__(self) -> str:
        return (
            f"RuleBasedUser(vague_rate={self.vague_rate}, irrelevant_rate={self.irrelevant_rate}, "
            f"mistake_rate={self.mistake_rate})"
        )

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocabulary(self) -> Vocabulary:
        """Every word this simulator can say, by enumerating every phrase it can build."""
        if self._vocabulary is None:
            self._vocabulary = Vocabulary(sorted(_all_words()))
        return self._vocabulary

    # ------------------------------------------------------------------ catalogue
    def check_catalog(self, catalog: Catalog) -> None:
        missing = [name for name in _ATTRIBUTES if name not in catalog.attribute_schema]
        if missing:
            raise UserSimulatorError(
                f"user simulator {self.name!r} describes the shoe attributes {list(_ATTRIBUTES)}, but catalogue "
                f"{catalog.name!r} lacks {missing}. Use a catalogue with these attributes (e.g. the synthetic "
                f"default) or another user simulator"
            )
        for name in _ATTRIBUTES:
            if catalog.attribute_schema[name].values != _SCHEMA[name].values:
                raise UserSimulatorError(
                    f"catalogue {catalog.name!r}: attribute {name!r} has values "
                    f"{list(catalog.attribute_schema[name].values)}, user simulator {self.name!r} expects "
                    f"{list(_SCHEMA[name].values)}"
                )

    # ------------------------------------------------------------------ captions
    def describe(
        self,
        catalog: Catalog,
        targets: np.ndarray,
        shown: np.ndarray,
        rngs: Sequence[np.random.Generator],
    ) -> list[str]:
        return self._captions(catalog, targets, shown, rngs, with_statements=False)  # type: ignore[return-value]

    def explain(
        self,
        catalog: Catalog,
        targets: np.ndarray,
        shown: np.ndarray,
        rngs: Sequence[np.random.Generator],
    ) -> list[Feedback]:
        """Like :meth:`describe`, with the statements behind each caption.

        Args:
            catalog: catalogue with the shoe attributes.
            targets: ``(B,)`` target indices.
            shown: ``(B,)`` shown-image indices.
            rngs: ``B`` generators, one per dialog.

        Returns:
            ``B`` :class:`Feedback` objects.
        """
        return self._captions(catalog, targets, shown, rngs, with_statements=True)  # type: ignore[return-value]

    def _captions(
        self,
        catalog: Catalog,
        targets: np.ndarray,
        shown: np.ndarray,
        rngs: Sequence[np.random.Generator],
        with_statements: bool,
    ) -> list[str] | list[Feedback]:
        """The captions (``with_statements=False``) or :class:`Feedback` objects of a batch."""
        target_codes, shown_codes, uniforms, order, num_differences = self._ranked_differences(catalog, targets, shown, rngs)
        wanted = 1 + np.searchsorted(self._count_cdf, uniforms[:, _U_COUNT], side="right")
        said = np.minimum(np.minimum(wanted, 3), num_differences).tolist()

        # Python scalars from here on: the per-dialog loop only assembles words.
        target_rows, shown_rows, uniform_rows = target_codes.tolist(), shown_codes.tolist(), uniforms.tolist()
        results: list = []
        for b in range(len(uniform_rows)):
            u = uniform_rows[b]
            plural = u[_U_PLURAL] < self.plural_probability
            if num_differences[b] == 0:
                text = _same_caption(plural, u[_U_VARIANT])
                results.append(Feedback(text, ()) if with_statements else text)
                continue
            if u[_U_VAGUE] < self.vague_rate:
                options = _VAGUE[plural]
                text = options[int(u[_U_VARIANT] * len(options))]
                results.append(Feedback(text, (Statement("", "", "", "vague", ""),)) if with_statements else text)
                continue
            t_row, s_row = target_rows[b], shown_rows[b]
            target_lightness = _VALUES[_LIGHTNESS][t_row[_LIGHTNESS]]
            phrases: list[_Phrase] = []
            statements: list[Statement] = []
            for slot in range(said[b]):
                column = order[b][slot]
                t_value, s_value = _VALUES[column][t_row[column]], _VALUES[column][s_row[column]]
                options, cumulative = _difference_options(_ATTRIBUTES[column], t_value, s_value, target_lightness)
                phrases.append(_choose(options, cumulative, u[_U_VARIANT + slot]))
                if with_statements:
                    statements.append(Statement(_ATTRIBUTES[column], t_value, s_value, "difference", t_value))
            if u[_U_IRRELEVANT] < self.irrelevant_rate:
                remark = self._noise_remark(u[_U_IRRELEVANT_PICK:], t_row, s_row, same=True)
                if remark is not None:
                    phrases.append(remark[0])
                    statements.append(remark[1])
            if u[_U_MISTAKE] < self.mistake_rate:
                remark = self._noise_remark(u[_U_MISTAKE_PICK:], t_row, s_row, same=False)
                if remark is not None:
                    phrases.append(remark[0])
                    statements.append(remark[1])
            text = _render(phrases, plural, u[_U_CONNECTOR:])
            results.append(Feedback(text, tuple(statements)) if with_statements else text)
        return results

    def _ranked_differences(
        self,
        catalog: Catalog,
        targets: np.ndarray,
        shown: np.ndarray,
        rngs: Sequence[np.random.Generator],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[int]], list[int]]:
        """The differing attributes of each pair, most salient first.

        Returns:
            ``(target_codes (B, A), shown_codes (B, A), uniforms (B, U), order, num_differences)``:
            the attribute codes, the per-dialog uniform draws (one ``rng.random`` call per dialog),
            the 3 most salient attribute columns of each pair (valid up to its number of
            differences) and that number.
        """
        targets = np.asarray(targets, dtype=np.int64).reshape(-1)
        shown = np.asarray(shown, dtype=np.int64).reshape(-1)
        if targets.shape != shown.shape or len(rngs) != targets.size:
            raise ConfigurationError(
                f"describe needs as many targets, shown images and generators; got {targets.size}, "
                f"{shown.size} and {len(rngs)}"
            )
        codes = self._attribute_codes(catalog)
        target_codes = codes[targets]
        shown_codes = codes[shown]
        differs = target_codes != shown_codes
        # The lightness of a colour change is said with the colour ("is dark blue").
        differs[:, _LIGHTNESS] &= ~differs[:, _COLOR]
        # A heel shape difference is only worth saying when both shoes have a heel.
        differs[:, _HEEL_SHAPE] &= (target_codes[:, _HEEL_HEIGHT] > 0) & (shown_codes[:, _HEEL_HEIGHT] > 0)

        uniforms = np.stack([rng.random(_NUM_UNIFORMS) for rng in rngs]) if len(rngs) else np.zeros((0, _NUM_UNIFORMS))
        ordinal_steps = np.abs(target_codes.astype(np.int64) - shown_codes)
        magnitude = np.where(self._ordinal_mask, 1.0 + 0.5 * np.maximum(ordinal_steps - 1, 0), 1.0)
        # A bounded perturbation: near-equal differences swap places, clearly dominant ones never do.
        jitter = self.salience_jitter * (2.0 * uniforms[:, _U_SALIENCE:] - 1.0)
        scores = self._log_salience + np.log(magnitude) + jitter
        scores = np.where(differs, scores, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :3].tolist()
        return target_codes, shown_codes, uniforms, order, differs.sum(axis=1).tolist()

    def _attribute_codes(self, catalog: Catalog) -> np.ndarray:
        """``(N, A) int16`` attribute codes of ``catalog`` in this module's attribute order (cached
        for the last catalogue seen: environments call with the same catalogue every step)."""
        cached = getattr(self, "_codes_cache", None)
        if cached is not None and cached[0] is catalog:
            return cached[1]
        codes = np.stack([catalog.attributes[name] for name in _ATTRIBUTES], axis=1)
        self._codes_cache = (catalog, codes)
        return codes

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_codes_cache", None)  # a cache of a catalogue: not part of the simulator
        return state

    @functools.cached_property
    def _ordinal_mask(self) -> np.ndarray:
        return np.array([_SCHEMA[name].ordinal for name in _ATTRIBUTES])

    def _noise_remark(
        self, u: Sequence[float], t_row: Sequence[int], s_row: Sequence[int], same: bool
    ) -> tuple[_Phrase, Statement] | None:
        """An irrelevant remark (``same=True``: a true remark about an attribute both images share)
        or a mistaken one (``same=False``: a value the target does not have). ``u`` holds three
        uniforms: which attribute, which value, which phrase."""
        columns = range(1, len(_ATTRIBUTES))  # never the category: a wrong category is not a slip
        if same:
            candidates = [c for c in columns if t_row[c] == s_row[c] and _absolute_phrases(_ATTRIBUTES[c], _VALUES[c][t_row[c]])]
        else:
            candidates = list(columns)
        if not candidates:
            return None
        column = candidates[int(u[0] * len(candidates))]
        name = _ATTRIBUTES[column]
        values = _SCHEMA[name].values
        t_value, s_value = values[t_row[column]], values[s_row[column]]
        if same:
            claimed = t_value
        else:
            others = [v for v in values if v != t_value and _absolute_phrases(name, v)]
            claimed = others[int(u[1] * len(others))]
        options = _absolute_phrases(name, claimed)
        phrase = _choose(options, _cumulative(options), u[2])
        return phrase, Statement(name, t_value, s_value, "irrelevant" if same else "mistaken", claimed)


def _render(phrases: Sequence[_Phrase], plural: bool, connector_uniforms: Sequence[float]) -> str:
    """Join phrases into one caption: ``"is black and has a higher heel, with laces"``."""
    be, have = ("are", "have") if plural else ("is", "has")
    # A category noun phrase reads best first ("are boots with laces"): move it to the front.
    phrases = sorted(phrases, key=lambda p: p.role != "cat")
    parts = []
    for index, phrase in enumerate(phrases):
        text = phrase.plural if plural else phrase.singular
        if index == 0:
            lead = _FIRST[phrase.role]
        else:
            options = _CONNECTORS[phrase.role]
            if phrase.role == "adj" and phrases[index - 1].role != "adj":
                options = options[:1]  # "has laces and is black", not "has laces, black"
            lead = options[int(connector_uniforms[index] * len(options))]
        parts.append(lead.format(be=be, have=have) + text)
    return "".join(parts)


def _all_words() -> set[str]:
    """Every word any caption can contain."""
    words: set[str] = set()
    texts: list[str] = []
    for name in _ATTRIBUTES:
        values = _SCHEMA[name].values
        for target in values:
            for phrase in _absolute_phrases(name, target):
                texts += [phrase.singular, phrase.plural]
            for shown in values:
                if shown == target:
                    continue
                for lightness in _SCHEMA["lightness"].values:
                    for phrase in _difference_phrases(name, target, shown, lightness):
                        texts += [phrase.singular, phrase.plural]
    for options in (*_SAME, *_VAGUE, *_CONNECTORS.values(), tuple(_FIRST.values())):
        texts += [text.format(be=be, have=have) for text in options for be, have in (("is", "has"), ("are", "have"))]
    for text in texts:
        words.update(tokenize(text))
    return words


# Category names are part of the schema; make sure every one has a singular form.
assert set(_CATEGORY_SINGULAR) == set(SHOE_CATEGORIES)

register_user(RuleBasedUser.name, RuleBasedUser)
