"""The attribute oracle: a *privileged* reference agent in the spirit of WhittleSearch.

It reads the rule-based user's captions back into attribute constraints ("is black" -> colour is
black; "has a higher heel" -> heel height above the shown image's; "has no strap" -> closure is
not a strap...), accumulates them over the dialog, and shows the unseen catalogue image that
satisfies most of them, ties broken by feature distance to the last image shown. It is
privileged twice over: it reads the catalogue's attribute annotations, and it knows the rule-based
user's phrasing exactly. It shows how much information the feedback carries, not what a learned
agent can reach; label it privileged wherever it is reported.

The reading is derived from the simulator's own phrase grammar (:mod:`dialog_env.domain.phrases`),
not written by hand: a phrase that the user says about attribute ``a`` when the shown image has
value ``s`` allows exactly the target values ``t`` for which the user could have said it. Captions
are matched phrase by phrase, longest phrase first.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from agents.base import Agent
from dialog_env.catalog import Catalog
from dialog_env.domain.phrases import SAME_CAPTIONS, difference_phrases
from dialog_env.domain.schema import ATTRIBUTE_NAMES, ATTRIBUTE_VALUES, attribute_codes, check_catalog
from dialog_env.errors import ConfigurationError

__all__ = ["AttributeOracleAgent", "read_caption"]


@functools.lru_cache(maxsize=1)
def _phrase_tables() -> tuple[dict[tuple[int, int, str], np.ndarray], re.Pattern[str]]:
    """What each phrase of the rule-based user allows, and one regex that finds them.

    Returns:
        ``(allowed, pattern)``: ``(attribute column, shown code, phrase) -> (V,) bool`` mask of the
        target codes the phrase allows, and a regex matching any phrase (longest alternatives first).
    """
    allowed: dict[tuple[int, int, str], np.ndarray] = {}
    phrases: set[str] = set()
    for column, name in enumerate(ATTRIBUTE_NAMES):
        values = ATTRIBUTE_VALUES[column]
        for shown_code, shown in enumerate(values):
            for target_code, target in enumerate(values):
                if target == shown:
                    continue
                for lightness in ATTRIBUTE_VALUES[ATTRIBUTE_NAMES.index("lightness")]:
                    for phrase in difference_phrases(name, target, shown, lightness):
                        for text in {phrase.singular, phrase.plural}:
                            key = (column, shown_code, text)
                            if key not in allowed:
                                allowed[key] = np.zeros(len(values), dtype=bool)
                            allowed[key][target_code] = True
                            phrases.add(text)
    alternatives = sorted(phrases, key=lambda text: (-len(text), text))
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(text) for text in alternatives) + r")\b")
    return allowed, pattern


_SAME_TEXTS = frozenset(text for options in SAME_CAPTIONS for text in options)


def read_caption(caption: str, shown_codes: np.ndarray) -> list[tuple[int, np.ndarray]] | None:
    """Constraints on the target read from one caption of the rule-based user.

    Args:
        caption: the caption.
        shown_codes: ``(A,)`` attribute codes of the image the caption is about, in the rule-based
            user's attribute order.

    Returns:
        ``None`` when the caption says the target looks the same as the shown image (every
        attribute equal); otherwise a list of ``(attribute column, allowed target codes)``, empty
        for a caption with nothing recognisable (e.g. a vague remark).
    """
    if caption in _SAME_TEXTS:
        return None
    allowed, pattern = _phrase_tables()
    constraints = []
    for match in pattern.finditer(caption):
        text = match.group(0)
        for column in range(len(ATTRIBUTE_NAMES)):
            mask = allowed.get((column, int(shown_codes[column]), text))
            if mask is not None:
                constraints.append((column, mask))
    return constraints


class AttributeOracleAgent(Agent):
    """Privileged reference: shows the unseen image that satisfies most constraints read so far.

    The constraints are read from the rule-based user's captions (see the module docstring).

    Needs ``infos["feedback_text"]`` and ``infos["shown_index"]`` (the environments provide both)
    and a catalogue with the rule-based user's shoe attributes.
    """

    name = "attribute-oracle (privileged)"

    def __init__(self) -> None:
        self._codes = np.zeros((0, 0), dtype=np.int64)
        self._features = np.zeros((0, 0), dtype=np.float32)
        self._scores = np.zeros((0, 0), dtype=np.float64)
        self._shown = np.zeros((0, 0), dtype=np.int64)
        self._keys: np.ndarray | None = None

    def reset(self, catalog: Catalog, num_dialogs: int) -> None:
        """Prepare for ``num_dialogs`` dialogs over ``catalog``, which needs the shoe attributes."""
        check_catalog(catalog, "rule")  # it reads the rule-based user's captions
        self._codes = attribute_codes(catalog).astype(np.int64)
        self._features = catalog.features
        self._norms = catalog.squared_norms
        self._scores = np.zeros((num_dialogs, catalog.num_images))
        self._shown = np.full((num_dialogs, 0), -1, dtype=np.int64)
        self._keys = None

    def act(self, observations: Mapping[str, np.ndarray], infos: Mapping[str, Any]) -> np.ndarray:
        """The next images: see :meth:`agents.base.Agent.act`; reads ``feedback_text`` and ``shown_index``."""
        if self._codes.size == 0:
            raise ConfigurationError("act() called before reset()")
        if "feedback_text" not in infos:
            raise ConfigurationError("the attribute oracle reads infos['feedback_text'], which these infos lack")
        new = np.asarray(observations["turn"]).reshape(-1) == 0
        shown_now = np.asarray(infos["shown_index"], dtype=np.int64)
        self._scores[new] = 0.0
        self._shown[new] = -1
        self._shown = np.concatenate([self._shown, shown_now[:, None]], axis=1)
        for dialog, (caption, shown) in enumerate(zip(infos["feedback_text"], shown_now, strict=True)):
            constraints = read_caption(str(caption), self._codes[shown])
            if constraints is None:  # "the same": every attribute equals the shown image's
                self._scores[dialog] += (self._codes == self._codes[shown]).all(axis=1)
                continue
            for column, mask in constraints:
                self._scores[dialog] += mask[self._codes[:, column]]
        # Ties broken by squared distance to the last shown image, scaled below one constraint.
        shown_features = self._features[shown_now]
        distances = self._norms[None, :] - 2.0 * shown_features @ self._features.T
        distances += np.einsum("bd,bd->b", shown_features, shown_features)[:, None]
        distances -= distances.min(axis=1, keepdims=True)
        keys = self._scores - 0.5 * distances / (distances.max(axis=1, keepdims=True) + 1e-12)
        self._keys = keys
        candidates = keys.copy()
        rows = np.repeat(np.arange(keys.shape[0]), self._shown.shape[1])
        valid = self._shown.reshape(-1) >= 0
        candidates[rows[valid], self._shown.reshape(-1)[valid]] = -np.inf
        return np.argmax(candidates, axis=1).astype(np.int64)

    def rank_targets(self, targets: np.ndarray) -> np.ndarray:
        """Images the oracle ranks strictly above each target (by constraints, then distance)."""
        if self._keys is None:
            raise ConfigurationError("rank_targets() called before act()")
        target_keys = self._keys[np.arange(self._keys.shape[0]), np.asarray(targets, dtype=np.int64)]
        return np.count_nonzero(self._keys > target_keys[:, None], axis=1).astype(np.int64)
