"""The shoe domain: what shoes are, what they tend to look like, and how shoppers compare them.

Shared by the synthetic catalogue generator (:mod:`dialog_env.synthetic`), the rule-based and
relative-attribute users (:mod:`dialog_env.users`) and the attribute oracle
(:mod:`agents.oracle`), so that all of them speak of the same attributes in the same words.

- :mod:`~dialog_env.domain.schema`: the attributes, their values, ordinal flags and column order.
- :mod:`~dialog_env.domain.priors`: the per-category priors the generator draws attributes from.
- :mod:`~dialog_env.domain.salience`: salience weights and the ranking of the differences
  between two shoes.
- :mod:`~dialog_env.domain.phrases`: the phrase grammar (absolute and difference phrases,
  rendering a caption).

Nothing here draws random numbers: callers pass in generators' draws, so the order of the draws
stays theirs.
"""

from dialog_env.domain.phrases import (
    SAME_CAPTIONS,
    VAGUE_CAPTIONS,
    Phrase,
    absolute_phrases,
    adjective,
    caption_words,
    choose_phrase,
    cumulative_weights,
    difference_options,
    difference_phrases,
    noun_phrase,
    render_caption,
    same_caption,
    vague_caption,
)
from dialog_env.domain.priors import (
    ACHROMATIC_LIGHTNESS,
    CATEGORY_PRIOR,
    CATEGORY_SHARE,
    DEFAULT_PRIOR,
    SHINE_GIVEN_MATERIAL,
    category_priors,
    prior_probabilities,
)
from dialog_env.domain.salience import DEFAULT_SALIENCE, SalienceRanking, remarkable_differences, salience_weights
from dialog_env.domain.schema import (
    ATTRIBUTE_NAMES,
    ATTRIBUTE_VALUES,
    COLORS,
    NUM_ATTRIBUTES,
    ORDINAL_FLAGS,
    SHOE_ATTRIBUTES,
    SHOE_CATEGORIES,
    SHOE_SCHEMA,
    attribute_codes,
    check_catalog,
)

__all__ = [
    # schema
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
    # priors
    "CATEGORY_SHARE",
    "DEFAULT_PRIOR",
    "CATEGORY_PRIOR",
    "SHINE_GIVEN_MATERIAL",
    "ACHROMATIC_LIGHTNESS",
    "category_priors",
    "prior_probabilities",
    # salience
    "DEFAULT_SALIENCE",
    "salience_weights",
    "remarkable_differences",
    "SalienceRanking",
    # phrases
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
