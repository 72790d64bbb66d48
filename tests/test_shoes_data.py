"""Real Shoes data path: spatial features in catalogues, caption files, the feature importer.

Stand-in files in the released layout are built at small N under ``tmp_path``; the tests at the
end read the real captions and name lists from ``../shared/data/shoes`` and skip without them.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import tracemalloc
import warnings
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest

import dialog_env  # noqa: F401 - registers DialogRetrieval-v0
from dialog_env.catalog import Catalog, HDF5SpatialFeatures, InMemorySpatialFeatures
from dialog_env.catalog import spatial as catalog_module
from dialog_env.data import (
    CaptionSet,
    import_shoes,
    load_embedding,
    load_image_captions,
    load_relative_captions,
    read_image_names,
)
from dialog_env.data.shoes import main
from dialog_env.errors import (
    CaptionFormatError,
    CaptionNotFoundError,
    CatalogError,
    CatalogFormatError,
    ConfigurationError,
    DataFileNotFoundError,
    DataFormatError,
    DialogEnvError,
)
from dialog_env.text import Vocabulary
from dialog_env.users.base import UserSimulator


# ====================================================================== spatial features
def _spatial_catalog(num_images: int = 6, regions: int = 4, channels: int = 3, seed: int = 0) -> Catalog:
    rng = np.random.default_rng(seed)
    return Catalog(
        features=rng.standard_normal((num_images, 2)).astype(np.float32),
        ids=[f"img{i}" for i in range(num_images)],
        splits={"train": np.arange(num_images - 2), "test": np.arange(num_images - 2, num_images)},
        name="spatial",
        spatial_features=rng.standard_normal((num_images, regions, channels)).astype(np.float32),
    )


def test_in_memory_spatial_take_handles_unsorted_repeated_indices():
    catalog = _spatial_catalog()
    spatial = catalog.spatial_features
    assert isinstance(spatial, InMemorySpatialFeatures)
    assert spatial.shape == (6, 4, 3) and len(spatial) == 6
    full = spatial.take(np.arange(6))
    indices = np.array([5, 0, 5, 2, 2])
    np.testing.assert_array_equal(spatial.take(indices), full[indices])
    assert spatial.take(3).shape == (4, 3)
    assert spatial.take(np.array([[1, 0], [4, 4]])).shape == (2, 2, 4, 3)
    assert spatial.take([]).shape == (0, 4, 3)
    assert spatial.take(indices).dtype == np.float32
    assert Catalog(full[:, 0, :2].copy(), list("abcdef")).spatial_features is None


@pytest.mark.parametrize(
    "indices, message",
    [
        (np.array([0, 6]), "index 6 is out of range 0..5"),
        (np.array([-1]), "index -1"),
        (np.array([0.0]), "must be integers"),
    ],
)
def test_spatial_take_rejects_bad_indices(indices, message):
    with pytest.raises(CatalogError, match=message):
        _spatial_catalog().spatial_features.take(indices)


@pytest.mark.parametrize(
    "spatial, message",
    [
        (np.zeros((6, 4, 3), dtype=np.float64), "spatial features must be float32, got float64"),
        (np.zeros((6, 12), dtype=np.float32), "shape \\(N, L, C\\)"),
        (np.zeros((5, 4, 3), dtype=np.float32), "spatial features have 5 rows.*expected 6"),
        (np.full((6, 4, 3), np.nan, dtype=np.float32), "NaN or inf in 6 row"),
    ],
)
def test_invalid_spatial_features_are_rejected(spatial, message):
    with pytest.raises(CatalogError, match=message):
        Catalog(np.zeros((6, 2), dtype=np.float32), list("abcdef"), spatial_features=spatial)


def test_spatial_round_trip_is_lazy_and_equal(tmp_path):
    catalog = _spatial_catalog()
    path = catalog.save(tmp_path / "spatial.h5")
    loaded = Catalog.load(path)
    assert isinstance(loaded.spatial_features, HDF5SpatialFeatures)
    assert loaded.spatial_features.path == path.resolve()
    assert loaded == catalog
    indices = np.array([4, 1, 1, 0])
    np.testing.assert_array_equal(loaded.spatial_features.take(indices), catalog.spatial_features.take(indices))
    with h5py.File(path) as handle:
        assert handle["spatial_features"].chunks == (1, 4, 3)
    assert "spatial_features=(6, 4, 3)" in repr(loaded)

    changed = Catalog(
        catalog.features, catalog.ids, catalog.splits, name=catalog.name,
        spatial_features=catalog.spatial_features.take(np.arange(6)) + 1,
    )
    assert changed != loaded
    assert Catalog(catalog.features, catalog.ids, catalog.splits, name=catalog.name) != loaded


def test_select_remaps_spatial_features_without_reading(tmp_path):
    catalog = _spatial_catalog()
    loaded = Catalog.load(catalog.save(tmp_path / "spatial.h5"))
    full = catalog.spatial_features.take(np.arange(6))
    for source in (catalog, loaded):
        test = source.select("test")
        assert test.spatial_features.shape == (2, 4, 3)
        np.testing.assert_array_equal(test.spatial_features.take([1, 0, 1]), full[[5, 4, 5]])
    lazy_view = loaded.select("test").spatial_features
    assert isinstance(lazy_view, HDF5SpatialFeatures)
    # A view of a view composes the row maps.
    np.testing.assert_array_equal(lazy_view.subset([1]).take([0]), full[[5]])


def test_lazy_spatial_features_survive_pickling(tmp_path):
    catalog = _spatial_catalog(num_images=64, regions=8, channels=16)
    loaded = Catalog.load(catalog.save(tmp_path / "spatial.h5"))
    train = loaded.select("train")
    train.spatial_features.take([0])  # opens the file
    blob = pickle.dumps(train)
    assert len(blob) < catalog.spatial_features.nbytes / 2  # the path travels, not the values
    copy = pickle.loads(blob)
    np.testing.assert_array_equal(copy.spatial_features.take([3, 2]), catalog.spatial_features.take([3, 2]))


def test_float16_storage_is_read_as_float32(tmp_path):
    catalog = _spatial_catalog()
    path = catalog.save(tmp_path / "half.h5")
    values = catalog.spatial_features.take(np.arange(6))
    with h5py.File(path, "a") as handle:
        del handle["spatial_features"]
        handle.create_dataset("spatial_features", data=values.astype(np.float16), chunks=(1, 4, 3))
    loaded = Catalog.load(path)
    assert loaded.spatial_features.storage_dtype == np.float16
    taken = loaded.spatial_features.take([2])
    assert taken.dtype == np.float32
    np.testing.assert_array_equal(taken, values[[2]].astype(np.float16).astype(np.float32))
    # Saving a lazy float16 source streams it and keeps float16.
    again = loaded.save(tmp_path / "again.h5")
    with h5py.File(again) as handle:
        assert handle["spatial_features"].dtype == np.float16
    assert Catalog.load(again) == loaded


def test_save_streams_a_lazy_source_in_blocks(tmp_path, monkeypatch):
    catalog = _spatial_catalog(num_images=40)
    loaded = Catalog.load(catalog.save(tmp_path / "a.h5"))
    monkeypatch.setattr(catalog_module, "_STREAM_BYTES", 3 * 4 * 3 * 4)  # three rows per block
    seen = []
    original = HDF5SpatialFeatures._read_sorted

    def spy(self, rows):
        seen.append(rows.size)
        return original(self, rows)

    monkeypatch.setattr(HDF5SpatialFeatures, "_read_sorted", spy)
    copy = Catalog.load(loaded.save(tmp_path / "b.h5"))
    assert max(seen) == 3
    monkeypatch.undo()
    assert copy == catalog


def _break_spatial(path, data):
    with h5py.File(path, "a") as handle:
        del handle["spatial_features"]
        handle.create_dataset("spatial_features", data=data)


@pytest.mark.parametrize(
    "data, message",
    [
        (np.zeros((5, 4, 3), dtype=np.float32), "'spatial_features': has 5 rows, expected 6"),
        (np.zeros((6, 12), dtype=np.float32), "'spatial_features': must have shape \\(N, L, C\\)"),
        (np.zeros((6, 4, 3), dtype=np.float64), "'spatial_features': must be float32 or float16, got float64"),
        (np.zeros((6, 4, 3), dtype=np.int32), "must be float32 or float16, got int32"),
    ],
)
def test_bad_spatial_datasets_fail_at_load(tmp_path, data, message):
    path = _spatial_catalog().save(tmp_path / "bad.h5")
    _break_spatial(path, data)
    with pytest.raises(CatalogFormatError, match=message) as caught:
        Catalog.load(path)
    assert str(path) in str(caught.value)


def test_nan_rows_fail_when_read_not_at_load(tmp_path):
    catalog = _spatial_catalog()
    path = catalog.save(tmp_path / "nan.h5")
    values = catalog.spatial_features.take(np.arange(6))
    values[3, 1, 2] = np.nan
    _break_spatial(path, values)
    loaded = Catalog.load(path)  # shape and dtype only
    np.testing.assert_array_equal(loaded.spatial_features.take([0, 5]), values[[0, 5]])
    with pytest.raises(CatalogFormatError, match="'spatial_features': row 3 contains NaN or inf") as caught:
        loaded.spatial_features.take([5, 3])
    assert str(path.resolve()) in str(caught.value)


def test_lazy_take_reads_only_the_rows_asked_for(tmp_path):
    catalog = _spatial_catalog(num_images=64, regions=49, channels=64)
    loaded = Catalog.load(catalog.save(tmp_path / "big.h5"))
    loaded.spatial_features.take([0])  # open the file outside the measurement
    tracemalloc.start()
    try:
        rows = loaded.spatial_features.take([40, 2, 40])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(rows, catalog.spatial_features.take([40, 2, 40]))
    assert peak < catalog.spatial_features.nbytes / 8


# ====================================================================== stand-in release files
NUM_TRAIN, NUM_TEST, FC_DIM, EMBED_DIM, GRID, CHANNELS = 12, 5, 16, 6, 3, 8


class _EchoUser(UserSimulator):
    """A stand-in shopper for catalogues without attributes (real Shoes has none)."""

    name = "echo"

    @property
    def vocabulary(self) -> Vocabulary:
        return Vocabulary(["is", "different"])

    def describe(self, catalog, targets, shown, rngs):
        return ["is different"] * len(targets)


@pytest.fixture()
def release(tmp_path):
    """Small files in the released layout: name lists, fc/att npz (key arr_0), embedding pickle."""
    rng = np.random.default_rng(5)
    names = [f"img_womens_boots_{i}.jpg" for i in range(NUM_TRAIN + NUM_TEST)]
    (tmp_path / "train_im_names.txt").write_text("\n".join(names[:NUM_TRAIN]) + "\n\n")
    (tmp_path / "eval_im_names.txt").write_text("\n".join(names[NUM_TRAIN:]) + "\n")
    total = NUM_TRAIN + NUM_TEST
    fc = rng.standard_normal((total, FC_DIM)).astype(np.float32)
    att = rng.standard_normal((total, GRID, GRID, CHANNELS)).astype(np.float32)
    embedding = rng.standard_normal((total, EMBED_DIM)).astype(np.float32)
    np.savez(tmp_path / "fc_feature.npz", fc)
    np.savez_compressed(tmp_path / "att_feature.npz", att)
    with open(tmp_path / "256embedding.p", "wb") as handle:
        pickle.dump({"train": embedding[:NUM_TRAIN], "test": embedding[NUM_TRAIN:]}, handle)
    return {
        "dir": tmp_path,
        "names": names,
        "fc": fc,
        "att": att,
        "embedding": embedding,
        "kwargs": {
            "train_names": tmp_path / "train_im_names.txt",
            "test_names": tmp_path / "eval_im_names.txt",
            "fc": tmp_path / "fc_feature.npz",
            "att": tmp_path / "att_feature.npz",
            "embedding": tmp_path / "256embedding.p",
            "output": tmp_path / "shoes.h5",
            "progress": False,
        },
    }


def test_import_end_to_end_then_play(release):
    path = import_shoes(**release["kwargs"])
    catalog = Catalog.load(path)
    assert list(catalog.ids) == release["names"]
    np.testing.assert_array_equal(catalog.splits["train"], np.arange(NUM_TRAIN))
    np.testing.assert_array_equal(catalog.splits["test"], np.arange(NUM_TRAIN, NUM_TRAIN + NUM_TEST))
    np.testing.assert_array_equal(catalog.features, release["embedding"])
    assert catalog.spatial_features.shape == (NUM_TRAIN + NUM_TEST, GRID * GRID, CHANNELS)
    expected = release["att"].reshape(-1, GRID * GRID, CHANNELS)
    np.testing.assert_array_equal(catalog.spatial_features.take([16, 0, 3]), expected[[16, 0, 3]])
    np.testing.assert_array_equal(catalog.select("test").spatial_features.take([0]), expected[[NUM_TRAIN]])
    assert sorted(p.name for p in release["dir"].iterdir() if p.name.startswith(".")) == []

    env = gym.make("DialogRetrieval-v0", catalog=path, split="test", user=_EchoUser())
    observation, info = env.reset(seed=0)
    observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert info["feedback_text"] == "is different" and 0.0 <= reward <= 1.0
    env.close()


def test_import_fc_features_per_split_files_and_float16(release):
    directory, fc, att = release["dir"], release["fc"], release["att"]
    np.savez(directory / "fc_train.npz", feats=fc[:NUM_TRAIN])
    np.savez(directory / "fc_test.npz", feats=fc[NUM_TRAIN:])
    np.savez(directory / "att_train.npz", att[:NUM_TRAIN])
    np.save(directory / "att_test.npy", att[NUM_TRAIN:])
    kwargs = {**release["kwargs"], "embedding": None, "fc": [directory / "fc_train.npz", directory / "fc_test.npz"],
              "att": [directory / "att_train.npz", directory / "att_test.npy"], "spatial_dtype": "float16"}
    catalog = Catalog.load(import_shoes(**kwargs))
    np.testing.assert_array_equal(catalog.features, fc)
    assert catalog.spatial_features.storage_dtype == np.float16
    np.testing.assert_array_equal(
        catalog.spatial_features.take([NUM_TRAIN + 1]),
        att[[NUM_TRAIN + 1]].reshape(1, -1, CHANNELS).astype(np.float16).astype(np.float32),
    )
    # With an embedding available, features="fc" still picks the fc array.
    chosen = Catalog.load(import_shoes(**{**release["kwargs"], "features": "fc"}))
    np.testing.assert_array_equal(chosen.features, fc)


def test_import_channels_first_att(release):
    directory = release["dir"]
    np.savez(directory / "att_nchw.npz", release["att"].transpose(0, 3, 1, 2))
    kwargs = {**release["kwargs"], "att": directory / "att_nchw.npz", "att_layout": "nchw"}
    catalog = Catalog.load(import_shoes(**kwargs))
    np.testing.assert_array_equal(catalog.spatial_features.take([7]), release["att"][[7]].reshape(1, -1, CHANNELS))


def test_import_streams_att_in_bounded_memory(tmp_path):
    """Would fail if the att array were loaded whole (that alone allocates its size several times):
    peak memory stays far below its size."""
    rng = np.random.default_rng(0)
    num_train, num_test, channels = 48, 16, 256
    names = [f"n{i}.jpg" for i in range(num_train + num_test)]
    (tmp_path / "train.txt").write_text("\n".join(names[:num_train]))
    (tmp_path / "test.txt").write_text("\n".join(names[num_train:]))
    np.savez(tmp_path / "fc.npz", rng.standard_normal((64, 4)).astype(np.float32))
    att = rng.standard_normal((64, 7, 7, channels)).astype(np.float32)  # 3.2 MB
    np.savez_compressed(tmp_path / "att.npz", att)
    row_bytes = 7 * 7 * channels * 4

    def run():
        import_shoes(tmp_path / "train.txt", tmp_path / "test.txt", tmp_path / "fc.npz", tmp_path / "out.h5",
                     att=tmp_path / "att.npz", chunk_bytes=row_bytes, progress=False)

    run()  # first use imports modules and fills caches; measure the second run only
    tracemalloc.start()
    try:
        run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < att.nbytes / 4, f"peak {peak} bytes for a {att.nbytes}-byte att array"
    loaded = Catalog.load(tmp_path / "out.h5")
    np.testing.assert_array_equal(loaded.spatial_features.take([63]), att[[63]].reshape(1, 49, channels))


def _error_case(release, change):
    """Apply ``change(release) -> kwargs overrides`` and return the import error."""
    kwargs = {**release["kwargs"], **change(release)}
    with pytest.raises(DialogEnvError) as caught:
        import_shoes(**kwargs)
    assert not (release["dir"] / "shoes.h5").exists()
    assert not [p for p in release["dir"].iterdir() if ".tmp-" in p.name]
    return caught.value


def _two_arrays(release):
    np.savez(release["dir"] / "two.npz", a=release["fc"], b=release["fc"])
    return {"fc": release["dir"] / "two.npz"}


def _short_fc(release):
    np.savez(release["dir"] / "short.npz", release["fc"][:-1])
    return {"fc": release["dir"] / "short.npz"}


def _nan_att(release):
    att = release["att"].copy()
    att[14, 0, 1, 2] = np.inf
    np.savez_compressed(release["dir"] / "nan.npz", att)
    return {"att": release["dir"] / "nan.npz"}


def _huge_att(release):
    att = release["att"].copy()
    att[2, 0, 0, 0] = 1e6
    np.savez(release["dir"] / "huge.npz", att)
    return {"att": release["dir"] / "huge.npz", "spatial_dtype": "float16"}


def _overlap(release):
    (release["dir"] / "test2.txt").write_text("\n".join(release["names"][NUM_TRAIN - 1 : -1]))
    return {"test_names": release["dir"] / "test2.txt"}


def _bad_embedding_rows(release):
    with open(release["dir"] / "e.p", "wb") as handle:
        pickle.dump((release["embedding"][:NUM_TRAIN], release["embedding"][NUM_TRAIN + 1 :]), handle)
    return {"embedding": release["dir"] / "e.p"}


def _object_pickle(release):
    class Shout:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(release["dir"] / "evil.p", "wb") as handle:
        pickle.dump({"train": Shout(), "test": release["embedding"]}, handle)
    return {"embedding": release["dir"] / "evil.p"}


def _text_as_npz(release):
    (release["dir"] / "notes.npz").write_text("not numpy")
    return {"att": release["dir"] / "notes.npz"}


@pytest.mark.parametrize(
    "change, error_type, message",
    [
        (_two_arrays, DataFormatError, "fc_feature|two.npz' holds 2 arrays \\['a', 'b'\\]; expected one, or name it"),
        (lambda r: {**_two_arrays(r), "fc_key": "c"}, DataFormatError,
         "has no array 'c'; its arrays are \\['a', 'b'\\]"),
        (_short_fc, DataFormatError, "short.npz', array 'arr_0' has shape \\(16, 16\\), expected \\(17, D\\)"),
        (_nan_att, DataFormatError,
         "nan.npz', array 'arr_0': row 14 \\(img_womens_boots_14.jpg\\) contains NaN or inf"),
        (_huge_att, DataFormatError, "row 2 \\(img_womens_boots_2.jpg\\) has values beyond the float16 range"),
        (_overlap, DataFormatError, "share 1 name\\(s\\), e.g. 'img_womens_boots_11.jpg'"),
        (_bad_embedding_rows, DataFormatError, "the test part has 4 rows, expected 5"),
        (_object_pickle, DataFormatError, "refers to builtins.print; only NumPy arrays"),
        (_text_as_npz, DataFormatError, "notes.npz' is not a readable .npy array"),
        (lambda r: {"fc": r["dir"] / "nope.npz"}, DataFileNotFoundError, "fc features file .*nope.npz' does not exist"),
        (lambda r: {"features": "pixels"}, ConfigurationError, "features must be one of \\['embedding', 'fc'\\]"),
        (lambda r: {"embedding": None, "features": "embedding"}, ConfigurationError, "needs an embedding pickle"),
        (lambda r: {"spatial_dtype": "int8"}, ConfigurationError, "spatial_dtype must be"),
        (lambda r: {"fc": [r["dir"] / "fc_feature.npz"] * 3}, ConfigurationError, "one file for all images or two"),
    ],
)
def test_import_errors_name_the_file_and_leave_nothing(release, change, error_type, message):
    error = _error_case(release, change)
    assert isinstance(error, error_type)
    assert __import__("re").search(message, str(error)), str(error)


def test_embedding_pickle_layouts(tmp_path):
    train, test = np.ones((3, 2), np.float32), np.zeros((2, 2), np.float64)
    cases = {
        "dict.p": {"train": train, "eval": test},
        "pair.p": (train, test),
        "lists.p": [train.tolist(), test.tolist()],
    }
    for name, value in cases.items():
        (tmp_path / name).write_bytes(pickle.dumps(value))
        loaded_train, loaded_test = load_embedding(tmp_path / name)
        assert loaded_train.dtype == np.float32 and loaded_test.shape == (2, 2)
    # A pickle written by NumPy 1.x names numpy.core.multiarray; it still loads.
    old = pickle.dumps({"train": train, "test": train}, protocol=3)
    old = old.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    (tmp_path / "old.p").write_bytes(old)
    np.testing.assert_array_equal(load_embedding(tmp_path / "old.p")[0], train)
    (tmp_path / "keys.p").write_bytes(pickle.dumps({"training": train, "test": test}))
    with pytest.raises(DataFormatError, match="keys \\['test', 'training'\\]; expected a train key \\['train'\\]"):
        load_embedding(tmp_path / "keys.p")
    (tmp_path / "three.p").write_bytes(pickle.dumps((train, train, train)))
    with pytest.raises(DataFormatError, match="holds a tuple of length 3"):
        load_embedding(tmp_path / "three.p")
    (tmp_path / "text.p").write_text("hello")
    with pytest.raises(DataFormatError, match="is not a readable pickle"):
        load_embedding(tmp_path / "text.p")


def test_command_line_import_and_captions(release, capsys):
    directory = release["dir"]
    argv = ["import", "--train-names", str(directory / "train_im_names.txt"), "--test-names",
            str(directory / "eval_im_names.txt"), "--fc", str(directory / "fc_feature.npz"), "--att",
            str(directory / "att_feature.npz"), "--embedding", str(directory / "256embedding.p"),
            "--float16", "--no-progress", "--output", str(directory / "cli.h5")]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    assert Catalog.load(directory / "cli.h5").spatial_features.storage_dtype == np.float16

    names = release["names"]
    _write_json(directory / "rel.json", [
        {"ImageName": names[0], "ReferenceImageName": names[1], "RelativeCaption": "is red"},
        {"ImageName": "gone.jpg", "ReferenceImageName": names[1], "RelativeCaption": "is blue"},
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        status = main(["captions", "--catalog", str(directory / "cli.h5"), "--relative", str(directory / "rel.json")])
    assert status == 0
    assert "rel.json: 1 relative captions kept of 2 records; 1 skipped" in capsys.readouterr().out

    assert main([*argv[:-1], str(directory / "bad.h5"), "--fc-key", "nope"]) == 2
    assert "error: fc features file" in capsys.readouterr().err


def test_module_command_help():
    result = subprocess.run(
        [sys.executable, "-m", "dialog_env.data.shoes", "import", "--help"],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    assert "--train-names" in result.stdout and "--att-key" in result.stdout
    assert "Warning" not in result.stderr


# ====================================================================== captions
def _write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture()
def named_catalog() -> Catalog:
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    return Catalog(np.eye(4, dtype=np.float32), names, {"train": [0, 1, 2], "test": [3]}, name="named")


def test_relative_and_image_captions(tmp_path, named_catalog):
    relative = _write_json(tmp_path / "rel.json", [
        {"ImageName": "c.jpg", "ReferenceImageName": "a.jpg", "RelativeCaption": "  is darker ", "Extra": 1},
        {"ImageName": "d.jpg", "ReferenceImageName": "b.jpg", "RelativeCaption": "has a higher heel"},
    ])
    captions = load_relative_captions(relative, named_catalog)
    assert isinstance(captions, CaptionSet) and len(captions) == 2 and captions.is_relative
    np.testing.assert_array_equal(captions.targets, [2, 3])
    np.testing.assert_array_equal(captions.references, [0, 1])
    assert captions.targets.dtype == np.int64 and not captions.targets.flags.writeable
    assert captions.captions == ["is darker", "has a higher heel"]
    assert (captions.total_records, captions.missing_images) == (2, 0)
    assert captions.summary() == (
        "rel.json: 2 relative captions kept of 2 records; 0 skipped (image not in catalogue 'named')"
    )

    path = _write_json(tmp_path / "cap.json", [{"ImageName": "b.jpg", "Caption": "black boots"}])
    single = load_image_captions(path, named_catalog)
    assert single.references is None and single.captions == ["black boots"]
    np.testing.assert_array_equal(single.targets, [1])


def test_missing_images_are_skipped_with_a_warning_or_fail(tmp_path, named_catalog):
    path = _write_json(tmp_path / "rel.json", [
        {"ImageName": "a.jpg", "ReferenceImageName": "b.jpg", "RelativeCaption": "is red"},
        {"ImageName": "x.jpg", "ReferenceImageName": "b.jpg", "RelativeCaption": "is blue"},
        {"ImageName": "a.jpg", "ReferenceImageName": "y.jpg", "RelativeCaption": "is green"},
    ])
    with pytest.warns(UserWarning, match="skipped 2 of 3 record\\(s\\).*first: record \\[1\\], ImageName 'x.jpg'"):
        captions = load_relative_captions(path, named_catalog)
    assert captions.missing_images == 2 and captions.captions == ["is red"]
    assert "1 relative captions kept of 3 records; 2 skipped" in captions.summary()
    message = "record \\[1\\], key 'ImageName': image 'x.jpg' is not in catalogue 'named'"
    with pytest.raises(CaptionFormatError, match=message):
        load_relative_captions(path, named_catalog, on_missing="error")


def test_transliteration(tmp_path, named_catalog):
    path = _write_json(tmp_path / "cap.json", [{"ImageName": "a.jpg", "Caption": "café crème suède"}])
    message = "record \\[0\\], key 'Caption': found non-ASCII character 'é' \\(U\\+00E9\\)"
    with pytest.raises(CaptionFormatError, match=message):
        load_image_captions(path, named_catalog)
    captions = load_image_captions(path, named_catalog, non_ascii="transliterate")
    assert captions.captions == ["cafe creme suede"] and captions.transliterated == 1
    quoted = _write_json(tmp_path / "quoted.json", [{"ImageName": "a.jpg", "Caption": "is “shinier”"}])
    with pytest.raises(CaptionFormatError, match="'“' \\(U\\+201C\\).*remains after transliteration"):
        load_image_captions(quoted, named_catalog, non_ascii="transliterate")


RELATIVE_KEYS = "\\['ImageName', 'ReferenceImageName', 'RelativeCaption'\\]"


@pytest.mark.parametrize(
    "content, message",
    [
        ('[{"ImageName": "a.jpg",, }]', "is not valid JSON: Expecting .* at line 1, column 24"),
        ('{"ImageName": "a.jpg"}', "the top level is a JSON object, expected a list of records"),
        ("[]", "the list holds no records"),
        ('[["a.jpg", "b.jpg", "is red"]]',
         f"record \\[0\\] is a JSON array, expected an object with keys {RELATIVE_KEYS}"),
        ('[{"ImageName": "a.jpg", "ReferenceImageName": "b.jpg"}]',
         "record \\[0\\] has no key 'RelativeCaption' \\(found keys \\['ImageName', 'ReferenceImageName'\\]\\); "
         f"expected keys {RELATIVE_KEYS}"),
        ('[{"ImageName": "a.jpg", "ReferenceImageName": 7, "RelativeCaption": "x"}]',
         "record \\[0\\], key 'ReferenceImageName': found a JSON number \\(7\\), expected a string"),
        ('[{"ImageName": "a.jpg", "ReferenceImageName": "b.jpg", "RelativeCaption": null}]', "found a JSON null"),
        ('[{"ImageName": "a.jpg", "ReferenceImageName": "b.jpg", "RelativeCaption": "   "}]',
         "record \\[0\\], key 'RelativeCaption': found an empty caption '   ', expected text"),
        ('[{"ImageName": "a.jpg", "ReferenceImageName": "", "RelativeCaption": "x"}]', "found an empty image name"),
        ('[{"ImageName": "a.jpg", "ReferenceImageName": "b.jpg", "RelativeCaption": "x"}, 5]',
         "record \\[1\\] is a JSON number"),
    ],
)
def test_caption_format_errors(tmp_path, named_catalog, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CaptionFormatError, match=message) as caught:
        load_relative_captions(path, named_catalog)
    assert f"caption file {str(path)!r}" in str(caught.value)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, DialogEnvError)


def test_caption_file_and_argument_errors(tmp_path, named_catalog):
    with pytest.raises(CaptionNotFoundError, match="caption file .*nope.json' does not exist") as caught:
        load_image_captions(tmp_path / "nope.json", named_catalog)
    assert isinstance(caught.value, FileNotFoundError)
    with pytest.raises(CaptionFormatError, match="is a directory"):
        load_image_captions(tmp_path, named_catalog)
    (tmp_path / "latin1.json").write_bytes('[{"ImageName": "a.jpg", "Caption": "caf\xe9"}]'.encode("latin-1"))
    with pytest.raises(CaptionFormatError, match="is not UTF-8 text"):
        load_image_captions(tmp_path / "latin1.json", named_catalog)
    good = _write_json(tmp_path / "good.json", [{"ImageName": "a.jpg", "Caption": "red"}])
    with pytest.raises(ConfigurationError, match="on_missing must be one of \\['skip', 'error'\\], got 'drop'"):
        load_image_captions(good, named_catalog, on_missing="drop")
    with pytest.raises(ConfigurationError, match="non_ascii must be one of \\['error', 'transliterate'\\]"):
        load_image_captions(good, named_catalog, non_ascii="ignore")
    with pytest.raises(ConfigurationError, match="catalog must be a dialog_env Catalog, got list"):
        load_image_captions(good, ["a.jpg"])


def test_read_image_names(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("a.jpg\n\n  b.jpg \nc.jpg")
    assert read_image_names(path) == ["a.jpg", "b.jpg", "c.jpg"]
    path.write_text("a.jpg\nb.jpg\n\na.jpg\n")
    with pytest.raises(DataFormatError, match="line 4 repeats 'a.jpg', first listed on line 1"):
        read_image_names(path)
    path.write_text("\n \n")
    with pytest.raises(DataFormatError, match="lists no image names"):
        read_image_names(path)
    with pytest.raises(DataFileNotFoundError, match="image-name list .* does not exist"):
        read_image_names(tmp_path / "missing.txt")


# ====================================================================== the real files
def _real_catalog(directory: Path, drop: set[str] = frozenset()) -> Catalog:
    train = [n for n in read_image_names(directory / "train_im_names.txt") if n not in drop]
    test = [n for n in read_image_names(directory / "eval_im_names.txt") if n not in drop]
    features = np.random.default_rng(0).standard_normal((len(train) + len(test), 4)).astype(np.float32)
    return Catalog(
        features, train + test, {"train": np.arange(len(train)), "test": np.arange(len(train), len(train) + len(test))},
        name="shoes",
    )


def test_real_name_lists(shoes_data_dir):
    train = read_image_names(shoes_data_dir / "train_im_names.txt")
    test = read_image_names(shoes_data_dir / "eval_im_names.txt")
    assert (len(train), len(test)) == (10_000, 4_658)
    assert not set(train) & set(test)


def test_real_captions_load_completely(shoes_data_dir):
    catalog = _real_catalog(shoes_data_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is missing, so nothing is warned about
        relative = load_relative_captions(shoes_data_dir / "relative_captions_shoes.train.json", catalog)
        single = load_image_captions(shoes_data_dir / "captions_shoes.train.json", catalog)
    assert (len(relative), relative.total_records, relative.missing_images) == (8_990, 8_990, 0)
    assert (len(single), single.total_records, single.missing_images) == (3_000, 3_000, 0)
    # Only training-image targets are shared (see the data README).
    assert (relative.targets < 10_000).all()


def test_real_captions_against_a_catalogue_lacking_names(shoes_data_dir):
    path = shoes_data_dir / "relative_captions_shoes.train.json"
    records = json.loads(path.read_text())
    dropped = set(read_image_names(shoes_data_dir / "train_im_names.txt")[:300])
    expected = sum(r["ImageName"] in dropped or r["ReferenceImageName"] in dropped for r in records)
    assert expected > 0
    with pytest.warns(UserWarning, match=f"skipped {expected} of 8990 record"):
        captions = load_relative_captions(path, _real_catalog(shoes_data_dir, drop=dropped))
    assert captions.missing_images == expected and len(captions) == 8_990 - expected


def test_real_names_through_the_importer(shoes_data_dir, tmp_path):
    """Full-size name lists with stand-in features: import, load, and match the real captions."""
    total = 14_658
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "fc.npz", rng.standard_normal((total, 4)).astype(np.float32))
    np.savez_compressed(tmp_path / "att.npz", rng.standard_normal((total, 2, 2, 2)).astype(np.float16))
    path = import_shoes(shoes_data_dir / "train_im_names.txt", shoes_data_dir / "eval_im_names.txt",
                        tmp_path / "fc.npz", tmp_path / "shoes.h5", att=tmp_path / "att.npz", progress=False)
    catalog = Catalog.load(path)
    assert catalog.splits["train"].size == 10_000 and catalog.splits["test"].size == 4_658
    assert catalog.spatial_features.shape == (total, 4, 2)
    captions = load_image_captions(shoes_data_dir / "captions_shoes.train.json", catalog)
    assert captions.missing_images == 0
    first = json.loads((shoes_data_dir / "captions_shoes.train.json").read_text())[0]
    assert catalog.ids[captions.targets[0]] == first["ImageName"]
