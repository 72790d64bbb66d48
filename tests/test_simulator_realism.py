"""benchmarks/simulator_realism.py: the measures, the users it compares, and what its report may hold."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks import simulator_realism as realism
from benchmarks.simulator_realism import (
    Args,
    UserSpec,
    compare,
    coverage,
    js_divergence,
    measure,
    precision,
    to_markdown,
    user_specs,
)
from dialog_env.errors import ConfigurationError
from dialog_env.text import Vocabulary
from dialog_env.users import UserSimulator

# Made-up "real" captions: no simulator says them, so the report must not either.
REAL = [
    "is black",
    "has a higher heel",
    "looks far more elegant with tiny glitter dots",
    "the heel is much much taller than this one",
]
REAL_TEXTS = REAL[2:]  # long enough to be found only if copied


class FixedUser(UserSimulator):
    """Says the same caption every time."""

    name = "fixed"

    def __init__(self, text: str, words: list[str]) -> None:
        self.text = text
        self._vocabulary = Vocabulary(words)

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    def describe(self, catalog, targets, shown, rngs):
        return [self.text] * len(targets)


class EchoUser(UserSimulator):
    """Answers with the given (real) captions in turn, as the corpus user does."""

    name = "echo"

    def __init__(self, captions: list[str]) -> None:
        self.captions = captions
        self._vocabulary = Vocabulary.from_texts(captions)

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    def describe(self, catalog, targets, shown, rngs):
        return [self.captions[int(rng.integers(len(self.captions)))] for rng in rngs]


@pytest.fixture(scope="module")
def train(small_shoes):
    return small_shoes.select("train")


def _fixed(name: str, user: UserSimulator, real_captions: bool = False) -> UserSpec:
    return UserSpec(name, lambda _catalog: (user, {}), real_captions=real_captions)


# ---------------------------------------------------------------------------- the measures
@pytest.mark.parametrize("implementation", ["as installed", "numpy only"])
def test_js_divergence_is_0_for_identical_and_1_for_disjoint_distributions(implementation, monkeypatch):
    if implementation == "numpy only":
        monkeypatch.setattr(realism, "_scipy_jensenshannon", None)
        assert realism.js_implementation() == "numpy formula"
    assert js_divergence([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence([1, 0, 0], [0, 3, 1]) == pytest.approx(1.0)
    # Base 2 by hand: p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4).
    expected = 0.5 * math.log2(4 / 3) + 0.5 * (0.5 * math.log2(2 / 3) + 0.5 * math.log2(2))
    assert js_divergence([1, 0], [1, 1]) == pytest.approx(expected)


def test_js_divergence_numpy_formula_matches_the_scipy_one():
    rng = np.random.default_rng(0)
    for _ in range(5):
        p, q = rng.random(12), rng.random(12) * (rng.random(12) < 0.7)
        p, q = p / p.sum(), q / q.sum()
        assert realism._js_divergence_numpy(p, q) == pytest.approx(js_divergence(p, q), abs=1e-12)


@pytest.mark.parametrize("p, q", [([1, 2], [1, 2, 3]), ([0, 0], [1, 1]), ([1, -1], [1, 1]), ([np.nan, 1], [1, 1])])
def test_js_divergence_rejects_what_is_not_a_pair_of_distributions(p, q):
    with pytest.raises(ConfigurationError, match="js_divergence"):
        js_divergence(p, q)


def test_coverage_and_precision_by_hand():
    real = {"is": 2, "black": 1, "heel": 1}
    assert coverage(real, ["is", "red"]) == pytest.approx(2 / 4)
    assert precision({"is": 3, "red": 1}, real) == pytest.approx(3 / 4)
    assert coverage({}, ["is"]) == 0.0 and precision({}, real) == 0.0


def test_measure_figures_on_a_hand_computable_case(train):
    user = FixedUser("is red", ["is", "red", "black"])
    result = measure(REAL[:2], user, train, num_pairs=20, seed=0)
    # Real occurrences: is, black, has, a, higher, heel; the user knows "is" and "black".
    assert result["coverage"] == pytest.approx(2 / 6)
    assert result["precision"] == pytest.approx(1 / 2)  # "is" yes, "red" no
    assert result["met"] == {"coverage": False, "precision": False}
    # Lengths: simulated always 2; real 2 and 4.
    assert result["length_js"] == pytest.approx(js_divergence([0, 1, 0, 0], [0, 1, 0, 1]))
    # Words a, black, has, heel, higher, is, red: the user says is and red, shoppers all but red.
    assert result["word_js"] == pytest.approx(js_divergence([0, 0, 0, 0, 0, 1, 1], [1, 1, 1, 1, 1, 1, 0]))
    assert result["real"]["mean_words"] == 3.0 and result["real"]["median_words"] == 3.0
    assert result["simulated"]["length_histogram"]["2"] == 20
    assert result["simulated"]["distinct_words_used"] == 2 and result["simulated"]["vocabulary_size"] == 3
    assert result["words_unused_by_shoppers"] == ["red"]


def test_every_user_sees_the_same_pairs_and_draws(train):
    a = measure(REAL, EchoUser(REAL_TEXTS), train, num_pairs=40, seed=3)
    b = measure(REAL, EchoUser(REAL_TEXTS), train, num_pairs=40, seed=3)
    assert a == b
    assert measure(REAL, EchoUser(REAL_TEXTS), train, num_pairs=40, seed=4) != a


def test_rule_user_keeps_its_statement_statistics(train):
    result = measure(REAL, None, train, num_pairs=50, seed=0)
    assert sum(result["simulated"]["differences_said"].values()) == pytest.approx(1.0)
    assert "color" in result["simulated"]["attributes_said"]
    assert len(result["simulated"]["samples"]) == realism.SAMPLES


# ---------------------------------------------------------------------------- the users and the report
def test_an_unknown_user_is_reported_as_skipped(train, tmp_path):
    specs = user_specs(Args(users=["robot", "rule"], data=tmp_path))
    result = compare(REAL, specs, train, num_pairs=30, seed=0)
    assert list(result["users"]) == ["rule"]
    assert "unknown user simulator 'robot'" in result["skipped"]["robot"]
    markdown = to_markdown(result, "cmd")
    assert "| robot | skipped" in markdown and "unknown user simulator 'robot'" in markdown


def test_a_corpus_without_its_file_is_skipped_with_the_reason(train, tmp_path):
    result = compare(REAL, user_specs(Args(users=["corpus"], data=tmp_path)), train, num_pairs=10, seed=0)
    assert not result["users"] and not result["met"]
    assert "corpus" in result["skipped"] and result["skipped"]["corpus"]


def test_the_report_never_holds_a_real_caption(train):
    specs = [_fixed("rule-like", FixedUser("is red", ["is", "red"])), _fixed("echo", EchoUser(REAL_TEXTS), True)]
    result = compare(REAL, specs, train, num_pairs=30, seed=0)
    assert result["users"]["echo"]["simulated"]["samples"] is None
    markdown, text = to_markdown(result, "cmd"), json.dumps(result)
    assert "(real captions, not reproduced)" in markdown and "- is red" in markdown
    for caption in REAL_TEXTS:
        assert caption not in markdown and caption not in text


def test_small_captioner_trains_deterministically_and_is_measured(train):
    settings = dict(pairs=64, epochs=1, batch_size=32, embed_dim=8, hidden_dim=16, seed=5)
    user, training = realism.train_small_captioner(train, **settings)
    again, _ = realism.train_small_captioner(train, **settings)
    targets, references = np.arange(10), np.arange(10, 20)
    rngs = [np.random.default_rng(i) for i in range(10)]
    assert user.describe(train, targets, references, rngs) == again.describe(train, targets, references, rngs)
    assert training["captions_by"] == "rule" and len(training["losses"]) == 1
    result = measure(REAL, user, train, num_pairs=20, seed=0)
    assert 0.0 <= result["word_js"] <= 1.0 and result["simulated"]["vocabulary_size"] > 100


def test_main_exit_status(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    records = [
        {"ImageName": f"a{i}.jpg", "ReferenceImageName": f"b{i}.jpg", "RelativeCaption": caption}
        for i, caption in enumerate(REAL)
    ]
    (data / realism.RELATIVE_CAPTIONS).write_text(json.dumps(records))
    out = tmp_path / "out"
    assert realism.main(["--data", str(tmp_path), "--out", str(out)]) == 2
    assert realism.main(["--data", str(data), "--out", str(out), "--users", "robot", "--pairs", "5"]) == 1
    assert realism.main(["--data", str(data), "--out", str(out), "--users", "rule", "--pairs", "20"]) == 1
    report = json.loads((out / "simulator_realism.json").read_text())
    assert report["users"]["rule"]["met"]["precision"] is False and report["js_divergence"]["base"] == 2
    assert not any(caption in (out / "simulator_realism.md").read_text() for caption in REAL_TEXTS)


# ---------------------------------------------------------------------------- the real captions (optional)
def test_real_captions_against_rule_and_corpus(shoes_data_dir, small_shoes):
    real = realism.load_real_captions(shoes_data_dir)
    specs = user_specs(Args(users=["rule", "corpus"], data=shoes_data_dir))
    result = compare(real, specs, small_shoes.select("train"), num_pairs=300, seed=0)
    rule = result["users"]["rule"]
    assert 0.5 < rule["coverage"] <= 1 and 0.9 < rule["precision"] <= 1
    assert 0 < rule["length_js"] < 0.5 and 0 < rule["word_js"] < 0.5
    assert "corpus" in result["users"] or "corpus" in result["skipped"]
    markdown = to_markdown(result, "cmd")
    said = {s for u in result["users"].values() for s in (u["simulated"]["samples"] or [])}
    lines = {line.removeprefix("- ") for line in markdown.splitlines()}
    assert not (lines & set(real)) - said
    assert not any(caption in markdown for caption in real if len(caption.split()) >= 7)
