"""The captioner's training data: caption pairs, distant references by the Ranker, the split by target."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from dialog_env.catalog import Catalog
from dialog_env.errors import ConfigurationError
from dialog_env.random_streams import stream
from dialog_env.synthetic import draw_pairs, make_synthetic_shoes
from dialog_env.users.captioner import CaptionerConfig, RelativeCaptioner, mean_token_loss, train_epoch
from dialog_env.users.captioner_data import (
    CaptionPairs,
    distant_references,
    real_pairs,
    split_by_target,
    synthetic_pairs,
)
from dialog_env.users.rule import RuleBasedUser


def _catalog(features: np.ndarray, name: str = "test") -> Catalog:
    features = np.asarray(features, dtype=np.float32)
    return Catalog(features, [f"img{i}" for i in range(len(features))], {"train": np.arange(len(features))}, name=name)


def _farther_than_median(catalog: Catalog, target: int) -> np.ndarray:
    """The reference semantics: float64 squared distances strictly above their median."""
    features = catalog.features.astype(np.float64)
    distances = ((features - features[target]) ** 2).sum(axis=1)
    return np.flatnonzero(distances > np.median(distances))


@pytest.fixture(scope="module")
def shoes() -> Catalog:
    return make_synthetic_shoes(num_train=120, num_test=30, dim=16, seed=4)


# ---------------------------------------------------------------------------- distant references
@pytest.mark.parametrize("num_images", [2, 3, 40, 41, 257])
def test_distant_references_are_the_farther_half_by_exact_distance(num_images):
    catalog = _catalog(np.random.default_rng(num_images).normal(size=(num_images, 6)))
    targets = np.arange(num_images)
    references = distant_references(catalog, targets, 4, np.random.default_rng(0))
    assert references.shape == (num_images, 4) and references.dtype == np.int64
    rng = np.random.default_rng(0)
    for target, row in zip(targets, references, strict=True):
        far = _farther_than_median(catalog, target)
        assert target not in far and np.isin(row, far).all()
        # the draws: rng.integers over the candidates in index order, target after target
        np.testing.assert_array_equal(row, far[rng.integers(far.size, size=4)])


def test_distant_references_order_distances_that_float32_cannot_tell_apart():
    # Squared distances from image 0: 0, 1, 100, 100 + 1e-8, 200. In float32, |x|^2 of images 2 and
    # 3 are both 100.0, so a float32 distance puts image 3 at the median; exactly, it is farther.
    catalog = _catalog([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [10.0, 1e-4], [10.0, 10.0]])
    assert np.float32(catalog.squared_norms[2]) == np.float32(catalog.squared_norms[3])
    references = distant_references(catalog, np.zeros(200, dtype=np.int64), 1, np.random.default_rng(1))
    assert set(references.ravel()) == {3, 4}


def test_distant_references_leave_out_exact_ties_with_the_median():
    # Integer features: many images at exactly the median distance (and duplicates of the target).
    features = np.random.default_rng(2).integers(0, 3, size=(60, 3)).astype(np.float32)
    catalog = _catalog(features)
    references = distant_references(catalog, np.arange(60), 8, np.random.default_rng(3))
    for target, row in enumerate(references):
        assert np.isin(row, _farther_than_median(catalog, target)).all()


def test_distant_references_without_a_farther_half_take_any_other_image():
    catalog = _catalog(np.ones((6, 4)))
    references = distant_references(catalog, np.array([0, 5]), 50, np.random.default_rng(0))
    assert 0 not in references[0] and 5 not in references[1]
    assert set(references[0]) == {1, 2, 3, 4, 5}


def test_distant_references_are_deterministic_for_a_generator(shoes):
    view = shoes.select("train")
    targets = np.arange(0, 120, 7)
    first = distant_references(view, targets, 3, np.random.default_rng(5))
    np.testing.assert_array_equal(first, distant_references(view, targets, 3, np.random.default_rng(5)))
    assert not np.array_equal(first, distant_references(view, targets, 3, np.random.default_rng(6)))


# ---------------------------------------------------------------------------- synthetic pairs
def test_synthetic_pairs_are_deterministic_for_a_seed(shoes):
    view, user = shoes.select("train"), RuleBasedUser()
    first = synthetic_pairs(view, 300, 1, user)
    again = synthetic_pairs(view, 300, 1, user)
    other = synthetic_pairs(view, 300, 2, user)
    assert len(first) == 300 and first.tokens.shape == (300, 16) and first.tokens.dtype == np.int64
    assert first.targets.dtype == first.references.dtype == np.int64 and not first.kinds.any()
    assert (first.targets != first.references).all()
    np.testing.assert_array_equal(first.targets, again.targets)
    np.testing.assert_array_equal(first.references, again.references)
    assert first.captions == again.captions and np.array_equal(first.tokens, again.tokens)
    assert first.captions != other.captions
    assert first.tokens[0].tolist()[:3] == user.vocabulary.encode(first.captions[0])[:3].tolist()


def test_synthetic_pairs_keep_their_numbers(shoes):
    # The pairs come from np.random.SeedSequence([seed, 7]).spawn(2)[0], as before random_streams.
    view = shoes.select("train")
    pairs = synthetic_pairs(view, 50, 9, RuleBasedUser())
    targets, references = draw_pairs(view, 50, np.random.default_rng(np.random.SeedSequence([9, 7]).spawn(2)[0]))
    np.testing.assert_array_equal(pairs.targets, targets)
    np.testing.assert_array_equal(pairs.references, references)


# ---------------------------------------------------------------------------- split and subsets
def _pairs(targets: np.ndarray) -> CaptionPairs:
    size = targets.size
    return CaptionPairs(
        targets.astype(np.int64),
        (targets[::-1]).astype(np.int64),
        [f"caption {i}" for i in range(size)],
        np.arange(size * 4, dtype=np.int64).reshape(size, 4),
        np.zeros(size, dtype=np.int8),
    )


def test_subset_keeps_every_field_in_order():
    pairs = _pairs(np.arange(6))
    part = pairs.subset(np.array([4, 1]))
    assert part.targets.tolist() == [4, 1] and part.references.tolist() == [1, 4]
    assert part.captions == ["caption 4", "caption 1"] and part.tokens[0].tolist() == [16, 17, 18, 19]


def test_split_by_target_holds_out_whole_targets():
    pairs = _pairs(np.random.default_rng(0).integers(40, size=400))
    train, val = split_by_target(pairs, 40, 0.25, np.random.default_rng(1))
    assert len(train) + len(val) == 400
    assert not set(train.targets) & set(val.targets) and len(set(val.targets)) <= 10
    again, _ = split_by_target(pairs, 40, 0.25, np.random.default_rng(1))
    np.testing.assert_array_equal(train.targets, again.targets)
    with pytest.raises(ConfigurationError, match="validation pairs"):
        split_by_target(_pairs(np.zeros(5, dtype=np.int64)), 40, 0.1, np.random.default_rng(0))


# ---------------------------------------------------------------------------- real captions
@dataclass
class Files:
    relative_captions: str | None
    image_captions: str | None = None
    split: str = "train"
    distant_references: int = 2
    min_word_count: int = 1


def test_real_pairs_draw_distant_references_from_their_stream(tmp_path, shoes):
    ids = [str(i) for i in shoes.ids]
    train = [ids[i] for i in shoes.splits["train"]]
    relative = [
        {"ImageName": train[i], "ReferenceImageName": train[i + 1], "RelativeCaption": "is red"} for i in range(10)
    ]
    single = [{"ImageName": train[i], "Caption": "black boots"} for i in range(0, 30, 3)]
    (tmp_path / "rel.json").write_text(json.dumps(relative))
    (tmp_path / "single.json").write_text(json.dumps(single))
    view = shoes.select("train")
    pairs, vocabulary, counts = real_pairs(
        Files(str(tmp_path / "rel.json"), str(tmp_path / "single.json")), shoes, view, 3
    )
    assert counts["relative_pairs"] == 10 and counts["image_pairs"] == 20 and len(pairs) == 30
    assert pairs.kinds.tolist() == [0] * 10 + [1] * 20 and "boots" in vocabulary
    targets = pairs.targets[10::2]
    expected = distant_references(view, targets, 2, stream(3, "captioner_distant_references"))
    np.testing.assert_array_equal(pairs.references[10:].reshape(-1, 2), expected)
    with pytest.raises(ConfigurationError, match="relative-caption file"):
        real_pairs(Files(None), shoes, view, 3)


# ---------------------------------------------------------------------------- training steps
def test_train_epoch_is_deterministic_and_lowers_the_loss(shoes):
    view, user = shoes.select("train"), RuleBasedUser()
    pairs = synthetic_pairs(view, 200, 0, user)
    config = CaptionerConfig(image_dim=view.dim, vocab_size=len(user.vocabulary), embed_dim=8, hidden_dim=16)
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        model = RelativeCaptioner(config)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        before = mean_token_loss(model, view, pairs, 64, torch.device("cpu"))
        order = np.random.default_rng(0).permutation(len(pairs))
        losses.append(train_epoch(model, optimizer, view, pairs, order, 32, torch.device("cpu")))
        assert mean_token_loss(model, view, pairs, 64, torch.device("cpu")) < before
    assert losses[0] == losses[1]
