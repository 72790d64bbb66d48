"""The corpus user: each turn a real shopper's caption that is true of the target and the shown image.

The user brings a caption file in the Shoes relative-caption format (``user_kwargs={"captions":
path}``). Every caption is read by the parser (:func:`dialog_env.domain.parser.parse_caption`)
into claims over the shoe attributes; a caption with claims is *true* of a pair of catalogue images
when every one of its claims holds for them (the words the parser could not read ride along, as
they would from a real shopper).

Each turn, for a (target, shown image) pair, the user ranks the remarkable differences by salience
and decides how many to say exactly as the rule-based user does, with the same draws from the
dialog's generator (:meth:`~dialog_env.users.rule.RuleBasedUser.plan`). It then answers with a true
caption about the most salient differences: one whose claims are about exactly the ``k`` most
salient differences, for ``k`` from the number to say down to 1, then about any single one of the
next most salient differences; among the true captions of the first set that has any, the dialog's
generator picks one. When the images do not differ, it answers with a caption that only says so
("are identical"). When no caption fits, it falls back to the rule-based user's phrasing of the same
plan and counts it (:attr:`CorpusUser.counts`).

An index keeps the per-turn cost close to the rule-based user's: the captions grouped by the set of
attributes they are about, with a table per group and attribute of the captions that hold for each
pair of codes (for one attribute, the answer itself; for several, an intersection of a few small
sets, memoised per pair of codes).

``image_half=0`` or ``1`` keeps only the captions whose target image falls in that half of the
file's target images (split by a fixed hash of the image name, the same on every machine): two
users over disjoint phrasings, to train against one and evaluate against the other.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dialog_env.catalog import Catalog
from dialog_env.data.captions import read_caption_records
from dialog_env.domain.parser import SAME, claim_table, parse_caption
from dialog_env.domain.schema import ATTRIBUTE_NAMES, NUM_ATTRIBUTES, SHOE_SCHEMA, check_catalog
from dialog_env.errors import ConfigurationError
from dialog_env.text import Vocabulary, tokenize
from dialog_env.users.base import UserSimulator, register_user
from dialog_env.users.rule import DRAWS, CaptionPlan, RuleBasedUser

__all__ = ["CorpusUser", "CorpusFeedback"]

#: How many of the most salient differences are tried one by one before falling back.
_SINGLE_TRIES = 5
_MEMO_SIZE = 1 << 17


@dataclass(frozen=True)
class CorpusFeedback:
    """One answer of :meth:`CorpusUser.explain`.

    Attributes:
        text: the caption said.
        record: the 0-based record of the caption file it was taken from, or ``-1`` for the
            rule-based fallback.
        attributes: the attributes its claims are about (the fallback's: those it says).
    """

    text: str
    record: int
    attributes: tuple[str, ...]

    @property
    def is_real(self) -> bool:
        """Whether the caption is a real shopper's (not the fallback)."""
        return self.record >= 0


class CorpusUser(UserSimulator):
    """Answers with real shoppers' captions that are true of (target, shown image).

    Args:
        captions: a relative-caption JSON file in the Shoes format
            (``[{"ImageName", "ReferenceImageName", "RelativeCaption"}, ...]``).
        image_half: ``None`` for every caption, or ``0`` / ``1`` for the captions of one half of
            the target images (see the module docstring).
        fully_parsed_only: use only the captions the parser reads entirely (no unparsed word).
        **rule_options: options of the :class:`~dialog_env.users.rule.RuleBasedUser` that ranks
            the differences and phrases the fallback (``salience``, ``count_probabilities``,
            ``plural_probability``, ``salience_jitter``, the noise rates).

    Attributes:
        counts: ``{"real": turns answered with a real caption, "fallback": turns answered by the
            rule-based phrasing}`` since construction (or :meth:`reset_counts`).
        usable: how many captions of the file can be said (with claims, in the half).
        records: records in the file.

    Raises:
        CaptionNotFoundError, CaptionFormatError: the file is missing or malformed.
        ConfigurationError: a bad ``image_half``, or no usable caption in the file.
    """

    name = "corpus"

    def __init__(
        self,
        captions: str | os.PathLike[str],
        image_half: int | None = None,
        fully_parsed_only: bool = False,
        **rule_options: Any,
    ) -> None:
        if image_half not in (None, 0, 1):
            raise ConfigurationError(f"image_half must be None, 0 or 1, got {image_half!r}")
        self.path = Path(captions)
        self.image_half = image_half
        self.fully_parsed_only = bool(fully_parsed_only)
        self.rule = RuleBasedUser(**rule_options)
        records = read_caption_records(self.path, "relative", non_ascii="transliterate")
        self.records = len(records)
        self._texts: list[str] = []
        self._record_of: list[int] = []
        self._attributes: list[tuple[str, ...]] = []  # per caption id: the attributes it is about
        self._same: list[int] = []  # caption ids (into _texts) that only say "the same"
        groups: dict[tuple[int, ...], list[tuple[int, list]]] = {}  # attribute columns -> [(caption id, claims)]
        for number, (image, _reference, text) in enumerate(records):
            if image_half is not None and zlib.crc32(image.encode("utf-8")) % 2 != image_half:
                continue
            parsed = parse_caption(text)
            if not parsed.claims or (self.fully_parsed_only and parsed.unparsed):
                continue
            caption_id = len(self._texts)
            self._texts.append(text)
            self._record_of.append(number)
            self._attributes.append(tuple(sorted({c.attribute for c in parsed.claims if c != SAME})))
            if parsed.claims == (SAME,):
                self._same.append(caption_id)
                continue
            columns = tuple(sorted({ATTRIBUTE_NAMES.index(c.attribute) for c in parsed.claims}))
            groups.setdefault(columns, []).append((caption_id, list(parsed.claims)))
        self.usable = len(self._texts)
        if not self.usable:
            raise ConfigurationError(
                f"caption file {str(self.path)!r}: none of its {self.records} captions"
                + (f" in image half {image_half}" if image_half is not None else "")
                + " says anything the parser reads about the shoe attributes; the corpus user needs some"
            )
        self._members = groups  # built into _groups on first use (see _group)
        self._groups: dict[tuple[int, ...], tuple[list[list[Any]], ...]] = {}
        self._memo: dict[tuple, tuple[int, ...]] = {}
        self._vocabulary: Vocabulary | None = None
        self.counts = {"real": 0, "fallback": 0}

    def __repr__(self) -> str:
        half = "" if self.image_half is None else f", image_half={self.image_half}"
        return f"CorpusUser({str(self.path)!r}{half}, usable={self.usable} of {self.records})"

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_memo"], state["_groups"] = {}, {}  # caches: not part of the user
        return state

    # ------------------------------------------------------------------ reporting
    @property
    def real_caption_share(self) -> float:
        """The share of turns answered with a real caption since the counts were reset (NaN before any)."""
        total = self.counts["real"] + self.counts["fallback"]
        return self.counts["real"] / total if total else float("nan")

    def reset_counts(self) -> None:
        """Start counting real and fallback turns afresh."""
        self.counts = {"real": 0, "fallback": 0}

    # ------------------------------------------------------------------ vocabulary and catalogue
    @property
    def vocabulary(self) -> Vocabulary:
        """Every word this user can say: those of its usable captions and of the rule-based fallback."""
        if self._vocabulary is None:
            words = set(self.rule.vocabulary.words[2:])
            for text in self._texts:
                words.update(tokenize(text))
            self._vocabulary = Vocabulary(sorted(words))
        return self._vocabulary

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
        """Relative captions (see :meth:`UserSimulator.describe`); the rule-based user's draws per dialog."""
        return [feedback.text for feedback in self.explain(catalog, targets, shown, rngs)]

    def explain(
        self,
        catalog: Catalog,
        targets: np.ndarray,
        shown: np.ndarray,
        rngs: Sequence[np.random.Generator],
    ) -> list[CorpusFeedback]:
        """Like :meth:`describe`, with where each caption came from.

        Args:
            catalog: catalogue with the shoe attributes.
            targets: ``(B,)`` target indices.
            shown: ``(B,)`` shown-image indices.
            rngs: ``B`` generators, one per dialog.

        Returns:
            ``B`` :class:`CorpusFeedback` objects.
        """
        plan = self.rule.plan(catalog, targets, shown, rngs, top=_SINGLE_TRIES)
        answers = []
        for b in range(len(plan.uniforms)):
            caption_id = self._choose(plan, b)
            if caption_id is None:
                self.counts["fallback"] += 1
                said = tuple(ATTRIBUTE_NAMES[c] for c in plan.order[b][: plan.said[b]])
                answers.append(CorpusFeedback(str(self.rule.say(plan, b)), -1, said))
                continue
            self.counts["real"] += 1
            answers.append(
                CorpusFeedback(self._texts[caption_id], self._record_of[caption_id], self._attributes[caption_id])
            )
        return answers

    def _choose(self, plan: CaptionPlan, b: int) -> int | None:
        """The caption id dialog ``b`` of ``plan`` says, or ``None`` for the fallback."""
        pick = plan.uniforms[b][DRAWS.variant]
        differences = plan.num_differences[b]
        if differences == 0:
            return self._same[int(pick * len(self._same))] if self._same else None
        order = plan.order[b]
        t_row, s_row = plan.target_codes[b], plan.shown_codes[b]
        keys = [tuple(sorted(order[:k])) for k in range(plan.said[b], 0, -1)]
        keys += [(column,) for column in order[1 : min(differences, _SINGLE_TRIES)]]
        for columns in keys:
            true_ids = self._true_captions(columns, t_row, s_row)
            if true_ids:
                return true_ids[int(pick * len(true_ids))]
        return None

    def _group(self, columns: tuple[int, ...]) -> tuple[list[list[Any]], ...] | None:
        """The index of the captions about exactly ``columns`` (``None`` when there are none).

        Per column, ``rows[t][s]``: the ids of the captions whose claims on that column hold for
        (target code ``t``, shown code ``s``); a tuple in caption order for a one-column set (the
        answer itself), a frozenset otherwise (to intersect). Built on first use.
        """
        group = self._groups.get(columns)
        if group is not None or columns not in self._members:
            return group
        per_column = []
        for column in columns:
            size = len(SHOE_SCHEMA[ATTRIBUTE_NAMES[column]].values)
            rows: list[list[list[int]]] = [[[] for _ in range(size)] for _ in range(size)]
            for caption_id, claims in self._members[columns]:
                tables = [claim_table(c) for c in claims if ATTRIBUTE_NAMES.index(c.attribute) == column]
                for t in range(size):
                    for s in range(size):
                        if all(table[t][s] for table in tables):
                            rows[t][s].append(caption_id)
            kind = tuple if len(columns) == 1 else frozenset
            per_column.append([[kind(cell) for cell in row] for row in rows])
        group = self._groups[columns] = tuple(per_column)
        return group

    def _true_captions(self, columns: tuple[int, ...], t_row: Sequence[int], s_row: Sequence[int]) -> tuple[int, ...]:
        """The ids of the captions about exactly ``columns`` that are true of the pair, in caption order."""
        group = self._group(columns)
        if group is None:
            return ()
        if len(columns) == 1:
            return group[0][t_row[columns[0]]][s_row[columns[0]]]
        key = (columns, tuple(t_row[c] for c in columns), tuple(s_row[c] for c in columns))
        found = self._memo.get(key)
        if found is None:
            found = frozenset.intersection(*(rows[t_row[c]][s_row[c]] for c, rows in zip(columns, group, strict=True)))
            found = tuple(sorted(found))
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = found
        return found


assert NUM_ATTRIBUTES >= _SINGLE_TRIES
register_user(CorpusUser.name, CorpusUser)
