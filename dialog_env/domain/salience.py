"""Which differences between two shoes a shopper mentions first: salience weights and the ranking.

Each attribute has a salience weight (:data:`DEFAULT_SALIENCE`: a change of category is said
before a change of colour, which is said before a change of ornament). The score of a difference
is its log-weight, plus the log of a magnitude that grows with the number of ordinal steps
("much higher" beats "higher"), plus a bounded random perturbation, so that near-equal
differences may swap places while clearly dominant ones never do. :class:`SalienceRanking` sorts
the remarkable differences of a batch of (target, shown image) pairs by that score; the
rule-based user says the first one to three of them, the relative-attribute user the first one.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from dialog_env.catalog import Catalog
from dialog_env.domain.schema import ATTRIBUTE_NAMES, ORDINAL_FLAGS, attribute_codes
from dialog_env.errors import ConfigurationError

__all__ = ["DEFAULT_SALIENCE", "salience_weights", "remarkable_differences", "SalienceRanking"]

#: How salient a difference in each attribute is (a larger weight is said first and more often).
DEFAULT_SALIENCE: dict[str, float] = {
    "category": 10.0, "color": 4.0, "lightness": 2.0, "accent": 1.4, "heel_height": 2.6, "heel_shape": 1.6,
    "toe": 2.0, "shaft": 2.2, "material": 2.3, "shine": 1.5, "pattern": 2.8, "closure": 1.9,
    "platform": 1.2, "ornament": 1.5,
}  # fmt: skip

_COLOR, _LIGHTNESS = ATTRIBUTE_NAMES.index("color"), ATTRIBUTE_NAMES.index("lightness")
_HEEL_HEIGHT, _HEEL_SHAPE = ATTRIBUTE_NAMES.index("heel_height"), ATTRIBUTE_NAMES.index("heel_shape")


def salience_weights(overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """:data:`DEFAULT_SALIENCE` with some weights replaced.

    Args:
        overrides: attribute -> weight (> 0) for the attributes to change.

    Returns:
        Attribute -> weight, for every shoe attribute.

    Raises:
        ConfigurationError: an unknown attribute, or a weight that is not > 0.
    """
    weights = dict(DEFAULT_SALIENCE)
    for attribute, weight in (overrides or {}).items():
        if attribute not in weights:
            raise ConfigurationError(f"salience names unknown attribute {attribute!r}; known: {list(weights)}")
        if not weight > 0:
            raise ConfigurationError(f"salience of {attribute!r} must be > 0, got {weight}")
        weights[attribute] = float(weight)
    return weights


def remarkable_differences(target_codes: np.ndarray, shown_codes: np.ndarray) -> np.ndarray:
    """The attributes in which each target differs from its shown image in a way worth saying.

    Args:
        target_codes: ``(B, A)`` integer attribute codes of the targets, in column order.
        shown_codes: ``(B, A)`` codes of the shown images.

    Returns:
        ``(B, A) bool``: the codes differ, except that the lightness of a colour change is said with
        the colour ("is dark blue"), and a heel shape only counts when both shoes have a heel.
    """
    differs = target_codes != shown_codes
    differs[:, _LIGHTNESS] &= ~differs[:, _COLOR]
    differs[:, _HEEL_SHAPE] &= (target_codes[:, _HEEL_HEIGHT] > 0) & (shown_codes[:, _HEEL_HEIGHT] > 0)
    return differs


class SalienceRanking:
    """Ranks the remarkable differences of (target, shown image) pairs, most salient first.

    Args:
        salience: attribute -> weight; overrides :data:`DEFAULT_SALIENCE` for the given names.
        salience_jitter: half-width of the uniform random perturbation of the log-salience, so
            that differences whose salience is within a factor ``exp(2 * salience_jitter)`` may
            swap places; 0 always ranks them in a fixed order.

    Attributes:
        salience: attribute -> weight, for every shoe attribute.
        salience_jitter: as given.
    """

    def __init__(self, salience: Mapping[str, float] | None = None, salience_jitter: float = 0.5) -> None:
        weights = salience_weights(salience)
        if salience_jitter < 0:
            raise ConfigurationError(f"salience_jitter must be >= 0, got {salience_jitter}")
        self.salience = weights
        self.salience_jitter = float(salience_jitter)
        self._log_salience = np.log(np.array([weights[a] for a in ATTRIBUTE_NAMES]))
        self._ordinal = np.array(ORDINAL_FLAGS)

    def __repr__(self) -> str:
        return f"SalienceRanking(salience_jitter={self.salience_jitter})"

    def codes(self, catalog: Catalog) -> np.ndarray:
        """:func:`~dialog_env.domain.schema.attribute_codes` of ``catalog``, ``(N, A)``.

        Cached for the last catalogue seen: environments call with the same catalogue every step
        (a catalogue is immutable). The cache is not pickled.
        """
        cached = getattr(self, "_codes_cache", None)
        if cached is not None and cached[0] is catalog:
            return cached[1]
        codes = attribute_codes(catalog)
        self._codes_cache = (catalog, codes)
        return codes

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_codes_cache", None)  # a cache of a catalogue: not part of the ranking
        return state

    def rank(
        self, target_codes: np.ndarray, shown_codes: np.ndarray, jitter_uniforms: np.ndarray, top: int = 3
    ) -> tuple[list[list[int]], list[int]]:
        """The most salient remarkable differences of each pair.

        Args:
            target_codes: ``(B, A)`` integer attribute codes of the targets, in column order.
            shown_codes: ``(B, A)`` codes of the shown images.
            jitter_uniforms: ``(B, A) float64`` uniforms in ``[0, 1)``, one per pair and attribute,
                that perturb the scores.
            top: how many columns to return per pair.

        Returns:
            ``(order, num_differences)``: for each pair, the ``top`` attribute columns with the
            highest scores, best first (only the first ``num_differences`` of them are
            differences), and its number of remarkable differences; Python lists, ``B`` each.
        """
        differs = remarkable_differences(target_codes, shown_codes)
        ordinal_steps = np.abs(target_codes.astype(np.int64) - shown_codes)
        magnitude = np.where(self._ordinal, 1.0 + 0.5 * np.maximum(ordinal_steps - 1, 0), 1.0)
        # A bounded perturbation: near-equal differences swap places, clearly dominant ones never do.
        jitter = self.salience_jitter * (2.0 * jitter_uniforms - 1.0)
        scores = self._log_salience + np.log(magnitude) + jitter
        scores = np.where(differs, scores, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :top].tolist()
        return order, differs.sum(axis=1).tolist()
