"""Finite but extreme features: the ranker stays exact, the catalogue refuses what float32 cannot hold.

The ranker's answers (ranks w.r.t. shown images and query vectors, nearest neighbours) must equal
the float64 brute-force reference of :mod:`dialog_env.ranking` for every finite input: catalogues
scaled by ``1e19`` or ``1e-30``, subnormal features, one row at ``3e38``, far queries.
:class:`~dialog_env.catalog.Catalog` refuses features beyond ``MAX_ABS_FEATURE`` with an error
naming the row, its id, the value and the safe range.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dialog_env  # noqa: F401 - registers DialogRetrieval-v0
from dialog_env import QueryAction
from dialog_env.catalog import MAX_ABS_FEATURE, Catalog
from dialog_env.errors import CatalogError, CatalogFormatError, ConfigurationError, InvalidActionError
from dialog_env.ranking import Ranker, feature_scale
from dialog_env.synthetic import make_synthetic_shoes


# ---------------------------------------------------------------------- the float64 reference
def reference_distances(features: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``d_i = sum((x_i - q) ** 2)`` in float64 on the float32 values, for every image."""
    difference = features.astype(np.float64) - np.asarray(query, dtype=np.float32).astype(np.float64)
    return np.einsum("nd,nd->n", difference, difference)


def reference_ranks(features: np.ndarray, queries: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Images strictly closer to each query than its target (the target itself never counts)."""
    ranks = []
    for query, target in zip(queries, targets):
        distances = reference_distances(features, query)
        ranks.append(int(np.count_nonzero(distances < distances[target])))
    return np.array(ranks, dtype=np.int64)


def reference_nearest(features: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` nearest images of each query, ties by the smaller index."""
    order = [np.lexsort((np.arange(len(features)), reference_distances(features, q)))[:k] for q in queries]
    return np.array(order, dtype=np.int64).reshape(len(queries), k)


def assert_exact(features: np.ndarray, queries: np.ndarray | None = None, k: int = 3) -> Ranker:
    """Every rank (all shown x target pairs, and queries) and the k nearest equal the reference."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    ranker = Ranker(features, max_chunk_bytes=6 * 8 * 16)  # several chunks even for small catalogues
    count = len(features)
    shown = np.repeat(np.arange(count), count)
    targets = np.tile(np.arange(count), count)
    np.testing.assert_array_equal(
        ranker.target_ranks(shown, targets), reference_ranks(features, features[shown], targets)
    )
    if queries is not None:
        queries = np.asarray(queries, dtype=np.float32)
        query_rows = np.repeat(np.arange(len(queries)), count)
        query_targets = np.tile(np.arange(count), len(queries))
        np.testing.assert_array_equal(
            ranker.query_target_ranks(queries[query_rows], query_targets),
            reference_ranks(features, queries[query_rows], query_targets),
        )
        k = min(k, count)
        indices, distances = ranker.nearest(queries, k=k)
        np.testing.assert_array_equal(indices, reference_nearest(features, queries, k))
        expected = np.array([reference_distances(features, q)[i] for q, i in zip(queries, indices)])
        with np.errstate(over="ignore"):
            np.testing.assert_array_equal(distances, expected.astype(np.float32))
    return ranker


def base_features(num_images: int = 40, dim: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(num_images, dim)).astype(np.float32)
    features[5] = features[2]  # a duplicate: ties must stay ties at every scale
    return features


# ---------------------------------------------------------------------- the examples
@pytest.mark.parametrize("scale", [1e19, 3e37 / 8, 2.0**100, 1e-30, 2.0**-100, 1e-40, 1e-44])
def test_uniformly_scaled_catalogues_rank_exactly(scale):
    # 1e19 overflowed float32 squared norms (97% of ranks wrong); 1e-30 and subnormal features
    # underflowed them (every neighbour wrong).
    base = base_features()
    features = (base.astype(np.float64) * scale).astype(np.float32)
    queries = (base[:8].astype(np.float64) * 0.7 * scale).astype(np.float32)
    ranker = assert_exact(features, queries)
    assert ranker._scale != 1.0  # the float32 product ran on a power-of-two rescaled copy


@pytest.mark.parametrize("exponent", [70, -70, 126, -100])
def test_power_of_two_scales_give_the_ranks_of_the_unscaled_catalogue(exponent):
    base = base_features(seed=1)
    scaled = np.ldexp(base, exponent).astype(np.float32)
    assert (np.ldexp(scaled, -exponent) == base).all()  # exact: the catalogues are the same geometry
    count = len(base)
    shown, targets = np.repeat(np.arange(count), count), np.tile(np.arange(count), count)
    np.testing.assert_array_equal(
        Ranker(scaled).target_ranks(shown, targets), Ranker(base).target_ranks(shown, targets)
    )


def test_one_row_at_float32_max_ranks_exactly():
    features = base_features()
    features[7] = 3e38  # all its coordinates: the others are near 1
    features[11, 2] = -3.4e38
    queries = np.concatenate([features[:5] * np.float32(1.5), features[7:8] * np.float32(0.5)])
    assert_exact(features, queries)


def test_mixed_magnitudes_in_one_catalogue_rank_exactly():
    features = base_features(num_images=30)
    features[::3] *= np.float32(1e30)
    features[1::3] *= np.float32(1e-30)
    features[2] = np.float32(1e-45)  # the smallest subnormal
    assert_exact(features, features[:6] * np.float32(0.9))


def test_far_queries_are_compared_in_float64():
    normal = base_features(seed=2)
    assert_exact(normal, np.array([[3e38] * 6, [1e30, -1e30, 0, 0, 0, 5], [-3.4e38, 0, 0, 0, 0, 3.4e38]]))
    tiny = (normal.astype(np.float64) * 1e-30).astype(np.float32)
    assert_exact(tiny, np.array([[1.0] * 6, [1e20, 0, 0, 0, 0, 0], [1e-30] * 6]))  # far from a tiny catalogue


def test_ordinary_catalogues_use_their_features_and_keep_their_ranks():
    catalog = make_synthetic_shoes(num_train=500, num_test=10, dim=32, seed=3).select("train")
    ranker = Ranker(catalog.features, catalog.squared_norms)
    assert ranker._scale == 1.0 and ranker._gemm_features is ranker.features  # no copy, no scaling
    shown = np.arange(0, 500, 41)
    targets = (shown * 7 + 3) % 500
    # Pinned with the ranker as it was before extreme magnitudes were handled: nothing changed.
    assert ranker.target_ranks(shown, targets).tolist() == [
        413,
        295,
        48,
        235,
        261,
        444,
        137,
        132,
        112,
        144,
        237,
        12,
        374,
    ]
    queries = catalog.features[shown] * np.float32(0.5)
    assert ranker.query_target_ranks(queries, targets).tolist() == [
        484,
        316,
        215,
        289,
        318,
        363,
        187,
        182,
        187,
        19,
        250,
        13,
        391,
    ]
    assert ranker.nearest(queries, k=3)[0].tolist() == [
        [0, 204, 471], [41, 265, 69], [82, 81, 351], [123, 407, 187], [164, 372, 27], [205, 190, 431], [351, 246, 212],
        [287, 446, 128], [328, 86, 92], [369, 353, 81], [410, 86, 208], [451, 446, 175], [492, 320, 442],
    ]  # fmt: skip


def test_feature_scale_is_a_power_of_two_only_outside_the_ordinary_range():
    assert feature_scale(np.ones((3, 4), np.float32)) == 1.0
    assert feature_scale(np.zeros((3, 4), np.float32)) == 1.0
    assert feature_scale(np.full((2, 2), 1e19, np.float32)) == 2.0**-64  # 1e19 = 0.54 * 2**64
    assert feature_scale(np.full((2, 2), 1e-30, np.float32)) == 2.0**99
    with pytest.raises(ConfigurationError, match="NaN or inf in 1 row\\(s\\), first at row 1"):
        Ranker(np.array([[0, 0], [np.inf, 1]], dtype=np.float32))
    with pytest.raises(ConfigurationError, match="beyond the float32 range"):
        Ranker(np.ones((3, 2), np.float32)).nearest(np.array([[1e39, 0.0]]))


# ---------------------------------------------------------------------- property: every finite input
_FLOAT32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@st.composite
def catalogues(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Small catalogues and queries: arbitrary float32 values, or a small grid times a common scale."""
    num_images = draw(st.integers(2, 9))
    dim = draw(st.integers(1, 4))
    if draw(st.booleans()):
        values = draw(st.lists(_FLOAT32, min_size=(num_images + 2) * dim, max_size=(num_images + 2) * dim))
        array = np.array(values, dtype=np.float32)
    else:  # duplicates, exact ties and near-ties, at one scale from subnormal to huge
        grid = draw(st.lists(st.integers(-3, 3), min_size=(num_images + 2) * dim, max_size=(num_images + 2) * dim))
        jitter = draw(st.sampled_from([0.0, 2.0**-20, 1e-7]))
        scale = draw(st.sampled_from([1e-44, 1e-38, 1e-30, 1e-10, 1.0, 1e10, 1e19, 1e30, 1e37]))
        array = ((np.array(grid) + jitter * np.arange(len(grid)) % 3) * scale).astype(np.float32)
    array = array.reshape(num_images + 2, dim)
    return array[:num_images], array[num_images:]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(catalogues())
def test_ranker_equals_float64_brute_force_for_any_finite_features(data):
    features, queries = data
    assert_exact(features, queries, k=2)


# ---------------------------------------------------------------------- the catalogue's safe range
@pytest.mark.parametrize("scale", [1e19, 1e16])
def test_catalogue_refuses_features_beyond_the_safe_range(scale):
    full = make_synthetic_shoes(num_train=20, num_test=6, dim=8, seed=1)
    with pytest.raises(CatalogError) as caught:
        Catalog(full.features * np.float32(scale), full.ids, full.splits)
    message = str(caught.value)
    assert "row 0 (id 'syn_" in message and "|value| <= 1e+15" in message and "26 row(s) exceed it" in message


def test_catalogue_refuses_one_row_at_3e38_in_memory_and_in_a_file(tmp_path):
    full = make_synthetic_shoes(num_train=20, num_test=6, dim=8, seed=1)
    features = np.array(full.features)
    features[4, 3] = 3e38
    with pytest.raises(CatalogError, match=f"row 4 \\(id '{full.ids[4]}'\\) holds 3e\\+38 at column 3"):
        Catalog(features, full.ids, full.splits)
    path = full.save(tmp_path / "bad.h5")
    import h5py

    with h5py.File(path, "r+") as handle:
        handle["features"][4, 3] = 3e38
    with pytest.raises(CatalogFormatError) as caught:
        Catalog.load(path)
    message = str(caught.value)
    for part in ("bad.h5", "dataset 'features'", f"row 4 (id '{full.ids[4]}')", "holds 3e+38", "|value| <= 1e+15"):
        assert part in message, message


def test_catalogue_accepts_the_bound_itself_and_tiny_features():
    at_bound = np.float32(MAX_ABS_FEATURE)  # 999999986991104: the largest float32 <= 1e15
    above = np.nextafter(at_bound, np.float32(np.inf))
    Catalog(np.array([[at_bound, -at_bound], [0, 0]], dtype=np.float32), ["a", "b"])
    with pytest.raises(CatalogError, match="row 0"):
        Catalog(np.array([[above, 0], [0, 0]], dtype=np.float32), ["a", "b"])
    full = make_synthetic_shoes(num_train=20, num_test=6, dim=8, seed=1)
    schema = list(full.attribute_schema.values())
    tiny = Catalog(full.features * np.float32(1e-30), full.ids, full.splits, full.attributes, schema, name="tiny")
    env = gym.make("DialogRetrieval-v0", catalog=tiny, expose_target=True)
    _, info = env.reset(seed=0)
    features = env.unwrapped.catalog.features
    for action in range(5):
        _, _, terminated, truncated, info = env.step(action)
        assert info["target_rank"] == reference_ranks(features, features[[action]], [info["target_index"]])[0]
        if terminated or truncated:
            break


# ---------------------------------------------------------------------- query actions
def small_env(**kwargs) -> gym.Env:  # noqa: ANN003
    return gym.make("DialogRetrieval-v0", catalog={"num_train": 30, "num_test": 6, "dim": 8, "seed": 4}, **kwargs)


def test_query_action_is_rebuilt_from_its_spec():
    env = QueryAction(small_env(max_turns=4))
    spec = env.spec
    assert [wrapper.name for wrapper in spec.additional_wrappers] == ["QueryAction"]
    assert spec.additional_wrappers[0].entry_point == "dialog_env.wrappers:QueryAction"
    rebuilt = gym.make(spec)
    assert isinstance(rebuilt, QueryAction) and rebuilt.action_space == env.action_space
    assert rebuilt.unwrapped.max_turns == 4
    first, _ = env.reset(seed=3)
    again, _ = rebuilt.reset(seed=3)
    np.testing.assert_array_equal(first["feedback"], again["feedback"])
    query = env.action_space.sample()
    assert env.step(query)[4]["query_index"] == rebuilt.step(query)[4]["query_index"]


@pytest.mark.parametrize(
    "action, message",
    [
        ([0.0] * 7 + [np.nan], "finite float32 values .*got nan at index 7"),
        ([0.0, np.inf] + [0.0] * 6, "got inf at index 1"),
        ([0.0] * 3 + [1e39] + [0.0] * 4, "\\|value\\| <= 3.4028235e\\+38\\), got 1e\\+39 at index 3"),
    ],
)
def test_query_action_refuses_values_float32_cannot_hold(action, message):
    env = QueryAction(small_env())
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match=message):
        env.step(np.array(action, dtype=np.float64))


def test_query_action_ranks_huge_queries_exactly():
    env = QueryAction(small_env(expose_target=True))
    env.reset(seed=1)
    features = env.unwrapped.catalog.features
    for query in (
        np.full(8, 3e38, np.float32),
        np.array([1e30, -1e30] + [0] * 6, np.float32),
        np.full(8, -1e20, np.float32),
    ):
        _, _, terminated, truncated, info = env.step(query)
        assert info["query_index"] == reference_nearest(features, query[None], 1)[0, 0]
        assert info["query_rank"] == reference_ranks(features, query[None], [info["target_index"]])[0]
        if terminated or truncated:
            env.reset(seed=2)


# ---------------------------------------------------------------------- FAISS over extreme scales
@pytest.mark.parametrize("exponent", [45, -45, 70, -100])
def test_faiss_flat_sees_a_power_of_two_scaled_catalogue_as_the_original(exponent):
    pytest.importorskip("faiss")
    from dialog_env.ann import make_knn_index

    base = np.random.default_rng(6).normal(size=(300, 8)).astype(np.float32)
    queries = base[:20] + np.float32(0.1)
    indices, distances = make_knn_index("faiss-flat", base).search(queries, k=5)
    scaled_indices, scaled_distances = make_knn_index("faiss-flat", np.ldexp(base, exponent)).search(
        np.ldexp(queries, exponent), k=5
    )
    np.testing.assert_array_equal(scaled_indices, indices)
    with np.errstate(over="ignore", under="ignore"):  # float32 distances: inf or 0 beyond its range
        expected = np.ldexp(distances.astype(np.float64), 2 * exponent).astype(np.float32)
    np.testing.assert_allclose(scaled_distances, expected, rtol=1e-6)
    with pytest.raises(ConfigurationError, match="use the 'exact' backend"):
        make_knn_index("faiss-flat", base).search(np.full((1, 8), 3e38, np.float32), k=1)


# ---------------------------------------------------------------------- synthetic seeds
@pytest.mark.parametrize("seed", [-1, 1.5, None, True, "7"])
def test_synthetic_seed_must_be_a_non_negative_integer(seed):
    with pytest.raises(
        ConfigurationError, match=f"seed of the synthetic catalogue must be a non-negative integer, got {seed!r}"
    ):
        make_synthetic_shoes(num_train=5, num_test=2, dim=4, seed=seed)


def test_env_with_a_negative_catalogue_seed_gives_a_project_error():
    with pytest.raises(ConfigurationError, match="seed .* non-negative integer, got -1"):
        gym.make("DialogRetrieval-v0", catalog={"num_train": 5, "num_test": 2, "dim": 4, "seed": -1})
    make_synthetic_shoes(num_train=5, num_test=2, dim=4, seed=np.int64(3))  # NumPy integers are fine
