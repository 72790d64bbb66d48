from __future__ import annotations

import numpy as np
import pytest

from dialog_env.errors import ConfigurationError
from dialog_env.ranking import Ranker, rank_percentile


def reference_ranks(features: np.ndarray, queries: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Brute force in float64: images strictly closer to the query than the target."""
    features64 = features.astype(np.float64)
    ranks = []
    for query, target in zip(queries.astype(np.float32).astype(np.float64), targets):
        distances = np.sum((features64 - query) ** 2, axis=1)
        ranks.append(int(np.count_nonzero(distances < distances[target])))
    return np.array(ranks)


@pytest.mark.parametrize("seed", range(5))
def test_ranks_equal_float64_reference(seed):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(300, 16)).astype(np.float32)
    shown = rng.integers(300, size=64)
    targets = rng.integers(300, size=64)
    ranker = Ranker(features, max_chunk_bytes=64 * 50)  # many small chunks
    np.testing.assert_array_equal(
        ranker.target_ranks(shown, targets), reference_ranks(features, features[shown], targets)
    )
    queries = rng.normal(size=(64, 16))
    np.testing.assert_array_equal(
        ranker.query_target_ranks(queries, targets), reference_ranks(features, queries, targets)
    )


def test_ties_are_not_counted():
    # Duplicated rows and points at exactly equal distances: quantised features make exact ties.
    rng = np.random.default_rng(0)
    base = rng.integers(-2, 3, size=(40, 4)).astype(np.float32)
    features = np.concatenate([base, base[:10]])  # rows 40..49 duplicate rows 0..9
    shown = np.repeat(np.arange(50), 50)
    targets = np.tile(np.arange(50), 50)
    ranks = Ranker(features).target_ranks(shown, targets)
    np.testing.assert_array_equal(ranks, reference_ranks(features, features[shown], targets))
    # A duplicate of the shown image has rank 0, like the shown image itself.
    assert Ranker(features).target_ranks(np.array([0]), np.array([40]))[0] == 0


def test_near_ties_beyond_float32_are_resolved_in_float64():
    # Two images whose distances to the query differ by far less than float32 resolution.
    features = np.array([[1000.0, 0.0], [0.0, 1000.0], [1000.0, 0.0001], [5.0, 5.0]], dtype=np.float32)
    query = np.array([[0.0, 0.0]], dtype=np.float32)
    for target in range(4):
        assert (
            Ranker(features).query_target_ranks(query, np.array([target]))[0]
            == reference_ranks(features, query, [target])[0]
        )


def test_nearest_is_exact_and_tie_broken_by_index():
    rng = np.random.default_rng(1)
    features = rng.integers(0, 3, size=(200, 3)).astype(np.float32)  # many ties
    queries = rng.integers(0, 3, size=(20, 3)).astype(np.float32)
    indices, distances = Ranker(features, max_chunk_bytes=6 * 20 * 17).nearest(queries, k=7)
    for row in range(20):
        d = np.sum((features.astype(np.float64) - queries[row]) ** 2, axis=1)
        expected = np.lexsort((np.arange(200), d))[:7]
        np.testing.assert_array_equal(indices[row], expected)
        np.testing.assert_allclose(distances[row], d[expected], atol=1e-4)


@pytest.mark.parametrize("order", ["random", "sorted", "ties"])
@pytest.mark.parametrize(
    ("k", "chunk_bytes"), [(1, 1 << 24), (5, 1 << 24), (9, 8 * 16 * 301), (70, 1 << 24), (300, 1 << 24)]
)
def test_nearest_equals_brute_force_on_catalogues_long_enough_to_fold(order, k, chunk_bytes):
    # 2,001 rows: chunks wide enough for the halving folds of the k-th bound (odd widths included);
    # a catalogue sorted by distance to a query, or one full of exact ties, must not loosen or
    # break the bound.
    rng = np.random.default_rng(k)
    if order == "ties":
        features = rng.integers(0, 3, size=(2001, 4)).astype(np.float32)
        queries = rng.integers(0, 3, size=(16, 4)).astype(np.float32)
    else:
        features = rng.normal(size=(2001, 4)).astype(np.float32)
        queries = rng.normal(size=(16, 4)).astype(np.float32)
        if order == "sorted":
            features = features[np.argsort(((features - queries[0]) ** 2).sum(axis=1))]
    indices, distances = Ranker(features, max_chunk_bytes=chunk_bytes).nearest(queries, k=k)
    reference = ((features.astype(np.float64)[None] - queries.astype(np.float64)[:, None]) ** 2).sum(axis=2)
    for row in range(16):
        expected = np.lexsort((np.arange(2001), reference[row]))[:k]  # ties to the smaller index
        np.testing.assert_array_equal(indices[row], expected)
        np.testing.assert_allclose(distances[row], reference[row, expected], rtol=1e-6)


def test_kth_smallest_upper_bound_and_k_smallest_per_row():
    from dialog_env.ranking import _k_smallest_per_row, _kth_smallest_upper_bound  # noqa: PLC0415

    rng = np.random.default_rng(3)
    for width, k in [(1001, 1), (1001, 7), (130, 64), (5000, 200), (12, 12)]:
        scores = rng.normal(size=(9, width)).astype(np.float32)
        scores[0] = np.sort(scores[0])  # sorted rows: the first fold pairs small with large entries
        bound = _kth_smallest_upper_bound(scores, k)
        kth = np.sort(scores, axis=1)[:, k - 1]
        assert bound.shape == (9,) and np.all(bound >= kth)
        assert np.mean(np.count_nonzero(scores <= bound[:, None], axis=1)) <= 2 * k + 4  # tight, not just valid
    kept = np.array([[0.0, 2.0, np.inf], [1.0, 1.0, 5.0]], dtype=np.float32)
    merged = _k_smallest_per_row(kept, np.array([0, 1, 1, 0]), np.array([1.5, 0.5, 9.0, 7.0], dtype=np.float32))
    np.testing.assert_array_equal(merged, [[0.0, 1.5, 2.0], [0.5, 1.0, 1.0]])


@pytest.mark.parametrize("engine", ["numpy", "torch", "auto"])
def test_every_product_engine_gives_the_float64_reference(engine):
    import torch  # noqa: PLC0415

    from dialog_env import products  # noqa: PLC0415

    rng = np.random.default_rng(11)
    features = rng.normal(size=(700, 24)).astype(np.float32)
    features[350:360] = features[:10]  # duplicates: exact ties
    products.forget_engine_choices()
    ranker = Ranker(features, engine=engine)
    distances = ((features.astype(np.float64)[None] - features.astype(np.float64)[:40, None] * 0.9) ** 2).sum(axis=2)
    queries = (features[:40] * np.float32(0.9)).astype(np.float32)
    targets = rng.integers(700, size=40)
    expected_nearest = np.argsort(distances, axis=1, kind="stable")[:, :4]
    for _ in range(products.TRIALS + 2):  # "auto": the timed trials of both engines, then its choice
        for batch in (1, 40):
            indices, _ = ranker.nearest(queries[:batch], k=4)
            np.testing.assert_array_equal(indices, expected_nearest[:batch])
            np.testing.assert_array_equal(
                ranker.query_target_ranks(queries[:batch], targets[:batch]),
                reference_ranks(features, queries[:batch], targets[:batch]),
            )
    if engine == "auto":
        choices = products.engine_choices()
        assert {choice["engine"] for choice in choices.values()} <= {"numpy", "torch"} and len(choices) == 2
        assert all(set(choice["median_ms"]) == {"numpy", "torch"} for choice in choices.values())
    # Reduced-precision torch products would break the error bound: the engine falls back to NumPy.
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        assert not products.torch_is_exact()
        np.testing.assert_array_equal(ranker.nearest(queries, k=4)[0], expected_nearest)
    finally:
        torch.set_float32_matmul_precision(previous)
    assert products.torch_is_exact()
    with pytest.raises(ConfigurationError, match="engine must be one of auto, numpy, torch"):
        Ranker(features, engine="blas")


def test_rank_percentile_and_validation():
    assert rank_percentile(0, 11) == 1.0 and rank_percentile(10, 11) == 0.0
    ranker = Ranker(np.zeros((5, 2), dtype=np.float32))
    with pytest.raises(ConfigurationError, match="0..4"):
        ranker.target_ranks(np.array([5]), np.array([0]))
    with pytest.raises(ConfigurationError, match="shape \\(B, 2\\)"):
        ranker.query_target_ranks(np.zeros((1, 3)), np.array([0]))
    with pytest.raises(ConfigurationError, match="k must be"):
        ranker.nearest(np.zeros((1, 2)), k=6)
    with pytest.raises(ConfigurationError, match="float32"):
        Ranker(np.zeros((5, 2)))
    with pytest.raises(ConfigurationError, match="at least 2"):
        rank_percentile(0, 1)


def test_chunking_bounds_memory():
    ranker = Ranker(np.zeros((100_000, 8), dtype=np.float32))
    rows = ranker.chunk_rows(1024)
    assert rows * 1024 * 6 <= ranker.max_chunk_bytes
    assert Ranker(np.zeros((10, 2), dtype=np.float32)).chunk_rows(1) == 10


@pytest.mark.parametrize(
    ("catalogue", "chunk_bytes"),
    [("normal", 9 * 20 * 13), ("ties", 1 << 20), ("huge", 1 << 20), ("far", 1 << 20)],
)
def test_nearest_and_query_ranks_equal_the_two_calls(catalogue, chunk_bytes):
    rng = np.random.default_rng(7)
    if catalogue == "ties":  # quantised features and queries: exact ties in both results
        features = rng.integers(0, 3, size=(200, 3)).astype(np.float32)
        queries = rng.integers(0, 3, size=(20, 3)).astype(np.float32)
    else:
        features = rng.normal(size=(200, 3)).astype(np.float32)
        queries = rng.normal(size=(20, 3)).astype(np.float32)
        if catalogue == "huge":  # a scaled catalogue (the ranker's power-of-two scale)
            features, queries = features * np.float32(1e30), queries * np.float32(1e30)
        elif catalogue == "far":  # some queries so far out that float32 scores could overflow
            queries[::3] *= np.float32(1e30)
    targets = rng.integers(200, size=20)
    ranker = Ranker(features, max_chunk_bytes=chunk_bytes)
    indices, ranks = ranker.nearest_and_query_ranks(queries, targets)
    assert indices.dtype == ranks.dtype == np.int64 and indices.shape == ranks.shape == (20,)
    np.testing.assert_array_equal(indices, ranker.nearest(queries, k=1)[0][:, 0])
    np.testing.assert_array_equal(ranks, ranker.query_target_ranks(queries, targets))
    np.testing.assert_array_equal(ranks, reference_ranks(features, queries, targets))
    distances = ((features.astype(np.float64)[None] - queries.astype(np.float64)[:, None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(indices, np.argmin(distances, axis=1))  # argmin: ties to the smaller index
    empty = ranker.nearest_and_query_ranks(np.zeros((0, 3), dtype=np.float32), np.zeros(0, dtype=np.int64))
    assert [part.shape for part in empty] == [(0,), (0,)]
    with pytest.raises(ConfigurationError, match="one target per query"):
        ranker.nearest_and_query_ranks(queries, targets[:3])
