"""write_synthetic_shoes: the catalogue of make_synthetic_shoes, streamed to HDF5 in bounded memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import dialog_env
from dialog_env import synthetic
from dialog_env.catalog import Catalog
from dialog_env.errors import ConfigurationError
from dialog_env.synthetic import SyntheticShoesConfig, make_synthetic_shoes, write_synthetic_shoes

SMALL = SyntheticShoesConfig(num_train=700, num_test=300, dim=16, hidden_dim=32, seed=5)


def assert_same_catalog(loaded: Catalog, built: Catalog) -> None:
    assert loaded.name == built.name
    assert loaded.features.dtype == np.float32 and loaded.features.shape == built.features.shape
    assert loaded.features.tobytes() == built.features.tobytes()
    assert loaded.ids.tolist() == built.ids.tolist()
    assert sorted(loaded.splits) == sorted(built.splits) == ["test", "train"]
    for split, indices in built.splits.items():
        assert np.array_equal(loaded.splits[split], indices)
    assert loaded.attribute_schema == built.attribute_schema
    for attribute, codes in built.attributes.items():
        assert loaded.attributes[attribute].dtype == np.int16
        assert np.array_equal(loaded.attributes[attribute], codes)
    if built.spatial_features is None:
        assert loaded.spatial_features is None
    else:
        rows = np.arange(built.num_images)
        assert loaded.spatial_features.shape == built.spatial_features.shape
        assert loaded.spatial_features.take(rows).tobytes() == built.spatial_features.take(rows).tobytes()
    assert loaded == built


@pytest.mark.parametrize("rows_per_block", [128, 300, 10_000])
def test_file_is_the_in_memory_catalogue(tmp_path: Path, rows_per_block: int) -> None:
    path = write_synthetic_shoes(tmp_path / "shoes.h5", SMALL, rows_per_block=rows_per_block)
    assert path == tmp_path / "shoes.h5"
    assert_same_catalog(Catalog.load(path), make_synthetic_shoes(SMALL))


@pytest.mark.parametrize(("num_images", "rows_per_block"), [(23, 1), (210, 77), (210, 4096)])
def test_spatial_features_are_streamed_identically(tmp_path: Path, num_images: int, rows_per_block: int) -> None:
    config = SyntheticShoesConfig(
        num_train=num_images - 10, num_test=10, dim=8, hidden_dim=16, seed=3, spatial_channels=3
    )
    path = write_synthetic_shoes(tmp_path / "spatial.h5", config, rows_per_block=rows_per_block)
    loaded, built = Catalog.load(path), make_synthetic_shoes(config)
    assert "spatial" in loaded.name
    assert_same_catalog(loaded, built)


def test_overrides_and_the_package_export(tmp_path: Path) -> None:
    assert dialog_env.write_synthetic_shoes is write_synthetic_shoes
    path = dialog_env.write_synthetic_shoes(tmp_path / "o.h5", num_train=40, num_test=9, dim=4, seed=8)
    assert_same_catalog(Catalog.load(path), make_synthetic_shoes(num_train=40, num_test=9, dim=4, seed=8))


def test_the_file_is_what_save_writes(tmp_path: Path) -> None:
    import h5py

    streamed = write_synthetic_shoes(tmp_path / "streamed.h5", SMALL, rows_per_block=256)
    saved = make_synthetic_shoes(SMALL).save(tmp_path / "saved.h5")
    with h5py.File(streamed, "r") as one, h5py.File(saved, "r") as other:
        assert dict(one.attrs) == dict(other.attrs)
        names: list[str] = []
        one.visit(names.append)
        other_names: list[str] = []
        other.visit(other_names.append)
        assert names == other_names
        for name in names:
            if isinstance(one[name], h5py.Dataset):
                assert one[name].dtype == other[name].dtype and one[name].shape == other[name].shape, name
                assert np.array_equal(one[name][()], other[name][()]), name
                assert {k: np.asarray(v).tolist() for k, v in one[name].attrs.items()} == {
                    k: np.asarray(v).tolist() for k, v in other[name].attrs.items()
                }, name


@pytest.mark.parametrize("rows_per_block", [0, -3, 2.5, True, "64"])
def test_bad_rows_per_block_is_refused(tmp_path: Path, rows_per_block: object) -> None:
    with pytest.raises(ConfigurationError, match="rows_per_block"):
        write_synthetic_shoes(tmp_path / "x.h5", SMALL, rows_per_block=rows_per_block)  # type: ignore[arg-type]
    assert not (tmp_path / "x.h5").exists()


def test_a_missing_folder_or_a_folder_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        write_synthetic_shoes(tmp_path / "missing" / "x.h5", SMALL)
    assert not (tmp_path / "missing").exists()
    with pytest.raises(ConfigurationError, match="is a folder"):
        write_synthetic_shoes(tmp_path, SMALL)


def test_bad_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="num_train"):
        write_synthetic_shoes(tmp_path / "x.h5", num_train=-1)


def test_an_interrupted_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    feature_rows = synthetic._feature_rows

    def failing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the wrapped helper's arguments
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("interrupted midway")
        return feature_rows(*args, **kwargs)

    monkeypatch.setattr(synthetic, "_feature_rows", failing)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_shoes(tmp_path / "x.h5", SMALL, rows_per_block=128)
    assert len(calls) == 3
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_write_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_synthetic_shoes(tmp_path / "x.h5", SMALL)
    before = path.read_bytes()

    def failing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError("disk full")

    monkeypatch.setattr(synthetic, "_feature_rows", failing)
    with pytest.raises(OSError, match="disk full"):
        write_synthetic_shoes(path, SMALL, seed=6)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.h5"]


def test_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_synthetic_shoes(tmp_path / "x.h5", SMALL, rows_per_block=500, progress=True)
    assert "synthetic catalogue (1,000 images, 3 passes)" in capsys.readouterr().err


def _peak_traced_bytes(function) -> int:  # noqa: ANN001 - a callable of no arguments
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_is_bounded_by_the_block(tmp_path: Path) -> None:
    # 20,000 images of the default dimensions: in memory, (N, 256) float64 arrays of 41 MB each.
    config = SyntheticShoesConfig(num_train=16_000, num_test=4_000)
    streamed = _peak_traced_bytes(lambda: write_synthetic_shoes(tmp_path / "m.h5", config, rows_per_block=1_024))
    in_memory = _peak_traced_bytes(lambda: make_synthetic_shoes(config))
    # Per image: codes, style draws, splits (~0.2 KB); per block row about 9 KB; the map's tiles
    # of 1,024 rows (inputs, hidden and output activations) about 16 MB.
    assert streamed < 20_000 * 400 + 1_024 * 12_000 + 16 * 2**20, (streamed, in_memory)
    assert streamed < in_memory / 3, (streamed, in_memory)
    assert Catalog.load(tmp_path / "m.h5") == make_synthetic_shoes(config)
