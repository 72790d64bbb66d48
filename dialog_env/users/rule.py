"""The rule-based user: relative captions in shoppers' words from the catalogue's shoe attributes.

For each (target, shown image) pair the simulator lists the attributes that differ, scores each
difference by salience (a per-attribute weight, larger for bigger ordinal steps, with a little
random perturbation), keeps the 1-3 most salient and says them in the words and sentence shapes
that real shoppers use in the Shoes relative captions: ``"is black"``, ``"is darker"``,
``"has a higher heel"``, ``"are suede instead of leather, with laces"``, ``"have no strap"``...
When no attribute differs it says so (``"is the same"``, ``"are identical"``). The attributes,
the salience ranking and the phrase grammar are the shoe domain's (:mod:`dialog_env.domain`);
this module decides what to say and draws the random numbers.

Optional noise knobs (all off by default) make the user less perfect: a vague remark instead of
the caption, an irrelevant (true but uninformative) remark, or a mistaken remark (a false claim
about the target). All randomness comes from the per-dialog generators passed to
:meth:`RuleBasedUser.describe`; each call draws a fixed number of numbers per dialog
(:data:`DRAWS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from dialog_env.catalog import Catalog
from dialog_env.domain.phrases import (
    Phrase,
    absolute_phrases,
    caption_words,
    choose_phrase,
    cumulative_weights,
    difference_options,
    render_caption,
    same_caption,
    vague_caption,
)
from dialog_env.domain.rich_phrases import (
    RICH_CONNECTORS,
    choose_remark,
    hedged,
    pick_hedge,
    rich_caption_words,
    rich_difference_options,
)
from dialog_env.domain.salience import DEFAULT_SALIENCE, SalienceRanking, salience_weights
from dialog_env.domain.schema import ATTRIBUTE_NAMES, ATTRIBUTE_VALUES, NUM_ATTRIBUTES, check_catalog
from dialog_env.errors import ConfigurationError
from dialog_env.text import Vocabulary
from dialog_env.users.base import UserSimulator, register_user

__all__ = [
    "RuleBasedUser",
    "CaptionPlan",
    "Statement",
    "Feedback",
    "DEFAULT_SALIENCE",
    "DrawLayout",
    "DRAWS",
    "check_pairs",
    "draw_uniforms",
]

_LIGHTNESS = ATTRIBUTE_NAMES.index("lightness")


@dataclass(frozen=True)
class DrawLayout:
    """Where each of the uniform numbers that a user draws per dialog and call is used.

    Every call draws one row of :attr:`size` uniforms per dialog (:func:`draw_uniforms`), whatever
    is said, so that a dialog's later numbers never depend on what it said before. The fields are
    column indices into that row; column 0 is not used. The relative-attribute user draws the same
    row, so that from the same generators it ranks the differences exactly as this user does.

    Attributes:
        count: how many differences to say (1, 2 or 3).
        plural: speak of the pair ("are") or of one shoe ("is").
        vague: whether to make a vague remark instead.
        irrelevant: whether to add an irrelevant remark.
        mistake: whether to add a mistaken remark.
        irrelevant_pick: first of 3: attribute, value and phrase of the irrelevant remark.
        mistake_pick: first of 3: attribute, value and phrase of the mistaken remark.
        variant: first of 3: the phrase variant of each said difference (the first one also picks
            the variant of a "same" or vague caption).
        connector: first of 5: the connector before each clause (the first one is not used).
        salience: first of ``A``: the salience perturbation of each attribute, in column order.
        size: the row length.
    """

    count: int = 1
    plural: int = 2
    vague: int = 3
    irrelevant: int = 4
    mistake: int = 5
    irrelevant_pick: int = 6
    mistake_pick: int = 9
    variant: int = 12
    connector: int = 15
    salience: int = 20
    size: int = 20 + NUM_ATTRIBUTES


#: The draws of the rule-based and relative-attribute users.
DRAWS = DrawLayout()
#: The phrasings of the rule-based user.
PHRASINGS = ("basic", "rich")
#: The rich phrasing's extra uniforms per dialog and call (a second row, after the :data:`DRAWS`
#: row): a degree word for each of 3 differences, the outside remark, its connector.
RICH_DRAWS = 5
RICH_HEDGE, RICH_REMARK, RICH_CONNECTOR = 0, 3, 4


def check_pairs(
    targets: np.ndarray, shown: np.ndarray, rngs: Sequence[np.random.Generator]
) -> tuple[np.ndarray, np.ndarray]:
    """The targets and shown images of a call as ``(B,) int64`` arrays, checked against the generators.

    Raises:
        ConfigurationError: the numbers of targets, shown images and generators differ.
    """
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    shown = np.asarray(shown, dtype=np.int64).reshape(-1)
    if targets.shape != shown.shape or len(rngs) != targets.size:
        raise ConfigurationError(
            f"describe needs as many targets, shown images and generators; got {targets.size}, "
            f"{shown.size} and {len(rngs)}"
        )
    return targets, shown


def draw_uniforms(rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """One row of :data:`DRAWS` uniforms per dialog: ``(B, DRAWS.size) float64`` in ``[0, 1)``.

    Each row is one ``rngs[b].random(DRAWS.size)`` call.
    """
    if not len(rngs):
        return np.zeros((0, DRAWS.size))
    return np.stack([rng.random(DRAWS.size) for rng in rngs])


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


class CaptionPlan(NamedTuple):
    """What each dialog of a batch will say (:meth:`RuleBasedUser.plan`), as Python lists of ``B`` rows.

    Attributes:
        target_codes: each target's ``A`` attribute codes.
        shown_codes: each shown image's codes.
        uniforms: each dialog's :data:`DRAWS` row of uniforms.
        order: each dialog's most salient attribute columns, best first (the first
            ``num_differences`` of them differ).
        num_differences: each pair's number of remarkable differences.
        said: how many differences each caption says.
        rich: each dialog's :data:`RICH_DRAWS` more uniforms (the rich phrasing only).
    """

    target_codes: list[list[int]]
    shown_codes: list[list[int]]
    uniforms: list[list[float]]
    order: list[list[int]]
    num_differences: list[int]
    said: list[int]
    rich: list[list[float]] | None = None


@dataclass(frozen=True)
class Feedback:
    """A caption with the statements it was made from."""

    text: str
    statements: tuple[Statement, ...]


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
        vague_rate: probability of a vague remark ("is a different style"; in the rich phrasing a
            remark outside the schema) instead of the caption; ``None``: 0, or 0.06 in the rich
            phrasing (the share of real captions in which the parser reads no claim).
        irrelevant_rate: probability of adding a true remark about an attribute that does not
            differ ("is black" when both are black).
        mistake_rate: probability of adding a false remark about the target.
        phrasing: ``"basic"`` (the default grammar, :mod:`dialog_env.domain.phrases`) or
            ``"rich"`` (more of real shoppers' words: colour names, synonyms, degree words,
            remarks outside the schema; :mod:`dialog_env.domain.rich_phrases`). The rich phrasing
            draws :data:`RICH_DRAWS` more numbers per dialog and call.
        remark_rate: ``"rich"`` only: probability of adding a remark about something the schema
            has no attribute for ("has a different back", "is more casual"); ``None``: 0.35, the
            share of real captions whose words the parser leaves partly unread (measured on the
            Shoes train captions, ``benchmarks/results/corpus_user.md``).
        hedge_rate: ``"rich"`` only: probability of a degree word before each comparative
            ("slightly darker"); ``None``: 0.15.
    """

    name = "rule"

    def __init__(
        self,
        salience: Mapping[str, float] | None = None,
        count_probabilities: Sequence[float] = (0.38, 0.43, 0.19),
        plural_probability: float = 0.55,
        salience_jitter: float = 0.5,
        vague_rate: float | None = None,
        irrelevant_rate: float = 0.0,
        mistake_rate: float = 0.0,
        phrasing: str = "basic",
        remark_rate: float | None = None,
        hedge_rate: float | None = None,
    ) -> None:
        weights = salience_weights(salience)
        if phrasing not in PHRASINGS:
            raise ConfigurationError(f"phrasing must be one of {list(PHRASINGS)}, got {phrasing!r}")
        if phrasing == "basic" and (remark_rate or hedge_rate):
            raise ConfigurationError("remark_rate and hedge_rate need phrasing='rich' (the basic grammar has neither)")
        rich = phrasing == "rich"
        remark_rate = (0.35 if rich else 0.0) if remark_rate is None else remark_rate
        hedge_rate = (0.15 if rich else 0.0) if hedge_rate is None else hedge_rate
        vague_rate = (0.06 if rich else 0.0) if vague_rate is None else vague_rate
        counts = np.asarray(count_probabilities, dtype=np.float64)
        if counts.shape != (3,) or (counts < 0).any() or not np.isclose(counts.sum(), 1.0):
            raise ConfigurationError(
                f"count_probabilities must be 3 probabilities summing to 1, got {count_probabilities}"
            )
        for name, rate in (
            ("plural_probability", plural_probability),
            ("vague_rate", vague_rate),
            ("irrelevant_rate", irrelevant_rate),
            ("mistake_rate", mistake_rate),
            ("remark_rate", remark_rate),
            ("hedge_rate", hedge_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ConfigurationError(f"{name} must be in [0, 1], got {rate}")
        self.ranking = SalienceRanking(weights, salience_jitter)
        self.count_probabilities = tuple(float(p) for p in counts)
        self.plural_probability = float(plural_probability)
        self.vague_rate = float(vague_rate)
        self.irrelevant_rate = float(irrelevant_rate)
        self.mistake_rate = float(mistake_rate)
        self.phrasing = phrasing
        self.remark_rate = float(remark_rate)
        self.hedge_rate = float(hedge_rate)
        self._count_cdf = np.cumsum(counts)
        self._vocabulary: Vocabulary | None = None

    def __repr__(self) -> str:
        return (
            f"RuleBasedUser(vague_rate={self.vague_rate}, irrelevant_rate={self.irrelevant_rate}, "
            f"mistake_rate={self.mistake_rate}"
            + (f", phrasing='rich', remark_rate={self.remark_rate}, hedge_rate={self.hedge_rate}" if self.rich else "")
            + ")"
        )

    @property
    def rich(self) -> bool:
        """Whether this user speaks the rich phrasing."""
        return self.phrasing == "rich"

    @property
    def salience(self) -> dict[str, float]:
        """Attribute -> salience weight, for every shoe attribute."""
        return self.ranking.salience

    @property
    def salience_jitter(self) -> float:
        """Half-width of the perturbation of the log-salience (see the class docstring)."""
        return self.ranking.salience_jitter

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocabulary(self) -> Vocabulary:
        """Every word this simulator can say, by enumerating every phrase it can build."""
        if self._vocabulary is None:
            self._vocabulary = Vocabulary(sorted(rich_caption_words() if self.rich else caption_words()))
        return self._vocabulary

    # ------------------------------------------------------------------ catalogue
    def check_catalog(self, catalog: Catalog) -> None:
        """Raise :class:`~dialog_env.errors.UserSimulatorError` unless ``catalog`` has the shoe attributes."""
        check_catalog(catalog, self.name)

    # ------------------------------------------------------------------ captions
    def describe(
        self,
        catalog: Catalog,
        targets: np.ndarray,
        shown: np.ndarray,
        rngs: Sequence[np.random.Generator],
    ) -> list[str]:
        """Relative captions (see :meth:`UserSimulator.describe`); :data:`DRAWS` numbers per dialog."""
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
        plan = self.plan(catalog, targets, shown, rngs)
        return [self.say(plan, b, with_statements) for b in range(len(plan.uniforms))]

    def plan(
        self,
        catalog: Catalog,
        targets: np.ndarray,
        shown: np.ndarray,
        rngs: Sequence[np.random.Generator],
        top: int = 3,
    ) -> CaptionPlan:
        """What each dialog of a batch will say, before the words: draws the :data:`DRAWS` numbers.

        Args:
            catalog: catalogue with the shoe attributes.
            targets: ``(B,)`` target indices.
            shown: ``(B,)`` shown-image indices.
            rngs: ``B`` generators, one per dialog.
            top: how many of the most salient differences to rank (at least 3, the most said).

        Returns:
            The :class:`CaptionPlan` that :meth:`say` turns into words, dialog by dialog.
        """
        targets, shown = check_pairs(targets, shown, rngs)
        codes = self.ranking.codes(catalog)
        target_codes, shown_codes = codes[targets], codes[shown]
        uniforms = draw_uniforms(rngs)
        order, num_differences = self.ranking.rank(
            target_codes, shown_codes, uniforms[:, DRAWS.salience :], top=max(3, top)
        )
        wanted = 1 + np.searchsorted(self._count_cdf, uniforms[:, DRAWS.count], side="right")
        said = np.minimum(np.minimum(wanted, 3), num_differences).tolist()
        # Python scalars from here on: the per-dialog work only assembles words.
        rich = np.stack([rng.random(RICH_DRAWS) for rng in rngs]).tolist() if self.rich and len(rngs) else None
        return CaptionPlan(
            target_codes.tolist(), shown_codes.tolist(), uniforms.tolist(), order, num_differences, said, rich
        )

    def say(self, plan: CaptionPlan, b: int, with_statements: bool = False) -> str | Feedback:
        """The caption (or :class:`Feedback`) of dialog ``b`` of a :meth:`plan`."""
        u = plan.uniforms[b]
        rich = plan.rich[b] if plan.rich is not None else None
        plural = u[DRAWS.plural] < self.plural_probability
        if plan.num_differences[b] == 0:
            text = same_caption(plural, u[DRAWS.variant])
            return Feedback(text, ()) if with_statements else text
        if u[DRAWS.vague] < self.vague_rate:
            if self.rich:  # a remark about what the catalogue cannot say, instead of the caption
                text = render_caption([choose_remark(u[DRAWS.variant])], plural, u[DRAWS.connector :])
            else:
                text = vague_caption(plural, u[DRAWS.variant])
            return Feedback(text, (Statement("", "", "", "vague", ""),)) if with_statements else text
        t_row, s_row = plan.target_codes[b], plan.shown_codes[b]
        target_lightness = ATTRIBUTE_VALUES[_LIGHTNESS][t_row[_LIGHTNESS]]
        phrases: list[Phrase] = []
        statements: list[Statement] = []
        for slot in range(plan.said[b]):
            column = plan.order[b][slot]
            t_value, s_value = ATTRIBUTE_VALUES[column][t_row[column]], ATTRIBUTE_VALUES[column][s_row[column]]
            if rich is None:
                options, cumulative = difference_options(ATTRIBUTE_NAMES[column], t_value, s_value, target_lightness)
                phrases.append(choose_phrase(options, cumulative, u[DRAWS.variant + slot]))
            else:
                options, cumulative, hedgeable = rich_difference_options(
                    ATTRIBUTE_NAMES[column], t_value, s_value, target_lightness
                )
                phrase = choose_phrase(options, cumulative, u[DRAWS.variant + slot])
                hedge = rich[RICH_HEDGE + slot]
                if hedge < self.hedge_rate and hedgeable[options.index(phrase)]:
                    phrase = hedged(phrase, pick_hedge(hedge / self.hedge_rate))
                phrases.append(phrase)
            if with_statements:
                statements.append(Statement(ATTRIBUTE_NAMES[column], t_value, s_value, "difference", t_value))
        remark = rich is not None and rich[RICH_REMARK] < self.remark_rate
        if remark and len(phrases) >= 2:  # the remark takes the place of the least salient difference
            phrases.pop()
            if with_statements:
                statements.pop()
        if u[DRAWS.irrelevant] < self.irrelevant_rate:
            remark = self._noise_remark(u[DRAWS.irrelevant_pick :], t_row, s_row, same=True)
            if remark is not None:
                phrases.append(remark[0])
                statements.append(remark[1])
        if u[DRAWS.mistake] < self.mistake_rate:
            remark = self._noise_remark(u[DRAWS.mistake_pick :], t_row, s_row, same=False)
            if remark is not None:
                phrases.append(remark[0])
                statements.append(remark[1])
        if rich is None:
            text = render_caption(phrases, plural, u[DRAWS.connector :])
        else:
            if remark:
                phrases.append(choose_remark(rich[RICH_REMARK] / self.remark_rate))
                if with_statements:
                    statements.append(Statement("", "", "", "outside", ""))
            connector_uniforms = [*u[DRAWS.connector : DRAWS.salience], rich[RICH_CONNECTOR]]
            text = render_caption(phrases, plural, connector_uniforms, RICH_CONNECTORS)
        return Feedback(text, tuple(statements)) if with_statements else text

    def _noise_remark(
        self, u: Sequence[float], t_row: Sequence[int], s_row: Sequence[int], same: bool
    ) -> tuple[Phrase, Statement] | None:
        """A remark that is not a difference: irrelevant or mistaken.

        Args:
            u: three uniforms: which attribute, which value, which phrase.
            t_row: the target's ``A`` attribute codes.
            s_row: the shown image's codes.
            same: ``True`` for an irrelevant remark (true of an attribute both images share),
                ``False`` for a mistaken one (a value the target does not have).

        Returns:
            The phrase and its statement, or ``None`` when there is nothing to remark.
        """
        columns = range(1, NUM_ATTRIBUTES)  # never the category: a wrong category is not a slip
        if same:
            candidates = [
                c
                for c in columns
                if t_row[c] == s_row[c] and absolute_phrases(ATTRIBUTE_NAMES[c], ATTRIBUTE_VALUES[c][t_row[c]])
            ]
        else:
            candidates = list(columns)
        if not candidates:
            return None
        column = candidates[int(u[0] * len(candidates))]
        name = ATTRIBUTE_NAMES[column]
        values = ATTRIBUTE_VALUES[column]
        t_value, s_value = values[t_row[column]], values[s_row[column]]
        if same:
            claimed = t_value
        else:
            others = [v for v in values if v != t_value and absolute_phrases(name, v)]
            claimed = others[int(u[1] * len(others))]
        options = absolute_phrases(name, claimed)
        phrase = choose_phrase(options, cumulative_weights(options), u[2])
        return phrase, Statement(name, t_value, s_value, "irrelevant" if same else "mistaken", claimed)


register_user(RuleBasedUser.name, RuleBasedUser)
