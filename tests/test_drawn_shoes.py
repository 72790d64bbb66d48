"""Drawn shoes: deterministic pixels, every attribute visible, PNG files, sheets, frames with pictures."""

from __future__ import annotations

import hashlib
import itertools
import zlib

import gymnasium as gym
import numpy as np
import pytest

import dialog_env  # noqa: F401  (registers DialogRetrieval-v0)
from dialog_env.catalog import Catalog
from dialog_env.domain.schema import ATTRIBUTE_NAMES, ATTRIBUTE_VALUES, attribute_codes
from dialog_env.errors import ConfigurationError
from dialog_env.render import (
    PANEL_HEIGHT,
    PictureSource,
    contact_sheet,
    draw_catalog,
    draw_shoe,
    png_bytes,
    shoe_codes,
    write_png,
)
from dialog_env.render.__main__ import main as render_main
from dialog_env.render.sheet import transcript_sheet
from dialog_env.synthetic import default_catalog, make_synthetic_shoes
from dialog_env.text import Vocabulary

SMALL = {"num_train": 40, "num_test": 12, "dim": 8, "seed": 3}

# A stiletto pump with a medium heel: every attribute has a visible place on it.
BASE = {
    "category": "pumps", "color": "red", "lightness": "medium", "accent": "none", "heel_height": "medium",
    "heel_shape": "block", "toe": "round", "shaft": "low", "material": "leather", "shine": "matte",
    "pattern": "solid", "closure": "slip-on", "platform": "none", "ornament": "none",
}  # fmt: skip

# sha256 of draw_shoe(codes of image i of the default catalogue, 128).tobytes(), pinned: the same
# on every machine (integer arithmetic only). Changing the drawing means updating these.
CHECKSUMS_128 = {
    0: "6f6b79f3cae575ca21f9fff0f97073cf5a8c970c98d6b94f888ac1b7349257f6",
    1: "bdc9dd5ab0eda0436be66dfa33cfb307597164bb959291180fdeeef93ccad4d7",
    2: "54e75e72ea98cdbe2bbd75a6973aef6b719fd78ab98b060caedb4d08f993a380",
    3: "f92ae00c0095e65139f7c3a9d7aecea1f4fb5ed68958b28fc8734a95e65ce6d8",
    1000: "40a4f48b5bc12c67b107323e196ce47cdb7ca2ae05fb828e89484d36c59bb3cf",
    14657: "3f73038fcdaad2ff914a2ed244aa2d40b870def2d012f308e2791d925ad98a8e",
}
CHECKSUM_256_IMAGE_7 = "3521a0a75689a70ffc5e370131d2b21d3ffc98efe4413fc7a8a7df4c1ccf0cdb"


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_drawings_of_the_default_catalogue_are_pinned_by_checksum():
    codes = attribute_codes(default_catalog())
    got = {index: digest(draw_shoe(codes[index])) for index in CHECKSUMS_128}
    assert got == CHECKSUMS_128
    assert digest(draw_shoe(codes[7], 256)) == CHECKSUM_256_IMAGE_7


def test_a_drawing_is_rgb_uint8_and_the_same_every_time_and_from_codes_or_names():
    codes = attribute_codes(default_catalog())[5]
    first = draw_shoe(codes)
    assert first.shape == (128, 128, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, draw_shoe(codes))
    names = {name: ATTRIBUTE_VALUES[a][codes[a]] for a, name in enumerate(ATTRIBUTE_NAMES)}
    np.testing.assert_array_equal(first, draw_shoe(names))
    np.testing.assert_array_equal(first, draw_shoe(dict(zip(ATTRIBUTE_NAMES, codes.tolist()))))
    assert shoe_codes(codes) == names
    for size in (256, 512):
        assert draw_shoe(codes, size).shape == (size, size, 3)


@pytest.mark.parametrize("attribute", ATTRIBUTE_NAMES)
def test_every_value_of_every_attribute_draws_a_different_picture(attribute):
    """A person shown two drawings can tell the difference the shopper names: all values of an attribute,
    the others fixed, give pairwise different pictures, each pair differing in at least 50 pixels (of 16,384)."""
    pictures = {
        value: draw_shoe({**BASE, attribute: value}) for value in ATTRIBUTE_VALUES[ATTRIBUTE_NAMES.index(attribute)]
    }
    for (a, first), (b, second) in itertools.combinations(pictures.items(), 2):
        differing = int((first != second).any(axis=-1).sum())
        assert differing >= 50, f"{attribute}: {a!r} and {b!r} differ in only {differing} pixels"


def test_heel_height_raises_the_heel_seat_and_shaft_height_raises_the_top():
    def top_row(picture):  # the highest row with shoe ink (not background)
        ink = (np.abs(picture.astype(int) - picture[0, 0].astype(int)).sum(axis=-1) > 40).any(axis=1)
        return int(np.argmax(ink))

    heels = [top_row(draw_shoe({**BASE, "heel_height": value})) for value in ("low", "medium", "high", "very high")]
    assert heels == sorted(heels, reverse=True) and heels[0] > heels[-1]
    shafts = [
        top_row(draw_shoe({**BASE, "category": "boots", "shaft": v})) for v in ("low", "ankle", "mid-calf", "knee")
    ]
    assert shafts == sorted(shafts, reverse=True) and len(set(shafts)) == 4


@pytest.mark.parametrize(
    ("codes", "size", "message"),
    [
        ([0] * 13, 128, "14 attribute codes"),
        ([0] * 13 + [99], 128, "ornament.*outside"),
        ({**BASE, "color": "teal"}, 128, "color.*no value 'teal'"),
        ({k: v for k, v in BASE.items() if k != "toe"}, 128, "missing.*toe"),
        ([0] * 13 + [1.5], 128, "must be an integer"),
        (BASE, 100, "canvas size must be one of"),
    ],
)
def test_bad_codes_and_sizes_are_refused(codes, size, message):
    with pytest.raises(ConfigurationError, match=message):
        draw_shoe(codes, size)


def test_png_files_decode_to_the_same_pixels(tmp_path):
    picture = draw_shoe(BASE)
    data = png_bytes(picture)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data == png_bytes(picture)
    # Decode by hand: the IDAT chunk's scanlines (filter byte 0, then RGB).
    length = int.from_bytes(data[33:37], "big")
    assert data[37:41] == b"IDAT"
    rows = np.frombuffer(zlib.decompress(data[41 : 41 + length]), dtype=np.uint8).reshape(128, 1 + 128 * 3)
    assert (rows[:, 0] == 0).all()
    np.testing.assert_array_equal(rows[:, 1:].reshape(128, 128, 3), picture)
    path = write_png(tmp_path / "shoe.png", picture)
    pil = pytest.importorskip("PIL.Image")
    with pil.open(path) as image:
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), picture)
    with pytest.raises(ConfigurationError, match="uint8"):
        png_bytes(picture.astype(np.float32))


def test_draw_catalog_writes_one_png_per_image_and_resumes(tmp_path):
    catalog = make_synthetic_shoes(**SMALL).select("test")
    paths = draw_catalog(catalog, tmp_path / "shoes", progress=False)
    assert [p.name for p in paths] == [f"{i}.png" for i in catalog.ids]
    codes = attribute_codes(catalog)
    assert paths[3].read_bytes() == png_bytes(draw_shoe(codes[3]))
    paths[0].write_bytes(b"kept")  # existing files are kept unless overwrite
    draw_catalog(catalog, tmp_path / "shoes", progress=False)
    assert paths[0].read_bytes() == b"kept"
    draw_catalog(catalog, tmp_path / "shoes", progress=False, overwrite=True)
    assert paths[0].read_bytes() == png_bytes(draw_shoe(codes[0]))
    plain = Catalog(np.zeros((2, 3), dtype=np.float32), ["a", "b"])
    with pytest.raises(ConfigurationError, match="no shoe attributes"):
        draw_catalog(plain, tmp_path / "plain", progress=False)


def test_unsafe_ids_are_not_used_as_file_names(tmp_path):
    catalog = make_synthetic_shoes(**SMALL)
    unsafe = Catalog(catalog.features, ["../escape", *catalog.ids[1:]], catalog.splits,
                     catalog.attributes, list(catalog.attribute_schema.values()))  # fmt: skip
    with pytest.raises(ConfigurationError, match="not a safe file name"):
        draw_catalog(unsafe, tmp_path / "out", progress=False)
    assert not (tmp_path / "escape.png").exists() and not (tmp_path / "out").exists()


def test_contact_sheet_tiles_images_and_refuses_mixed_shapes():
    tiles = [np.full((4, 5, 3), value, dtype=np.uint8) for value in (10, 20, 30)]
    sheet = contact_sheet(tiles, columns=2, gap=1)
    assert sheet.shape == (2 * 4 + 3, 2 * 5 + 3, 3)
    assert (sheet[1:5, 1:6] == 10).all() and (sheet[1:5, 7:12] == 20).all() and (sheet[6:10, 1:6] == 30).all()
    with pytest.raises(ConfigurationError, match="one shape"):
        contact_sheet([tiles[0], np.zeros((3, 5, 3), dtype=np.uint8)], columns=2)
    with pytest.raises(ConfigurationError, match="at least one"):
        contact_sheet([], columns=2)


def test_the_frame_shows_the_target_and_the_shown_image_drawn():
    env = gym.make("DialogRetrieval-v0", catalog=SMALL, render_mode="rgb_array", max_turns=3, expose_target=True)
    _, info = env.reset(seed=4)
    target, initial = info["target_index"], info["shown_index"]
    pictures = PictureSource(env.unwrapped.catalog)
    codes = attribute_codes(env.unwrapped.catalog)
    for action in (1, 2):
        env.step(action)
    frame = env.render()
    assert frame.shape == (PANEL_HEIGHT + 16 * -(-(16 + 18 * 6) // 16), 1456, 3)
    np.testing.assert_array_equal(frame[30:286, 16:272], draw_shoe(codes[target], 256))
    np.testing.assert_array_equal(frame[30:286, 292:548], draw_shoe(codes[2], 256))
    # The earlier images as thumbnails, turn 0 first.
    np.testing.assert_array_equal(frame[30:158, 572:700], pictures(initial, 128))
    np.testing.assert_array_equal(frame[30:158, 708:836], pictures(1, 128))
    assert (frame[30:158, 844:972] == frame[0, 0]).all()  # no third thumbnail yet


def test_frames_of_a_catalogue_without_attributes_show_tiles_of_one_shape():
    rng = np.random.default_rng(0)
    plain = Catalog(rng.normal(size=(30, 4)).astype(np.float32), [f"item{i}" for i in range(30)])

    class Silent(dialog_env.UserSimulator):
        @property
        def vocabulary(self):
            return Vocabulary(["ok"])

        def describe(self, catalog, targets, shown, rngs):
            return ["ok"] * len(targets)

    env = gym.make("DialogRetrieval-v0", catalog=plain, split="all", user=Silent(), render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    env.step(3)
    second = env.render()
    assert first.shape == second.shape and first.dtype == np.uint8
    tile = second[30:286, 292:548]
    assert (tile[0, 0] == 222).all() and (tile != 222).any()  # the plain tile with its id, not a drawing


def test_transcript_sheet_shows_every_turn():
    catalog = make_synthetic_shoes(**SMALL)
    pictures = PictureSource(catalog)
    sheet = transcript_sheet(
        pictures, 0, [1, 2, 0], [5, 3, 0], ["is red", "has a higher heel", "is the same"], columns=4
    )
    assert sheet.dtype == np.uint8 and sheet.shape[1] == 4 * 128 + 5 * 8
    np.testing.assert_array_equal(sheet[8 : 8 + 128, 8 : 8 + 128], pictures(0, 128))
    np.testing.assert_array_equal(sheet[8 : 8 + 128, 8 + 3 * 136 : 8 + 3 * 136 + 128], pictures(0, 128))
    with pytest.raises(ConfigurationError, match="one entry per turn"):
        transcript_sheet(pictures, 0, [1, 2], [5], ["a", "b"])


def test_render_command_draws_a_folder_and_a_dialog_sheet(tmp_path, capsys):
    catalog_path = make_synthetic_shoes(**SMALL).save(tmp_path / "small.h5")
    assert render_main(["draw", "--out", str(tmp_path / "pics"), "--catalog", str(catalog_path), "--split", "test",
                        "--no-progress"]) == 0  # fmt: skip
    assert len(list((tmp_path / "pics").glob("*.png"))) == SMALL["num_test"]
    out = tmp_path / "sheet.png"
    assert render_main(["dialog", "--out", str(out), "--catalog", str(catalog_path), "--max-turns", "3"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "sheet of" in capsys.readouterr().out
    assert render_main(["dialog", "--out", str(out), "--run", str(tmp_path / "missing")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_record_video_makes_a_video_of_a_dialog(tmp_path):
    pytest.importorskip("moviepy")
    from gymnasium.wrappers import RecordVideo

    env = RecordVideo(
        gym.make("DialogRetrieval-v0", catalog=SMALL, render_mode="rgb_array", max_turns=3),
        video_folder=str(tmp_path / "videos"),
        episode_trigger=lambda episode: True,
        disable_logger=True,
    )
    env.reset(seed=0)
    for action in (1, 2, 3):
        env.step(action)
    env.close()
    videos = list((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    reader = imageio_ffmpeg.read_frames(str(videos[0]))
    meta = next(reader)
    assert tuple(meta["size"]) == (1456, PANEL_HEIGHT + 16 * -(-(16 + 18 * 6) // 16))
    assert sum(1 for _ in reader) == 4  # the reset and three steps


def test_the_drawn_catalogue_becomes_a_catalogue_of_pixel_features_the_shopper_still_describes(tmp_path):
    """Drawn shoes -> image folder -> ResNet features (seeded random weights here) -> a playable catalogue."""
    pytest.importorskip("PIL")
    from dialog_env.data.images import build_image_catalog

    source = make_synthetic_shoes(**SMALL)
    draw_catalog(source, tmp_path / "pictures", progress=False)
    source_path = source.save(tmp_path / "source.h5")
    out = build_image_catalog(tmp_path / "pictures", tmp_path / "pixels.h5", random_weights=True, image_size=64,
                              spatial=False, like=source_path, progress=False)  # fmt: skip
    pixels = Catalog.load(out)
    assert pixels.num_images == source.num_images and pixels.dim == 512
    order = np.argsort(np.asarray(source.ids, dtype=str))  # the folder is read in file-name order
    np.testing.assert_array_equal(
        np.asarray(pixels.ids, dtype=str), [f"{i}.png" for i in np.asarray(source.ids)[order]]
    )
    np.testing.assert_array_equal(attribute_codes(pixels), attribute_codes(source)[order])
    env = gym.make("DialogRetrieval-v0", catalog=str(out), split="test", max_turns=2)
    observation, info = env.reset(seed=0)
    assert observation["image"].shape == (512,) and info["feedback_text"]
