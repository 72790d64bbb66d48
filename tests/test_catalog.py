from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest

import dialog_env.errors
from dialog_env.catalog import FORMAT_NAME, SCHEMA_VERSION, AttributeSchema, Catalog
from dialog_env.errors import CatalogError, CatalogFormatError, CatalogNotFoundError, DialogEnvError
from dialog_env.synthetic import SHOE_ATTRIBUTES, default_catalog, make_synthetic_shoes


def test_round_trip_preserves_everything(tmp_path, small_shoes):
    path = small_shoes.save(tmp_path / "shoes.h5")
    loaded = Catalog.load(path)
    assert loaded == small_shoes
    assert loaded.features.dtype == np.float32
    assert loaded.attribute_schema["heel_height"].ordinal
    assert not loaded.features.flags.writeable


def test_arrays_are_read_only_copies():
    features = np.ones((3, 2), dtype=np.float32)
    catalog = Catalog(features, ["a", "b", "c"])
    features[0, 0] = 5.0
    assert catalog.features[0, 0] == 1.0
    with pytest.raises(ValueError):
        catalog.features[0, 0] = 2.0


def test_select_split(tiny_catalog):
    test = tiny_catalog.select("test")
    assert list(test.ids) == ["img4", "img5"]
    np.testing.assert_array_equal(test.features, tiny_catalog.features[[4, 5]])
    np.testing.assert_array_equal(test.attributes["color"], [0, 1])
    with pytest.raises(CatalogError, match="no split 'val'.*available splits: \\['test', 'train'\\]"):
        tiny_catalog.select("val")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"features": np.zeros((3, 2), dtype=np.float64)}, "must be float32, got float64"),
        ({"features": np.zeros(3, dtype=np.float32)}, "shape \\(N, D\\)"),
        ({"features": np.array([[0, np.nan], [1, 1], [2, 2]], dtype=np.float32)}, "NaN or inf in 1 row"),
        (
            {"features": np.array([[0, 0], [1, 3e38], [2, 2]], dtype=np.float32)},
            "row 1 \\(id 'b'\\) holds 3e\\+38 at column 1.*<= 1e\\+15",
        ),
        ({"ids": ["a", "a", "b"]}, "unique.*'a'"),
        ({"ids": ["a", "b"]}, "expected 3 ids"),
        ({"splits": {"train": [0, 3]}}, "out of range 0..2"),
        ({"splits": {"train": [0, 0]}}, "more than once"),
        ({"splits": {"train": [0, 1], "test": [1, 2]}}, "overlap"),
        (
            {"attributes": {"color": [0, 1]}, "attribute_schema": [AttributeSchema("color", ("a", "b"))]},
            "shape \\(3,\\)",
        ),
        (
            {"attributes": {"color": [0, 1, 2]}, "attribute_schema": [AttributeSchema("color", ("a", "b"))]},
            "outside 0..1",
        ),
        ({"attributes": {"color": [0, 1, 1]}}, "without an attribute_schema"),
    ],
)
def test_invalid_catalogs_are_rejected(kwargs, message):
    arguments = {"features": np.zeros((3, 2), dtype=np.float32), "ids": ["a", "b", "c"], **kwargs}
    with pytest.raises(CatalogError, match=message):
        Catalog(**arguments)


def _write(path, mutate):
    """Save a valid 3-image catalogue, then let ``mutate(handle)`` break it."""
    catalog = Catalog(
        np.arange(6, dtype=np.float32).reshape(3, 2),
        ["a", "b", "c"],
        {"train": np.array([0, 1]), "test": np.array([2])},
        {"color": np.array([0, 1, 0])},
        [AttributeSchema("color", ("black", "white"))],
    )
    catalog.save(path)
    with h5py.File(path, "a") as handle:
        mutate(handle)
    return path


def _replace(name, data):
    def mutate(handle):
        del handle[name]
        handle.create_dataset(name, data=data)

    return mutate


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda h: h.__delitem__("features"), "dataset 'features': is missing"),
        (lambda h: h.__delitem__("ids"), "dataset 'ids': is missing"),
        (_replace("features", np.zeros((3, 2), dtype=np.float64)), "'features': must be float32, got float64"),
        (_replace("features", np.zeros((3, 2, 1), dtype=np.float32)), "'features': must have shape \\(N, D\\)"),
        (_replace("features", np.array([[0, np.inf], [0, 0], [1, 1]], dtype=np.float32)), "NaN or inf"),
        (
            _replace("features", np.array([[0, 0], [0, 0], [-2e19, 1]], dtype=np.float32)),
            "'features': row 2 \\(id 'c'\\) holds -2e\\+19 at column 0, outside the safe range \\|value\\| <= 1e\\+15",
        ),
        (_replace("ids", np.array([b"a", b"a", b"c"])), "unique"),
        (_replace("ids", np.array([b"a", b"b"])), "'ids': has 2 entries, expected 3"),
        (_replace("splits/train", np.array([0, 7])), "out of range"),
        (_replace("splits/train", np.array([0.0, 1.0])), "'splits/train': must hold integers"),
        (_replace("splits/test", np.array([1])), "overlap"),
        (_replace("attributes/color", np.array([0, 1])), "'attributes/color': has 2 entries, expected 3"),
        (lambda h: h.create_dataset("extra", data=[1]), "unexpected dataset\\(s\\) \\['extra'\\]"),
        (lambda h: h.attrs.__setitem__("schema_version", 99), "schema_version 99 is not supported"),
        (lambda h: h.attrs.__setitem__("format", "something else"), "'format' is 'something else'"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, mutate, message):
    path = _write(tmp_path / "bad.h5", mutate)
    with pytest.raises(CatalogFormatError, match=message) as caught:
        Catalog.load(path)
    assert str(path) in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(CatalogNotFoundError, match="does not exist") as caught:
        Catalog.load(tmp_path / "nope.h5")
    assert isinstance(caught.value, DialogEnvError) and isinstance(caught.value, FileNotFoundError)


def test_not_hdf5_and_truncated(tmp_path, small_shoes):
    text = tmp_path / "notes.h5"
    text.write_text("not an hdf5 file")
    with pytest.raises(CatalogFormatError, match="not a readable HDF5 file"):
        Catalog.load(text)
    good = small_shoes.save(tmp_path / "good.h5")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CatalogFormatError):
        Catalog.load(truncated)


def test_save_is_atomic_and_leaves_no_temporary(tmp_path, tiny_catalog):
    tiny_catalog.save(tmp_path / "c.h5")
    assert [p.name for p in tmp_path.iterdir()] == ["c.h5"]
    with h5py.File(tmp_path / "c.h5") as handle:
        assert handle.attrs["format"] == FORMAT_NAME
        assert handle.attrs["schema_version"] == SCHEMA_VERSION


def test_synthetic_default_sizes_and_checksum():
    catalog = default_catalog()
    assert catalog.features.shape == (14_658, 256)
    assert catalog.splits["train"].size == 10_000 and catalog.splits["test"].size == 4_658
    assert set(catalog.attribute_schema) == {s.name for s in SHOE_ATTRIBUTES}
    digest = hashlib.sha256(catalog.features.tobytes())
    digest.update("\n".join(catalog.ids).encode())
    for name in sorted(catalog.attributes):
        digest.update(catalog.attributes[name].tobytes())
    digest.update(catalog.splits["train"].tobytes())
    # Pins the default catalogue bit for bit: a change here is a new catalogue (bump the env version).
    assert digest.hexdigest() == PINNED_DEFAULT_CHECKSUM


PINNED_DEFAULT_CHECKSUM = "2b6d5efec9ebf5bdbda93414371dbaca06c79484b26fcdf1090858cb73983aa1"


def test_synthetic_is_seeded():
    a = make_synthetic_shoes(num_train=50, num_test=20, dim=8, seed=3)
    b = make_synthetic_shoes(num_train=50, num_test=20, dim=8, seed=3)
    c = make_synthetic_shoes(num_train=50, num_test=20, dim=8, seed=4)
    assert a == b
    assert not np.array_equal(a.features, c.features)


def test_synthetic_category_priors(small_shoes):
    everything = np.arange(small_shoes.num_images)
    names = ("category", "heel_height", "heel_shape", "material", "shaft")
    values = {name: small_shoes.attribute_values(name, everything) for name in names}
    stilettos = values["category"] == "stilettos"
    assert set(values["heel_shape"][stilettos]) == {"stiletto"}
    assert set(values["heel_height"][stilettos]) <= {"high", "very high"}
    rain = values["category"] == "rain boots"
    assert (values["material"][rain] == "rubber").mean() > 0.8
    assert "low" not in set(values["shaft"][rain])
    flat = values["heel_height"] == "flat"
    assert np.array_equal(flat, values["heel_shape"] == "flat")


def test_features_are_informative_but_not_a_copy():
    catalog = make_synthetic_shoes(num_train=2000, num_test=0, dim=64, seed=1)
    from dialog_env.ranking import Ranker

    neighbours, _ = Ranker(catalog.features).nearest(catalog.features[:300], k=2)
    category = catalog.attributes["category"]
    color = catalog.attributes["color"]
    same_category = (category[neighbours[:, 1]] == category[neighbours[:, 0]]).mean()
    same_color = (color[neighbours[:, 1]] == color[neighbours[:, 0]]).mean()
    assert same_category > 0.8 and same_color > 0.4  # far above chance (~0.1)
    # ... yet identical attributes do not give identical features.
    assert np.unique(catalog.features, axis=0).shape[0] == catalog.num_images


def test_synthetic_spatial_features_show_their_region_and_change_nothing_else(small_shoes):
    from dialog_env.synthetic import SPATIAL_REGIONS

    spatial = make_synthetic_shoes(num_train=300, num_test=100, dim=32, seed=7, spatial_channels=12)
    assert spatial.spatial_features.shape == (400, len(SPATIAL_REGIONS), 12)
    assert np.array_equal(spatial.features, small_shoes.features) and spatial.splits.keys() == small_shoes.splits.keys()
    assert small_shoes.spatial_features is None
    again = make_synthetic_shoes(num_train=300, num_test=100, dim=32, seed=7, spatial_channels=12)
    assert np.array_equal(again.spatial_features.take(np.arange(400)), spatial.spatial_features.take(np.arange(400)))
    # Region r is a function of its own attributes plus noise (noise_scale 0.25): grouped by the
    # values of those attributes, what is left is the noise; grouped by another region's
    # attributes, much more is left.
    regions = spatial.spatial_features.take(np.arange(400))

    def residual_std(region: int, names: tuple[str, ...]) -> float:
        keys = np.stack([spatial.attributes[n] for n in names], axis=1)
        _, group = np.unique(keys, axis=0, return_inverse=True)
        values = regions[:, region]
        means = np.stack([values[group == g].mean(axis=0) for g in range(group.max() + 1)])
        return float((values - means[group]).std())

    for region, names in enumerate(SPATIAL_REGIONS):
        assert residual_std(region, names) < 0.26
    heel_region, toe_region = (
        SPATIAL_REGIONS.index(("heel_height", "heel_shape", "platform")),
        SPATIAL_REGIONS.index(("toe",)),
    )
    assert residual_std(heel_region, SPATIAL_REGIONS[toe_region]) > 0.5
    with pytest.raises(dialog_env.errors.ConfigurationError, match="spatial_channels"):
        make_synthetic_shoes(num_train=10, num_test=2, spatial_channels=-1)
