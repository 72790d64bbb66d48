"""Words <-> token ids: the one tokenizer and vocabulary used by everything that touches text.

Feedback is lower-cased and split into words (letters, digits, and in-word apostrophes:
``"don't"`` is one word; ``"open-toed"`` is two). Ids: ``0`` is padding, ``1`` the unknown word,
the vocabulary's words follow. Feedback is padded or cut to :data:`MAX_FEEDBACK_TOKENS` tokens
(16, as in Guo et al. 2018).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from dialog_env.errors import ConfigurationError, DependencyNotInstalled, VocabularyError

__all__ = ["PAD_ID", "UNK_ID", "PAD_TOKEN", "UNK_TOKEN", "MAX_FEEDBACK_TOKENS", "tokenize", "Vocabulary", "corpus_bleu"]

PAD_ID = 0
UNK_ID = 1
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
MAX_FEEDBACK_TOKENS = 16

_MEMO_SIZE = 1 << 16
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """Split feedback into lower-case words.

    >>> tokenize("Is darker, and has an open-toe!")
    ['is', 'darker', 'and', 'has', 'an', 'open', 'toe']
    """
    return _WORD.findall(text.lower())


class Vocabulary:
    """A fixed word list with reserved padding (id 0) and unknown-word (id 1) entries.

    Args:
        words: the words, in id order (ids start at 2). Duplicates and the reserved tokens are
            rejected; every word must be a single token under :func:`tokenize`.
    """

    def __init__(self, words: Iterable[str]) -> None:
        words = list(words)
        seen: set[str] = set()
        for word in words:
            if not isinstance(word, str) or tokenize(word) != [word]:
                raise VocabularyError(f"vocabulary entry {word!r} is not a single lower-case word")
            if word in seen:
                raise VocabularyError(f"vocabulary lists {word!r} twice")
            seen.add(word)
        self._words: list[str] = [PAD_TOKEN, UNK_TOKEN, *words]
        self._ids: dict[str, int] = {word: index for index, word in enumerate(self._words)}
        # Simulated feedback repeats itself: remember the ids of recent texts (bounded).
        self._encoded: dict[str, list[int]] = {}

    @classmethod
    def from_texts(cls, texts: Iterable[str], min_count: int = 1) -> Vocabulary:
        """Build a vocabulary from texts: words seen at least ``min_count`` times, most frequent first.

        Ties are alphabetical, so the result does not depend on the order of equally frequent words.
        """
        counts: dict[str, int] = {}
        for text in texts:
            for word in tokenize(text):
                counts[word] = counts.get(word, 0) + 1
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(kept)

    def __len__(self) -> int:
        """Number of ids, the reserved ones included."""
        return len(self._words)

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and word in self._ids and self._ids[word] > UNK_ID

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self._words == other._words

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_encoded"] = {}  # a cache, not part of the vocabulary
        state.pop("_spaced", None)  # idem
        return state

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} ids: {self._words[2:8]}...)"

    @property
    def words(self) -> list[str]:
        """The words in id order, reserved tokens excluded."""
        return self._words[2:]

    def word_id(self, word: str) -> int:
        """The id of ``word``, or :data:`UNK_ID`."""
        return self._ids.get(word, UNK_ID)

    def word(self, token_id: int) -> str:
        """The word of ``token_id``."""
        return self._words[token_id]

    def encode(self, text: str, max_tokens: int = MAX_FEEDBACK_TOKENS) -> np.ndarray:
        """Token ids of ``text``, padded with :data:`PAD_ID` or cut to ``max_tokens``.

        Returns:
            ``(max_tokens,) int64``.
        """
        ids = np.full(max_tokens, PAD_ID, dtype=np.int64)
        tokens = [self._ids.get(w, UNK_ID) for w in tokenize(text)][:max_tokens]
        ids[: len(tokens)] = tokens
        return ids

    def encode_batch(self, texts: Sequence[str], max_tokens: int = MAX_FEEDBACK_TOKENS) -> np.ndarray:
        """Token ids of several texts. Returns ``(len(texts), max_tokens) int64``."""
        out = np.full((len(texts), max_tokens), PAD_ID, dtype=np.int64)
        lookup, memo = self._ids.get, self._encoded
        for row, text in enumerate(texts):
            tokens = memo.get(text)
            if tokens is None:
                tokens = [lookup(w, UNK_ID) for w in _WORD.findall(text.lower())]
                if len(memo) >= _MEMO_SIZE:
                    memo.clear()
                memo[text] = tokens
            tokens = tokens[:max_tokens]
            out[row, : len(tokens)] = tokens
        return out

    def decode(self, token_ids: Sequence[int] | np.ndarray) -> str:
        """The words of ``token_ids`` joined by spaces, padding dropped."""
        return " ".join(self._words[int(i)] for i in token_ids if int(i) != PAD_ID)

    def decode_batch(self, token_ids: np.ndarray) -> list[str]:
        """The texts of several rows of token ids, as :meth:`decode` writes each, in one pass.

        Args:
            token_ids: ``(B, T)`` integer ids (e.g. ``int64``), padding anywhere.

        Returns:
            ``B`` texts.
        """
        spaced = self.__dict__.get("_spaced")
        if spaced is None:  # each word followed by its space; padding is nothing
            spaced = np.array([f"{word} " for word in self._words], dtype=object)
            spaced[PAD_ID] = ""
            self._spaced = spaced
        # Every row's text then ends with one space (none when it is empty), which the slice drops.
        return [text[:-1] for text in map("".join, spaced[np.asarray(token_ids)].tolist())]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the vocabulary as JSON: ``{"format": "dialog-env-vocabulary", "words": [...]}``."""
        Path(path).write_text(json.dumps({"format": "dialog-env-vocabulary", "version": 1, "words": self.words}))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`.

        Raises:
            VocabularyError: the file is not valid JSON or not a vocabulary.
        """
        try:
            payload = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise VocabularyError(f"vocabulary file {str(path)!r} could not be read as JSON: {error}") from error
        if not isinstance(payload, dict) or payload.get("format") != "dialog-env-vocabulary":
            raise VocabularyError(f"vocabulary file {str(path)!r} is not a dialog-env vocabulary")
        words = payload.get("words")
        if not isinstance(words, list):
            raise VocabularyError(f"vocabulary file {str(path)!r}: 'words' must be a list")
        return cls(words)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus-level BLEU-1..4 of generated captions, in percent, computed by NLTK.

    BLEU-n is the cumulative score with uniform weights over 1..n-grams and the brevity penalty
    (Papineni et al., 2002), as the captioning literature reports it; no smoothing. Texts are
    split with :func:`tokenize`, the same words the environment sees.

    Args:
        hypotheses: ``M`` generated captions.
        references: ``M`` lists of one or more reference captions each.

    Returns:
        ``{"bleu1": ..., "bleu2": ..., "bleu3": ..., "bleu4": ...}`` in ``[0, 100]``.

    Raises:
        DependencyNotInstalled: ``nltk`` is missing.
        ConfigurationError: the two lists differ in length, are empty, or a hypothesis has no reference.
    """
    try:
        from nltk.translate.bleu_score import corpus_bleu as nltk_corpus_bleu
    except ImportError as error:
        raise DependencyNotInstalled(
            'BLEU needs nltk: pip install "dialog-retrieval-env[captioner]" (or nltk)'
        ) from error
    if len(hypotheses) != len(references) or not hypotheses:
        raise ConfigurationError(
            f"corpus_bleu needs as many reference lists as hypotheses (at least one), got {len(hypotheses)} "
            f"hypotheses and {len(references)} reference lists"
        )
    if any(len(refs) == 0 for refs in references):
        raise ConfigurationError("corpus_bleu: every hypothesis needs at least one reference")
    tokenized_references = [[tokenize(ref) for ref in refs] for refs in references]
    tokenized_hypotheses = [tokenize(hyp) for hyp in hypotheses]
    weights = [(1.0,), (0.5, 0.5), (1 / 3, 1 / 3, 1 / 3), (0.25, 0.25, 0.25, 0.25)]
    with warnings.catch_warnings():  # NLTK warns when an order has no match; the score 0 says it
        warnings.simplefilter("ignore", UserWarning)
        scores = nltk_corpus_bleu(tokenized_references, tokenized_hypotheses, weights=weights)
    return {f"bleu{n}": 100.0 * float(score) for n, score in enumerate(scores, start=1)}
