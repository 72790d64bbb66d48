"""Relative-attribute feedback (WhittleSearch style): one attribute per turn, no free phrasing.

Guo et al. (2018) compare natural-language feedback with the relative-attribute feedback of
WhittleSearch (Kovashka et al., 2012), in which the user may only say, about one attribute per
turn, "more X" or "less X" (an ordinal attribute: lightness, heel height, shaft height, shine,
platform) or "is X" (a categorical one: category, colour, accent, heel shape, toe, material,
pattern, closure, ornament). :class:`RelativeAttributeUser` gives that feedback about the same
shoe attributes, choosing the attribute with the same salience ranking
(:class:`~dialog_env.domain.salience.SalienceRanking`) and the same per-dialog draws
(:data:`~dialog_env.users.rule.DRAWS`) as the rule-based user's most salient difference, so that
the two users differ only in how much they say.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np

from dialog_env.catalog import Catalog
from dialog_env.domain.phrases import SAME_CAPTIONS, Phrase, absolute_phrases, adjective, render_caption, same_caption
from dialog_env.domain.salience import SalienceRanking, salience_weights
from dialog_env.domain.schema import ATTRIBUTE_NAMES, ATTRIBUTE_VALUES, SHOE_SCHEMA, check_catalog
from dialog_env.errors import ConfigurationError
from dialog_env.text import Vocabulary, tokenize
from dialog_env.users.base import UserSimulator, register_user
from dialog_env.users.rule import DRAWS, Feedback, Statement, check_pairs, draw_uniforms

__all__ = ["RelativeAttributeUser", "ORDINAL_ADJECTIVES"]

#: The adjective of each ordinal attribute in "is more X" / "is less X".
ORDINAL_ADJECTIVES: dict[str, str] = {
    "lightness": "bright",
    "heel_height": "high heeled",
    "shaft": "tall",
    "shine": "shiny",
    "platform": "platformed",
}


@functools.cache
def _relative_phrase(attribute: str, target: str, shown: str) -> Phrase:
    """The one phrase of this user for a difference in ``attribute``."""
    if attribute in ORDINAL_ADJECTIVES:
        values = SHOE_SCHEMA[attribute].values
        direction = "more" if values.index(target) > values.index(shown) else "less"
        return adjective(f"{direction} {ORDINAL_ADJECTIVES[attribute]}")
    return absolute_phrases(attribute, target)[0]


class RelativeAttributeUser(UserSimulator):
    """Relative-attribute feedback on the shoe attributes: exactly one attribute per turn.

    Ordinal attributes get "is more X" / "is less X" (``X`` from :data:`ORDINAL_ADJECTIVES`);
    categorical ones "is X" / "has X" with the target's value ("is suede", "has laces", "is a
    boot"). Identical attributes give "is the same". The attribute is the rule-based user's most
    salient difference (same salience weights and jitter, from the same per-dialog draws).

    Args:
        salience: attribute -> weight, overriding the rule-based user's defaults.
        plural_probability: how often the feedback speaks of the pair ("are more shiny").
        salience_jitter: see :class:`~dialog_env.users.rule.RuleBasedUser`.
    """

    name = "relative-attribute"

    def __init__(
        self,
        salience: Mapping[str, float] | None = None,
        plural_probability: float = 0.55,
        salience_jitter: float = 0.5,
    ) -> None:
        weights = salience_weights(salience)
        if not 0.0 <= plural_probability <= 1.0:
            raise ConfigurationError(f"plural_probability must be in [0, 1], got {plural_probability}")
        self.ranking = SalienceRanking(weights, salience_jitter)
        self.plural_probability = float(plural_probability)
        self._vocabulary: Vocabulary | None = None

    def __repr__(self) -> str:
        return f"RelativeAttributeUser(salience_jitter={self.salience_jitter})"

    @property
    def salience(self) -> dict[str, float]:
        """Attribute -> salience weight, for every shoe attribute."""
        return self.ranking.salience

    @property
    def salience_jitter(self) -> float:
        """Half-width of the perturbation of the log-salience."""
        return self.ranking.salience_jitter

    @property
    def vocabulary(self) -> Vocabulary:
        """Every word this simulator can say: its one phrase per difference, and "the same"."""
        if self._vocabulary is None:
            words: set[str] = set()
            for name, values in zip(ATTRIBUTE_NAMES, ATTRIBUTE_VALUES, strict=True):
                for target in values:
                    for shown in values:
                        if target != shown:
                            phrase = _relative_phrase(name, target, shown)
                            for plural in (False, True):
                                words.update(tokenize(render_caption([phrase], plural, [0.0])))
            words.update(w for options in SAME_CAPTIONS for text in options for w in tokenize(text))
            self._vocabulary = Vocabulary(sorted(words))
        return self._vocabulary

    def check_catalog(self, catalog: Catalog) -> None:
        """Raise :class:`~dialog_env.errors.UserSimulatorError` unless ``catalog`` has the shoe attributes."""
        check_catalog(catalog, self.name)

    def describe(
        self,
        catalog: Catalog,
        targets: np.ndarray,
        shown: np.ndarray,
        rngs: Sequence[np.random.Generator],
    ) -> list[str]:
        """Feedback about one attribute per pair (see :meth:`UserSimulator.describe`)."""
        return self._captions(catalog, targets, shown, rngs, with_statements=False)  # type: ignore[return-value]

    def explain(
        self,
        catalog: Catalog,
        targets: np.ndarray,
        shown: np.ndarray,
        rngs: Sequence[np.random.Generator],
    ) -> list[Feedback]:
        """Like :meth:`describe`, with the statement behind each caption (none for "the same").

        Args:
            catalog: catalogue with the shoe attributes.
            targets: ``(B,)`` target indices.
            shown: ``(B,)`` shown-image indices.
            rngs: ``B`` generators, one per dialog.

        Returns:
            ``B`` :class:`~dialog_env.users.rule.Feedback` objects.
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
        targets, shown = check_pairs(targets, shown, rngs)
        codes = self.ranking.codes(catalog)
        target_codes, shown_codes = codes[targets], codes[shown]
        uniforms = draw_uniforms(rngs)
        order, num_differences = self.ranking.rank(target_codes, shown_codes, uniforms[:, DRAWS.salience :], top=1)
        results: list = []
        for b, u in enumerate(uniforms.tolist()):
            plural = u[DRAWS.plural] < self.plural_probability
            if num_differences[b] == 0:
                text = same_caption(plural, u[DRAWS.variant])
                results.append(Feedback(text, ()) if with_statements else text)
                continue
            column = order[b][0]
            name = ATTRIBUTE_NAMES[column]
            t_value = ATTRIBUTE_VALUES[column][int(target_codes[b, column])]
            s_value = ATTRIBUTE_VALUES[column][int(shown_codes[b, column])]
            text = render_caption([_relative_phrase(name, t_value, s_value)], plural, [0.0])
            statement = Statement(name, t_value, s_value, "difference", t_value)
            results.append(Feedback(text, (statement,)) if with_statements else text)
        return results


register_user(RelativeAttributeUser.name, RelativeAttributeUser)
