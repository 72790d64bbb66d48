"""Relative-attribute feedback (WhittleSearch style): one attribute per turn, no free phrasing.

Guo et al. (2018) compare natural-language feedback with the relative-attribute feedback of
WhittleSearch (Kovashka et al., 2012), in which the user may only say, about one attribute per
turn, "more X" or "less X" (an ordinal attribute: lightness, heel height, shaft height, shine,
platform) or "is X" (a categorical one: category, colour, accent, heel shape, toe, material,
pattern, closure, ornament). :class:`RelativeAttributeUser` gives that feedback about the same
shoe attributes, choosing the attribute exactly as the rule-based user chooses its most salient
difference, so that the two users differ only in how much they say.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from dialog_env.catalog import Catalog
from dialog_env.text import Vocabulary, tokenize
from dialog_env.users.attribute import (
    _ATTRIBUTES,
    _SAME,
    _U_PLURAL,
    _U_VARIANT,
    _VALUES,
    Feedback,
    RuleBasedUser,
    Statement,
    _absolute_phrases,
    _adj,
    _Phrase,
    _render,
    _same_caption,
)
from dialog_env.users.base import register_user

__all__ = ["RelativeAttributeUser", "ORDINAL_ADJECTIVES"]

#: The adjective of each ordinal attribute in "is more X" / "is less X".
ORDINAL_ADJECTIVES: dict[str, str] = {
    "lightness": "bright",
    "heel_height": "high heeled",
    "shaft": "tall",
    "shine": "shiny",
    "platform": "platformed",
}


@functools.lru_cache(maxsize=None)
def _relative_phrase(attribute: str, target: str, shown: str) -> _Phrase:
    """The one phrase of this user for a difference in ``attribute``."""
    if attribute in ORDINAL_ADJECTIVES:
        values = _VALUES[_ATTRIBUTES.index(attribute)]
        direction = "more" if values.index(target) > values.index(shown) else "less"
        return _adj(f"{direction} {ORDINAL_ADJECTIVES[attribute]}")
    return _absolute_phrases(attribute, target)[0]


class RelativeAttributeUser(RuleBasedUser):
    """Relative-attribute feedback on the shoe attributes: exactly one attribute per turn.

    Ordinal attributes get "is more X" / "is less X" (``X`` from :data:`ORDINAL_ADJECTIVES`);
    categorical ones "is X" / "has X" with the target's value ("is suede", "has laces", "is a
    boot"). Identical attributes give "is the same". The attribute is the rule-based user's most
    salient difference (same salience weights and jitter, from the same per-dialog draws).

    Args:
        salience: attribute -> weight, overriding the rule-based user's defaults.
        plural_probability: how often the feedback speaks of the pair ("are more shiny").
        salience_jitter: see :class:`RuleBasedUser`.
    """

    name = "relative-attribute"

    def __init__(
        self,
        salience: dict[str, float] | None = None,
        plural_probability: float = 0.55,
        salience_jitter: float = 0.5,
    ) -> None:
        super().__init__(
            salience=salience,
            count_probabilities=(1.0, 0.0, 0.0),
            plural_probability=plural_probability,
            salience_jitter=salience_jitter,
        )

    def __repr__(self) -> str:
        return f"RelativeAttributeUser(salience_jitter={self.salience_jitter})"

    @property
    def vocabulary(self) -> Vocabulary:
        if self._vocabulary is None:
            words: set[str] = set()
            for column, name in enumerate(_ATTRIBUTES):
                for target in _VALUES[column]:
                    for shown in _VALUES[column]:
                        if target != shown:
                            phrase = _relative_phrase(name, target, shown)
                            for plural in (False, True):
                                words.update(tokenize(_render([phrase], plural, [0.0])))
            words.update(w for options in _SAME for text in options for w in tokenize(text))
            self._vocabulary = Vocabulary(sorted(words))
        return self._vocabulary

    def _captions(
        self,
        catalog: Catalog,
        targets: np.ndarray,
        shown: np.ndarray,
        rngs: Sequence[np.random.Generator],
        with_statements: bool,
    ) -> list[str] | list[Feedback]:
        target_codes, shown_codes, uniforms, order, num_differences = self._ranked_differences(catalog, targets, shown, rngs)
        results: list = []
        for b, u in enumerate(uniforms.tolist()):
            plural = u[_U_PLURAL] < self.plural_probability
            if num_differences[b] == 0:
                text = _same_caption(plural, u[_U_VARIANT])
                results.append(Feedback(text, ()) if with_statements else text)
                continue
            column = order[b][0]
            name = _ATTRIBUTES[column]
            t_value = _VALUES[column][int(target_codes[b, column])]
            s_value = _VALUES[column][int(shown_codes[b, column])]
            text = _render([_relative_phrase(name, t_value, s_value)], plural, [0.0])
            statement = Statement(name, t_value, s_value, "difference", t_value)
            results.append(Feedback(text, (statement,)) if with_statements else text)
        return results


register_user(RelativeAttributeUser.name, RelativeAttributeUser)
