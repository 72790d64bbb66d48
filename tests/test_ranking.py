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
