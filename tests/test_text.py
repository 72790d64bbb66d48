from __future__ import annotations

import numpy as np
import pytest

from dialog_env.errors import VocabularyError
from dialog_env.text import MAX_FEEDBACK_TOKENS, PAD_ID, UNK_ID, Vocabulary, tokenize


def test_tokenize():
    assert tokenize("Is darker, and has an OPEN-toe!") == ["is", "darker", "and", "has", "an", "open", "toe"]
    assert tokenize("don't") == ["don't"]
    assert tokenize("") == []


def test_encode_pads_truncates_and_marks_unknown_words():
    vocabulary = Vocabulary(["is", "black"])
    ids = vocabulary.encode("is black and shiny")
    assert ids.dtype == np.int64 and ids.shape == (MAX_FEEDBACK_TOKENS,)
    assert list(ids[:4]) == [2, 3, UNK_ID, UNK_ID] and (ids[4:] == PAD_ID).all()
    assert vocabulary.decode(ids) == "is black <unk> <unk>"
    long = vocabulary.encode(" ".join(["black"] * 40))
    assert long.shape == (MAX_FEEDBACK_TOKENS,) and (long == 3).all()
    np.testing.assert_array_equal(
        vocabulary.encode_batch(["is black", "black"]), [vocabulary.encode("is black"), vocabulary.encode("black")]
    )


def test_vocabulary_validation_and_round_trip(tmp_path):
    with pytest.raises(VocabularyError, match="twice"):
        Vocabulary(["a", "a"])
    with pytest.raises(VocabularyError, match="single lower-case word"):
        Vocabulary(["two words"])
    vocabulary = Vocabulary.from_texts(["is black", "is white", "is black"])
    assert vocabulary.words == ["is", "black", "white"]
    vocabulary.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json") == vocabulary
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(VocabularyError, match="could not be read"):
        Vocabulary.load(tmp_path / "bad.json")
