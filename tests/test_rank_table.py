"""Rank tables (issue 17): exact against float64 brute force, built once and shared, bit-identical rollouts."""

from __future__ import annotations

import functools
import hashlib
import pickle
import threading
import time

import gymnasium as gym
import numpy as np
import pytest

import dialog_env  # noqa: F401 - registers DialogRetrieval-v0
import dialog_env.env
import dialog_env.rank_table as rank_table_module
from dialog_env import DialogRetrievalEnv, DialogRetrievalVectorEnv
from dialog_env.catalog import Catalog
from dialog_env.errors import ConfigurationError
from dialog_env.rank_table import (
    AUTO_RANK_TABLE_BYTES,
    RankTable,
    build_rank_table,
    clear_rank_table_cache,
    rank_table_dtype,
    rank_table_nbytes,
    set_build_progress,
    shared_rank_table,
    wants_rank_table,
)
from dialog_env.ranking import Ranker, feature_scale
from tests.test_vector import assert_same_step


@pytest.fixture(autouse=True)
def fresh_cache():
    """Every test starts (and leaves) with no shared table."""
    clear_rank_table_cache()
    yield
    clear_rank_table_cache()


def brute_force_table(features: np.ndarray) -> np.ndarray:
    """``table[s, t]``: images strictly closer to image ``s`` than ``t`` is, float64 distances."""
    features64 = features.astype(np.float64)
    table = np.empty((len(features), len(features)), dtype=np.int64)
    for shown in range(len(features)):
        distances = np.sum((features64 - features64[shown]) ** 2, axis=1)
        table[shown] = np.count_nonzero(distances[None, :] < distances[:, None], axis=1)
    return table


def _catalogues() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(17)
    normal = rng.normal(size=(150, 16)).astype(np.float32)
    grid = rng.integers(-2, 3, size=(70, 4)).astype(np.float32)  # quantised: many exact ties
    odd = rng.normal(size=(60, 7)).astype(np.float32)
    # Far from the origin: the float64 product's scores |x|^2 - 2 s.x (~1e14) lose the differences
    # between distances (~1e2) to rounding; ranking by those scores alone gets thousands of pairs wrong.
    offset = np.float32(1e6) + rng.normal(size=(120, 256)).astype(np.float32)
    return {
        "normal": normal,
        "ties-and-duplicates": np.concatenate([grid, grid[:20], grid[:5]]),
        "odd-dim-duplicates": np.concatenate([odd, odd[::3], odd[:4]]),
        "huge-1e19": np.concatenate([normal[:80] * np.float32(1e19), normal[:10] * np.float32(1e19)]),
        "tiny-1e-30": np.concatenate([normal[:80] * np.float32(1e-30), normal[:10] * np.float32(1e-30)]),
        "far-from-origin": offset,
        "all-equal": np.ones((12, 3), dtype=np.float32),
        "two-images": np.array([[0.0, 1.0], [2.0, 3.0]], dtype=np.float32),
    }


CATALOGUES = _catalogues()


@pytest.mark.parametrize("name", sorted(CATALOGUES))
def test_table_equals_float64_brute_force_and_target_ranks(name):
    features = CATALOGUES[name]
    num_images = len(features)
    ranker = Ranker(features, max_chunk_bytes=50 * 7 * num_images)  # blocks of 7 shown images
    assert ranker.all_target_ranks_rows() == min(7, num_images)
    table = build_rank_table(ranker)
    expected = brute_force_table(features)
    assert table.ranks.dtype == np.uint8 and table.ranks.shape == (num_images, num_images)
    np.testing.assert_array_equal(table.ranks, expected)
    assert np.all(np.diag(table.ranks) == 0)
    # ... and the product path, pair by pair (far from the origin it rechecks nearly every image in
    # float64, which is slow: there the pairs of 20 shown images).
    rows = 20 if name == "far-from-origin" else num_images
    shown, targets = np.divmod(np.arange(rows * num_images), num_images)
    np.testing.assert_array_equal(Ranker(features).target_ranks(shown, targets), expected[:rows].ravel())


def test_extreme_catalogues_are_the_ones_the_ranker_scales():
    assert feature_scale(CATALOGUES["huge-1e19"]) < 2.0**-40
    assert feature_scale(CATALOGUES["tiny-1e-30"]) > 2.0**40
    assert feature_scale(CATALOGUES["normal"]) == 1.0


def test_far_from_the_origin_the_error_bound_is_needed():
    features = CATALOGUES["far-from-origin"].astype(np.float64)
    scores = -2.0 * features @ features.T + np.einsum("nd,nd->n", features, features)
    naive = np.count_nonzero(scores[:, None, :] < scores[:, :, None], axis=2)  # float64 product, no recheck
    assert np.count_nonzero(naive != brute_force_table(CATALOGUES["far-from-origin"])) > 100


def test_duplicates_of_the_shown_image_have_rank_zero():
    table = build_rank_table(Ranker(CATALOGUES["ties-and-duplicates"])).ranks
    assert table[0, 70] == table[70, 0] == table[0, 90] == 0  # rows 70.., 90.. duplicate rows 0..
    assert np.all(build_rank_table(Ranker(CATALOGUES["all-equal"])).ranks == 0)


def test_all_target_ranks_writes_into_out_and_checks_it():
    features = CATALOGUES["normal"]
    ranker = Ranker(features)
    shown = np.array([5, 0, 149, 5])
    ranks = ranker.all_target_ranks(shown)
    assert ranks.dtype == np.int64 and ranks.shape == (4, 150)
    np.testing.assert_array_equal(ranks, brute_force_table(features)[shown])
    out = np.zeros((4, 150), dtype=np.uint8)
    assert ranker.all_target_ranks(shown, out=out) is out
    np.testing.assert_array_equal(out, ranks)
    assert ranker.all_target_ranks(np.array([], dtype=np.int64)).shape == (0, 150)
    with pytest.raises(ConfigurationError, match="holds 149"):
        ranker.all_target_ranks(shown, out=np.zeros((4, 150), dtype=np.int8))
    with pytest.raises(ConfigurationError, match=r"\(4, 150\)"):
        ranker.all_target_ranks(shown, out=np.zeros((3, 150), dtype=np.int64))
    with pytest.raises(ConfigurationError, match="0..149"):
        ranker.all_target_ranks(np.array([150]))


def test_dtype_and_size():
    assert rank_table_dtype(2) == np.uint8 and rank_table_dtype(256) == np.uint8
    assert rank_table_dtype(257) == np.uint16 and rank_table_dtype(65_536) == np.uint16
    assert rank_table_dtype(65_537) == np.uint32
    assert rank_table_nbytes(10_000) == 200_000_000 and rank_table_nbytes(4_658) == 43_393_928
    assert wants_rank_table("auto", 10_000) and wants_rank_table("auto", 11_585)
    assert not wants_rank_table("auto", 11_586) and rank_table_nbytes(11_586) > AUTO_RANK_TABLE_BYTES
    assert wants_rank_table(True, 11_586) and not wants_rank_table(False, 10)


def test_build_refuses_tables_above_the_memory_limit():
    ranker = Ranker(CATALOGUES["normal"])
    message = r"150\^2 x 1 bytes \(uint8\) = 22,500 bytes, more than max_bytes = 22,499 bytes"
    with pytest.raises(ConfigurationError, match=message):
        build_rank_table(ranker, max_bytes=150**2 - 1)
    with pytest.raises(ConfigurationError, match="needs"):
        shared_rank_table(ranker, max_bytes=100)
    assert build_rank_table(ranker, max_bytes=150**2).nbytes == 150**2
    # Once built, the shared table is returned whatever the limit (it costs no more memory).
    table = shared_rank_table(ranker, max_bytes=None)
    assert shared_rank_table(ranker, max_bytes=100) is table


def test_the_process_default_decides_unsaid_progress_bars(capsys):
    """A small build shows no bar by default; set_build_progress(True) shows it, and the caller's word wins."""
    ranker = Ranker(CATALOGUES["normal"])
    build_rank_table(ranker)
    assert "rank table" not in capsys.readouterr().err
    previous = set_build_progress(True)
    try:
        build_rank_table(ranker)
        assert "rank table (150 images" in capsys.readouterr().err
        build_rank_table(ranker, progress=False)
        assert "rank table" not in capsys.readouterr().err
    finally:
        assert set_build_progress(previous) is True
    assert set_build_progress(None) is previous


def test_shared_table_is_built_once_per_features_thread_safe(monkeypatch):
    builds = []

    def slow_build(ranker, **kwargs):
        builds.append(threading.get_ident())
        time.sleep(0.05)  # long enough for the other threads to arrive during the build
        return build_rank_table(ranker, **kwargs)

    monkeypatch.setattr(rank_table_module, "build_rank_table", slow_build)
    features = CATALOGUES["normal"]
    # Four rankers over four equal copies of the features: one fingerprint, one table.
    rankers = [Ranker(features.copy()) for _ in range(4)]
    tables: list[RankTable] = []
    threads = [threading.Thread(target=lambda r=r: tables.append(shared_rank_table(r))) for r in rankers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len(tables) == 4
    assert all(table is tables[0] for table in tables)
    assert shared_rank_table(Ranker(CATALOGUES["odd-dim-duplicates"])) is not tables[0]
    assert len(builds) == 2


def test_environments_on_one_split_share_one_table(small_shoes, monkeypatch):
    builds = []
    real_build = rank_table_module.build_rank_table
    monkeypatch.setattr(
        rank_table_module, "build_rank_table", lambda ranker, **kw: builds.append(1) or real_build(ranker, **kw)
    )
    single = DialogRetrievalEnv(catalog=small_shoes, rank_table=True)
    vector = gym.make_vec("DialogRetrieval-v0", num_envs=3, catalog=small_shoes, rank_table="auto")
    made = gym.make("DialogRetrieval-v0", catalog=small_shoes, rank_table=True).unwrapped
    # Another Catalog object with the same features (e.g. loaded again) shares it too.
    again = Catalog(small_shoes.features.copy(), small_shoes.ids, small_shoes.splits, small_shoes.attributes,
                    list(small_shoes.attribute_schema.values()))  # fmt: skip
    other_object = DialogRetrievalVectorEnv(num_envs=2, catalog=again, rank_table=True)
    table = single.ranker.rank_table
    assert isinstance(table, RankTable) and table.num_images == 300 and table.ranks.dtype == np.uint16
    assert vector.ranker.rank_table is table and made.ranker.rank_table is table
    assert other_object.ranker.rank_table is table
    assert len(builds) == 1
    test_split = DialogRetrievalEnv(catalog=small_shoes, split="test", rank_table=True)
    assert test_split.ranker.rank_table.num_images == 100 and len(builds) == 2
    assert DialogRetrievalEnv(catalog=small_shoes).ranker.rank_table is None  # off by default


@pytest.mark.parametrize("value", [1, 0, "yes", "Auto", None, 1.0])
def test_option_is_validated_like_the_other_bools(small_shoes, value):
    for make in (DialogRetrievalEnv, DialogRetrievalVectorEnv):
        with pytest.raises(ConfigurationError, match=rf"rank_table must be True .* got {value!r} of type"):
            make(catalog=small_shoes, rank_table=value)


def test_environment_reports_a_table_over_the_limit(small_shoes, monkeypatch):
    monkeypatch.setattr(dialog_env.env, "shared_rank_table", functools.partial(shared_rank_table, max_bytes=1000))
    message = r"300\^2 x 2 bytes \(uint16\) = 180,000 bytes, more than max_bytes = 1,000 bytes"
    with pytest.raises(ConfigurationError, match=message):
        DialogRetrievalEnv(catalog=small_shoes, rank_table=True)


def test_attach_refuses_a_table_of_other_features():
    table = build_rank_table(Ranker(CATALOGUES["normal"]))
    with pytest.raises(ConfigurationError, match="other features"):
        Ranker(CATALOGUES["normal"] + np.float32(1.0)).attach_rank_table(table)
    with pytest.raises(ConfigurationError, match="other features"):
        Ranker(CATALOGUES["two-images"]).attach_rank_table(table)
    ranker = Ranker(CATALOGUES["normal"])
    ranker.attach_rank_table(table)
    assert ranker.rank_table is table
    ranker.attach_rank_table(None)
    assert ranker.rank_table is None


def test_only_target_ranks_reads_the_table(monkeypatch):
    features = CATALOGUES["ties-and-duplicates"]
    ranker = Ranker(features)
    ranker.attach_rank_table(shared_rank_table(ranker))
    lookups = []
    real_lookup = RankTable.lookup
    monkeypatch.setattr(RankTable, "lookup", lambda self, s, t: lookups.append(len(s)) or real_lookup(self, s, t))
    shown, targets = np.array([0, 3, 70]), np.array([70, 3, 1])
    np.testing.assert_array_equal(ranker.target_ranks(shown, targets), brute_force_table(features)[shown, targets])
    assert lookups == [3]
    queries = features[shown].astype(np.float64) + 0.25
    query_ranks = ranker.query_target_ranks(queries, targets)
    indices, _ = ranker.nearest(queries, k=2)
    assert lookups == [3]  # query vectors use the product
    bare = Ranker(features)
    np.testing.assert_array_equal(query_ranks, bare.query_target_ranks(queries, targets))
    np.testing.assert_array_equal(indices, bare.nearest(queries, k=2)[0])
    with pytest.raises(ConfigurationError, match="one target per reference"):
        ranker.target_ranks(np.array([0, 1]), np.array([0]))


def with_ties(catalog: Catalog) -> Catalog:
    """``catalog`` with coarsely quantised features, train images 20..39 duplicating 0..19: exact ties."""
    features = np.round(catalog.features * 2.0) / 2.0
    train = catalog.splits["train"]
    features[train[20:40]] = features[train[:20]]
    return Catalog(features.astype(np.float32), catalog.ids, catalog.splits, catalog.attributes,
                   list(catalog.attribute_schema.values()), name="with-ties")  # fmt: skip


def assert_same_single_step(with_table: tuple, without: tuple) -> None:
    *arrays, info = with_table
    *expected_arrays, expected_info = without
    for key, value in expected_arrays[0].items():
        assert arrays[0][key].dtype == value.dtype
        np.testing.assert_array_equal(arrays[0][key], value, err_msg=key)
    assert arrays[1:] == expected_arrays[1:] and [type(x) for x in arrays[1:]] == [type(x) for x in expected_arrays[1:]]
    assert info == expected_info and [type(v) for v in info.values()] == [type(v) for v in expected_info.values()]


@pytest.mark.parametrize("ties", [False, True])
def test_single_env_rollouts_are_bit_identical_with_the_table(small_shoes, ties):
    catalog = with_ties(small_shoes) if ties else small_shoes
    kwargs = {"catalog": catalog, "user_kwargs": {"vague_rate": 0.2, "mistake_rate": 0.1}, "max_turns": 6,
              "reward_mode": "improvement", "expose_target": True, "accept_rank": 3}  # fmt: skip
    with_table = DialogRetrievalEnv(rank_table=True, **kwargs)
    without = DialogRetrievalEnv(rank_table=False, **kwargs)
    assert with_table.ranker.rank_table is not None and without.ranker.rank_table is None
    actions = np.random.default_rng(3).integers(300, size=400)
    actions[::7] = 0  # some repeated images, and (with ties) duplicates of image 20
    ranks = []
    assert_same_single_step(with_table.reset(seed=11), without.reset(seed=11))
    for action in actions:
        step = with_table.step(action)
        assert_same_single_step(step, without.step(action))
        ranks.append(step[-1]["target_rank"])
        if step[2] or step[3]:
            assert_same_single_step(with_table.reset(), without.reset())
    assert len(set(ranks)) > 50  # the rollout ranked many different targets and images


@pytest.mark.parametrize("mode", ["NextStep", "SameStep", "Disabled"])
def test_vector_env_rollouts_are_bit_identical_with_the_table(small_shoes, mode):
    catalog = with_ties(small_shoes)
    kwargs = {"num_envs": 16, "catalog": catalog, "max_turns": 4, "autoreset_mode": mode, "patience": 2}
    with_table = DialogRetrievalVectorEnv(rank_table=True, **kwargs)
    without = DialogRetrievalVectorEnv(rank_table=False, **kwargs)
    actions = np.random.default_rng(5).integers(300, size=(120, 16))
    actions[:, 0] = 20  # a duplicated image, shown over and over in dialog 0
    assert_same_step(with_table.reset(seed=2), without.reset(seed=2))
    for step_actions in actions:
        step = with_table.step(step_actions)
        assert_same_step(step, without.step(step_actions))
        ended = step[2] | step[3]
        if mode == "Disabled" and ended.any():
            options = {"reset_mask": ended}
            assert_same_step(with_table.reset(options=options), without.reset(options=options))


def test_pickled_rankers_leave_the_table_out_and_take_the_shared_one(small_shoes):
    env = DialogRetrievalEnv(catalog=small_shoes, rank_table=True)
    table = env.ranker.rank_table
    data = pickle.dumps(env.ranker)
    assert len(data) < table.nbytes  # the (300, 300) uint16 table is not in the pickle
    assert pickle.loads(data).rank_table is table  # same process: the shared table
    clear_rank_table_cache()
    del env
    copy = pickle.loads(data)  # as in a fresh process: built again, equal
    assert copy.rank_table is not table
    np.testing.assert_array_equal(copy.rank_table.ranks, table.ranks)


def test_pinned_rollout_digest_holds_with_the_table():
    """The pinned 10,000-step digest of ``tests/test_rollout_checksum.py`` (default catalogue, test split)."""
    from tests.test_rollout_checksum import CASES, DIGESTS, NUM_DIALOGS, NUM_STEPS, _update

    envs = DialogRetrievalVectorEnv(num_envs=NUM_DIALOGS, rank_table=True, **CASES["relative-attribute"]())
    assert envs.ranker.rank_table is not None and envs.ranker.rank_table.num_images == 4_658
    actions = np.random.default_rng(2018).integers(envs.catalog.num_images, size=(NUM_STEPS, NUM_DIALOGS))
    digest = hashlib.sha256()
    _update(digest, envs.reset(seed=7))
    for step_actions in actions:
        _update(digest, envs.step(step_actions))
    assert digest.hexdigest() == DIGESTS["relative-attribute"]
