"""The fast paths of the ranking engine (bit counts, reused scratch memory, float64 rechecks)
and the k-NN backends selectable by name."""

from __future__ import annotations

import pickle
import sys
import threading
import tracemalloc

import numpy as np
import pytest

from dialog_env.ann import KNN_BACKENDS, ExactKnnIndex, make_knn_index
from dialog_env.errors import ConfigurationError, DependencyNotInstalled
from dialog_env.ranking import Ranker, _count_per_row


def brute_force_ranks(features: np.ndarray, queries: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Float64 reference: images strictly closer to the query than the target."""
    features64 = features.astype(np.float64)
    ranks = []
    for query, target in zip(queries.astype(np.float32).astype(np.float64), targets):
        distances = ((features64 - query) ** 2).sum(axis=1)
        ranks.append(int((distances < distances[target]).sum()))
    return np.array(ranks)


def clustered_features(num_images: int, dim: int, seed: int) -> np.ndarray:
    """Features with exact duplicates and many near-ties, the hard case for float32 ranking."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim)).astype(np.float32) * 10
    features = centres[rng.integers(8, size=num_images)] + rng.normal(size=(num_images, dim)).astype(np.float32) * 1e-3
    features[1::7] = features[0]  # duplicates of image 0
    return features.astype(np.float32)


@pytest.mark.parametrize("num_images, max_chunk_bytes", [(203, 6 * 5 * 16), (203, 10**9), (1000, 6 * 33 * 64)])
def test_ranks_equal_float64_brute_force_with_duplicates_and_short_chunks(num_images, max_chunk_bytes):
    features = clustered_features(num_images, 24, seed=num_images)
    ranker = Ranker(features, max_chunk_bytes=max_chunk_bytes)
    rng = np.random.default_rng(0)
    batch = 33
    shown = rng.integers(num_images, size=batch)
    targets = rng.integers(num_images, size=batch)
    targets[:5] = 0  # target with duplicates: the duplicates tie and are not counted
    shown[5:8] = targets[5:8]  # the target itself is shown: rank 0
    expected = brute_force_ranks(features, features[shown], targets)
    np.testing.assert_array_equal(ranker.target_ranks(shown, targets), expected)
    assert (ranker.target_ranks(shown[5:8], targets[5:8]) == 0).all()
    queries = features[shown] + rng.normal(size=(batch, 24)).astype(np.float32) * 1e-3
    expected = brute_force_ranks(features, queries, targets)
    np.testing.assert_array_equal(ranker.query_target_ranks(queries, targets), expected)


def test_scratch_memory_is_reused_across_batch_sizes_and_threads():
    features = clustered_features(500, 16, seed=3)
    ranker = Ranker(features)
    rng = np.random.default_rng(1)
    cases = [(rng.integers(500, size=b), rng.integers(500, size=b)) for b in (1, 40, 7, 40)]
    expected = [brute_force_ranks(features, features[s], t) for s, t in cases]
    for (shown, targets), reference in zip(cases, expected):  # growing and shrinking batches
        np.testing.assert_array_equal(ranker.target_ranks(shown, targets), reference)
    failures = []

    def worker() -> None:
        for _ in range(20):
            for (shown, targets), reference in zip(cases, expected):
                if not np.array_equal(ranker.target_ranks(shown, targets), reference):
                    failures.append(1)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    clone = pickle.loads(pickle.dumps(ranker))  # scratch memory is not pickled, and rebuilt
    np.testing.assert_array_equal(clone.target_ranks(*cases[1]), expected[1])


def test_count_per_row_matches_count_nonzero():
    mask = np.random.default_rng(2).random((9, 64)) < 0.3
    np.testing.assert_array_equal(_count_per_row(mask), np.count_nonzero(mask, axis=1))


def test_empty_batch_gives_empty_ranks():
    ranker = Ranker(np.eye(4, dtype=np.float32))
    assert ranker.target_ranks(np.array([], dtype=np.int64), np.array([], dtype=np.int64)).shape == (0,)


def test_working_memory_is_bounded_whatever_the_catalogue_size():
    features = np.random.default_rng(4).normal(size=(40_000, 8)).astype(np.float32)
    budget = 256 * 1024
    ranker = Ranker(features, max_chunk_bytes=budget)
    batch = 64
    shown = np.arange(batch)
    tracemalloc.start()
    ranker.target_ranks(shown, shown + 1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    full_score_matrix = batch * features.shape[0] * 4
    assert peak < 2 * budget < full_score_matrix / 4  # chunks, never the (B, N) matrix


# ---------------------------------------------------------------------- k-NN backends
@pytest.fixture(scope="module")
def knn_data():
    rng = np.random.default_rng(5)
    features = rng.normal(size=(2000, 16)).astype(np.float32)
    queries = features[:50] + rng.normal(size=(50, 16)).astype(np.float32) * 0.1
    return features, queries


def test_exact_backend_is_the_ranker(knn_data):
    features, queries = knn_data
    index = make_knn_index("exact", features)
    assert isinstance(index, ExactKnnIndex) and index.exact
    indices, distances = index.search(queries, k=5)
    reference = np.argsort(((features[None] - queries[:, None]) ** 2).sum(-1), axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(indices, reference)
    assert distances.dtype == np.float32 and (np.diff(distances, axis=1) >= 0).all()


@pytest.mark.parametrize("name, min_recall", [("faiss-flat", 1.0), ("faiss-ivf", 0.8), ("faiss-hnsw", 0.9)])
def test_faiss_backends_recall_against_exact(knn_data, name, min_recall):
    pytest.importorskip("faiss")
    features, queries = knn_data
    exact, _ = make_knn_index("exact", features).search(queries, k=10)
    index = make_knn_index(name, features)
    assert index.name == name
    indices, distances = index.search(queries, k=10)
    assert indices.shape == (50, 10) and indices.dtype == np.int64 and distances.dtype == np.float32
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(indices, exact)])
    assert recall >= min_recall
    found = indices >= 0
    true = ((features[np.where(found, indices, 0)] - queries[:, None]) ** 2).sum(-1)
    np.testing.assert_allclose(distances[found], true[found], rtol=1e-4, atol=1e-4)
    clone = pickle.loads(pickle.dumps(index))
    np.testing.assert_array_equal(clone.search(queries, k=10)[0], indices)


def test_unknown_backend_and_bad_settings_raise(knn_data):
    features, queries = knn_data
    with pytest.raises(ConfigurationError, match="unknown k-NN backend 'annoy'"):
        make_knn_index("annoy", features)
    with pytest.raises(ConfigurationError, match="k must be an integer in 1..2000"):
        make_knn_index("exact", features).search(queries, k=0)
    with pytest.raises(ConfigurationError, match="rejected settings"):
        make_knn_index("exact", features, nprobe=3)
    assert KNN_BACKENDS == ("exact", "faiss-flat", "faiss-ivf", "faiss-hnsw")


def test_missing_faiss_raises_dependency_not_installed(knn_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` fail
    with pytest.raises(DependencyNotInstalled, match=r'pip install "dialog-retrieval-env\[faiss\]"'):
        make_knn_index("faiss-hnsw", knn_data[0])
