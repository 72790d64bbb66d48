"""A catalogue from a folder of images: the torchvision-layout ResNets, image reading, the streamed builder.

Tiny PNGs are drawn with Pillow under ``tmp_path`` and encoded with seeded random weights at small
image sizes (one build at 224 pixels checks the 7 x 7 grid); no download, no GPU, no torchvision.
"""

from __future__ import annotations

import importlib.util
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dialog_env.catalog import Catalog
from dialog_env.data.backbone import (
    feature_grid_size,
    load_encoder,
    load_weights,
    read_state_dict,
    resnet18,
    resnet50,
)
from dialog_env.data.images import build_image_catalog, find_images, load_image, main, read_build_info
from dialog_env.errors import (
    CatalogFormatError,
    ConfigurationError,
    DataFileNotFoundError,
    DataFormatError,
    DependencyNotInstalled,
)
from dialog_env.synthetic import make_synthetic_shoes

try:
    from PIL import Image
except ImportError:  # the backbone tests run without Pillow, the image tests skip
    Image = None

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def pillow():
    """Skip a test that reads or writes images when Pillow is missing."""
    pytest.importorskip("PIL", reason='reading images needs Pillow: pip install "dialog-retrieval-env[images]"')

# ====================================================================== the backbone
# torchvision.models.resnet18(): the 62 parameters, in state-dict order, written out from its
# architecture (7 x 7 stride-2 stem, four stages of two BasicBlocks, 1 x 1 projections
# layerK.0.downsample.{0,1} for K >= 2, fc 512 -> 1000).
TORCHVISION_RESNET18_PARAMETERS = [
    ("conv1.weight", (64, 3, 7, 7)), ("bn1.weight", (64,)), ("bn1.bias", (64,)),
    ("layer1.0.conv1.weight", (64, 64, 3, 3)), ("layer1.0.bn1.weight", (64,)), ("layer1.0.bn1.bias", (64,)),
    ("layer1.0.conv2.weight", (64, 64, 3, 3)), ("layer1.0.bn2.weight", (64,)), ("layer1.0.bn2.bias", (64,)),
    ("layer1.1.conv1.weight", (64, 64, 3, 3)), ("layer1.1.bn1.weight", (64,)), ("layer1.1.bn1.bias", (64,)),
    ("layer1.1.conv2.weight", (64, 64, 3, 3)), ("layer1.1.bn2.weight", (64,)), ("layer1.1.bn2.bias", (64,)),
    ("layer2.0.conv1.weight", (128, 64, 3, 3)), ("layer2.0.bn1.weight", (128,)), ("layer2.0.bn1.bias", (128,)),
    ("layer2.0.conv2.weight", (128, 128, 3, 3)), ("layer2.0.bn2.weight", (128,)), ("layer2.0.bn2.bias", (128,)),
    ("layer2.0.downsample.0.weight", (128, 64, 1, 1)), ("layer2.0.downsample.1.weight", (128,)),
    ("layer2.0.downsample.1.bias", (128,)),
    ("layer2.1.conv1.weight", (128, 128, 3, 3)), ("layer2.1.bn1.weight", (128,)), ("layer2.1.bn1.bias", (128,)),
    ("layer2.1.conv2.weight", (128, 128, 3, 3)), ("layer2.1.bn2.weight", (128,)), ("layer2.1.bn2.bias", (128,)),
    ("layer3.0.conv1.weight", (256, 128, 3, 3)), ("layer3.0.bn1.weight", (256,)), ("layer3.0.bn1.bias", (256,)),
    ("layer3.0.conv2.weight", (256, 256, 3, 3)), ("layer3.0.bn2.weight", (256,)), ("layer3.0.bn2.bias", (256,)),
    ("layer3.0.downsample.0.weight", (256, 128, 1, 1)), ("layer3.0.downsample.1.weight", (256,)),
    ("layer3.0.downsample.1.bias", (256,)),
    ("layer3.1.conv1.weight", (256, 256, 3, 3)), ("layer3.1.bn1.weight", (256,)), ("layer3.1.bn1.bias", (256,)),
    ("layer3.1.conv2.weight", (256, 256, 3, 3)), ("layer3.1.bn2.weight", (256,)), ("layer3.1.bn2.bias", (256,)),
    ("layer4.0.conv1.weight", (512, 256, 3, 3)), ("layer4.0.bn1.weight", (512,)), ("layer4.0.bn1.bias", (512,)),
    ("layer4.0.conv2.weight", (512, 512, 3, 3)), ("layer4.0.bn2.weight", (512,)), ("layer4.0.bn2.bias", (512,)),
    ("layer4.0.downsample.0.weight", (512, 256, 1, 1)), ("layer4.0.downsample.1.weight", (512,)),
    ("layer4.0.downsample.1.bias", (512,)),
    ("layer4.1.conv1.weight", (512, 512, 3, 3)), ("layer4.1.bn1.weight", (512,)), ("layer4.1.bn1.bias", (512,)),
    ("layer4.1.conv2.weight", (512, 512, 3, 3)), ("layer4.1.bn2.weight", (512,)), ("layer4.1.bn2.bias", (512,)),
    ("fc.weight", (1000, 512)), ("fc.bias", (1000,)),
]  # fmt: skip


def _torchvision_resnet18_state_keys() -> list[tuple[str, tuple[int, ...]]]:
    """The parameters plus each batch norm's running_mean, running_var and num_batches_tracked buffers."""
    keys = []
    for name, shape in TORCHVISION_RESNET18_PARAMETERS:
        keys.append((name, shape))
        if name.endswith(".bias") and not name.startswith("fc."):
            prefix = name[: -len(".bias")]
            keys += [(f"{prefix}.running_mean", shape), (f"{prefix}.running_var", shape),
                     (f"{prefix}.num_batches_tracked", ())]  # fmt: skip
    return keys


def test_resnet18_has_torchvision_parameter_and_state_keys_and_shapes():
    model = resnet18()
    assert len(TORCHVISION_RESNET18_PARAMETERS) == 62
    assert [(k, tuple(v.shape)) for k, v in model.named_parameters()] == TORCHVISION_RESNET18_PARAMETERS
    expected = _torchvision_resnet18_state_keys()
    assert len(expected) == 122
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == expected
    assert sum(p.numel() for p in model.parameters()) == 11_689_512  # torchvision's resnet18


def test_resnet50_is_torchvision_v1_5_layout():
    model = resnet50()
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == 25_557_032  # torchvision's resnet50
    assert len(state) == 320 and model.feature_dim == 2048
    assert tuple(state["layer1.0.conv3.weight"].shape) == (256, 64, 1, 1)
    assert tuple(state["layer1.0.downsample.0.weight"].shape) == (256, 64, 1, 1)
    assert tuple(state["fc.weight"].shape) == (1000, 2048)
    # v1.5: the stride of a stage's first bottleneck is in its 3 x 3 convolution
    assert model.layer2[0].conv1.stride == (1, 1) and model.layer2[0].conv2.stride == (2, 2)
    assert sum(1 for k in state if k.startswith("layer3.") and k.endswith(".conv1.weight")) == 6


def _reference_resnet18_map(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """ResNet-18's last-stage map written with torch.nn.functional straight from the state dict."""

    def bn(t: torch.Tensor, prefix: str) -> torch.Tensor:
        return F.batch_norm(t, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
                            state[f"{prefix}.weight"], state[f"{prefix}.bias"], training=False, eps=1e-5)  # fmt: skip

    x = F.max_pool2d(F.relu(bn(F.conv2d(x, state["conv1.weight"], stride=2, padding=3), "bn1")), 3, 2, 1)
    for stage in range(1, 5):
        for block in range(2):
            p = f"layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            out = F.relu(bn(F.conv2d(x, state[f"{p}.conv1.weight"], stride=stride, padding=1), f"{p}.bn1"))
            out = bn(F.conv2d(out, state[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            shortcut = x
            if f"{p}.downsample.0.weight" in state:
                shortcut = bn(F.conv2d(x, state[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
            x = F.relu(out + shortcut)
    return x


def _random_state(seed: int = 3) -> dict[str, torch.Tensor]:
    """A resnet18 state dict with non-trivial batch norms (random scales, shifts and running statistics)."""
    generator = torch.Generator().manual_seed(seed)
    state = resnet18().state_dict()
    for key, value in state.items():
        if key.endswith(("bn1.weight", "bn2.weight", "downsample.1.weight", "running_var")):
            state[key] = 0.5 + torch.rand(value.shape, generator=generator)
        elif key.endswith(("bn1.bias", "bn2.bias", "downsample.1.bias", "running_mean")):
            state[key] = 0.1 * torch.randn(value.shape, generator=generator)
    return state


def test_resnet18_encode_matches_a_functional_reference():
    state = _random_state()
    model = load_weights(resnet18(), state, "test state").eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        pooled, regions = model.encode(x)
        logits = model(x)
        grid = _reference_resnet18_map(state, x)
    assert pooled.shape == (2, 512) and regions.shape == (2, 4, 512) and pooled.dtype == torch.float32
    torch.testing.assert_close(pooled, grid.mean(dim=(2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(regions, grid.permute(0, 2, 3, 1).reshape(2, 4, 512), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits, grid.mean(dim=(2, 3)) @ state["fc.weight"].T + state["fc.bias"])


@pytest.mark.parametrize("image_size, side", [(224, 7), (64, 2), (32, 1), (100, 4)])
def test_feature_grid_size_matches_the_network(image_size, side):
    model = resnet18().eval()
    with torch.inference_mode():
        grid = model.feature_map(torch.zeros(1, 3, image_size, image_size))
    assert feature_grid_size(image_size) == side == grid.shape[-1] == grid.shape[-2]


def test_weight_file_round_trip_and_torchvision_file_variants(tmp_path):
    state = _random_state()
    path = tmp_path / "resnet18-test.pth"
    torch.save(state, path)
    encoder = load_encoder("resnet18", path)
    assert encoder.weights == "file" and not encoder.random_weights and encoder.description == f"file {path.name}"
    assert encoder.fingerprint.startswith("sha256:") and not encoder.model.training
    loaded = encoder.model.state_dict()
    assert all(torch.equal(loaded[k], state[k].to(loaded[k].dtype)) for k in state)
    # older torchvision files lack num_batches_tracked; float16 files are read as float32
    older = {k: v.half() if v.is_floating_point() else v for k, v in state.items() if "num_batches" not in k}
    torch.save(older, tmp_path / "old.pth")
    assert torch.allclose(load_encoder("resnet18", tmp_path / "old.pth").model.conv1.weight, state["conv1.weight"],
                          atol=1e-3)  # fmt: skip
    # a checkpoint fine-tuned on 10 classes: fc is rebuilt to fit (no feature uses it)
    fine_tuned = dict(state, **{"fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)})
    torch.save(fine_tuned, tmp_path / "ten.pth")
    assert load_encoder("resnet18", tmp_path / "ten.pth").model.fc.out_features == 10


def test_safetensors_weights(tmp_path):
    if importlib.util.find_spec("safetensors") is None:
        (tmp_path / "w.safetensors").write_bytes(b"x")
        with pytest.raises(DependencyNotInstalled, match="pip install safetensors"):
            load_encoder("resnet18", tmp_path / "w.safetensors")
        return
    from safetensors.torch import save_file

    state = _random_state()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    assert torch.equal(load_encoder("resnet18", tmp_path / "w.safetensors").model.conv1.weight, state["conv1.weight"])


class _NotATensor:
    pass


def test_bad_weight_files_are_refused_with_clear_messages(tmp_path):
    state = resnet18().state_dict()

    def save(name, payload):
        torch.save(payload, tmp_path / name)
        return tmp_path / name

    with pytest.raises(DataFormatError, match=r"1 tensor\(s\) of the wrong shape.*conv1\.weight \(64, 3, 3, 3\)"):
        load_encoder("resnet18", save("shape.pth", dict(state, **{"conv1.weight": torch.zeros(64, 3, 3, 3)})))
    with pytest.raises(DataFormatError, match=r"missing key\(s\), e\.g\. \['layer4\.1\.bn2\.weight'"):
        load_encoder("resnet18", save("missing.pth", {k: v for k, v in state.items() if k != "layer4.1.bn2.weight"}))
    with pytest.raises(DataFormatError, match=r"unexpected key\(s\), e\.g\. \['extra\.weight'\]"):
        load_encoder("resnet18", save("extra.pth", dict(state, **{"extra.weight": torch.zeros(1)})))
    # resnet50 keys into resnet18: the message names the architecture the keys look like
    fake50 = {k: torch.zeros(1) for k in resnet50().state_dict()}
    with pytest.raises(DataFormatError, match=r"torchvision.s resnet50: choose that architecture \(--arch resnet50"):
        load_encoder("resnet18", save("r50.pth", fake50))
    with pytest.raises(DataFormatError, match="'module.'"):
        load_encoder("resnet18", save("dp.pth", {f"module.{k}": v for k, v in state.items()}))
    with pytest.raises(DataFormatError, match=r"training checkpoint whose 'state_dict' entry"):
        load_encoder("resnet18", save("ckpt.pth", {"state_dict": state, "epoch": 3}))
    with pytest.raises(DataFormatError, match="holds NaN or inf"):
        load_encoder("resnet18", save("nan.pth", dict(state, **{"fc.bias": torch.full((1000,), float("nan"))})))
    with pytest.raises(DataFormatError, match=r"holds a Python object \(test_image_catalog\._NotATensor\)"):
        load_encoder("resnet18", save("object.pth", {"conv1.weight": _NotATensor()}))
    (tmp_path / "text.pth").write_text("not a torch file")
    with pytest.raises(DataFormatError, match="could not be read"):
        read_state_dict(tmp_path / "text.pth")
    with pytest.raises(DataFileNotFoundError, match="does not exist"):
        load_encoder("resnet18", tmp_path / "absent.pth")


def test_weight_choices_are_explicit_and_random_weights_are_seeded():
    with pytest.raises(ConfigurationError, match="random_weights=True"):
        load_encoder("resnet18")
    with pytest.raises(ConfigurationError, match="exclude each other"):
        load_encoder("resnet18", "w.pth", random_weights=True)
    with pytest.raises(ConfigurationError, match="unknown architecture 'resnet34'"):
        load_encoder("resnet34", random_weights=True)
    before = torch.random.get_rng_state()
    first, again = (load_encoder("resnet18", random_weights=True, seed=5) for _ in range(2))
    other = load_encoder("resnet18", random_weights=True, seed=6)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global generator is left alone
    assert torch.equal(first.model.conv1.weight, again.model.conv1.weight)
    assert not torch.equal(first.model.conv1.weight, other.model.conv1.weight)
    assert first.random_weights and first.fingerprint != other.fingerprint


def test_torchvision_weights_without_torchvision_say_to_pass_a_file():
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: 'torchvision' weights would download")
    with pytest.raises(DependencyNotInstalled, match=r"resnet18-f37072fd\.pth.*--weights FILE"):
        load_encoder("resnet18", "torchvision")


# ====================================================================== reading images
def _png(path: Path, size=(40, 30), color=(200, 30, 40), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new(mode, size, color)
    if mode == "RGB":  # a shape, so images of one colour differ from their neighbours
        for x in range(size[0] // 4, size[0] // 2):
            for y in range(size[1] // 4, size[1] // 2):
                image.putpixel((x, y), (255 - color[0], 255 - color[1], 255 - color[2]))
    image.save(path)
    return path


def _bomb_png(path: Path) -> Path:
    """A 1 x 1 PNG whose header claims 20000 x 20000 pixels (a decompression bomb)."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    body = b"IHDR" + struct.pack(">II", 20000, 20000) + bytes(data[24:29])
    data[12:29] = body
    data[29:33] = struct.pack(">I", zlib.crc32(body))
    path.write_bytes(bytes(data))
    return path


def test_load_image_crops_the_centre_composites_alpha_and_follows_exif(pillow, tmp_path):
    wide = Image.new("RGB", (64, 32), (255, 0, 0))
    wide.paste((0, 255, 0), (16, 0, 48, 32))
    wide.save(tmp_path / "wide.png")
    array = load_image(tmp_path / "wide.png", 32)
    assert array.shape == (32, 32, 3) and array.dtype == np.uint8
    assert (array[:, 2:30] == (0, 255, 0)).all()  # the centre: green, the red sides cropped away
    Image.new("RGBA", (20, 30), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert (load_image(tmp_path / "clear.png", 32) == 255).all()  # transparent -> white
    portrait = Image.new("RGB", (32, 64), (255, 0, 0))
    portrait.paste((0, 0, 255), (0, 32, 32, 64))  # top red, bottom blue
    exif = portrait.getexif()
    exif[0x0112] = 6  # Orientation: display rotated 90 degrees clockwise
    portrait.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    shown = load_image(tmp_path / "rotated.jpg", 32).astype(int)
    assert shown[16, 4, 2] > 200 and shown[16, 4, 0] < 60  # left: blue (the bottom, turned)
    assert shown[16, 28, 0] > 200 and shown[16, 28, 2] < 60  # right: red
    Image.new("L", (30, 30), 128).save(tmp_path / "gray.bmp")
    assert load_image(tmp_path / "gray.bmp", 32).shape == (32, 32, 3)


def test_hostile_files_are_data_format_errors_naming_the_file(pillow, tmp_path):
    (tmp_path / "garbage.png").write_bytes(b"definitely not a png")
    with pytest.raises(DataFormatError, match=r"garbage\.png' could not be read"):
        load_image(tmp_path / "garbage.png", 32)
    good = _png(tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataFormatError, match=r"truncated\.png' could not be read"):
        load_image(tmp_path / "truncated.png", 32)
    with pytest.raises(DataFormatError, match=r"bomb\.png' could not be read: DecompressionBombError"):
        load_image(_bomb_png(tmp_path / "bomb.png"), 32)


def test_find_images_is_recursive_sorted_and_case_insensitive(tmp_path):
    for name in ("b.PNG", "a.jpg", "sub/c.webp", "sub/deeper/d.bmp", "e.jpeg", "notes.txt", ".hidden.png",
                 ".cache/x.png"):  # fmt: skip
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert [item.relative for item in find_images(tmp_path)] == ["a.jpg", "b.PNG", "e.jpeg", "sub/c.webp",
                                                                 "sub/deeper/d.bmp"]  # fmt: skip
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images")
    with pytest.raises(DataFileNotFoundError, match="holds no image files"):
        find_images(empty)
    with pytest.raises(DataFileNotFoundError, match="does not exist"):
        find_images(tmp_path / "absent")


# ====================================================================== the builder
IDS = ["blue_square.png", "green.png", "red.png", "sub/gray.png", "sub/wide.png", "tall.png", "yellow.png"]


@pytest.fixture()
def folder(pillow, tmp_path) -> Path:
    root = tmp_path / "photos"
    _png(root / "red.png", (40, 30), (200, 30, 40))
    _png(root / "green.png", (64, 64), (30, 180, 60))
    _png(root / "blue_square.png", (48, 48), (30, 60, 200))
    _png(root / "tall.png", (30, 50), (120, 120, 20))
    _png(root / "yellow.png", (50, 40), (230, 220, 40))
    _png(root / "sub" / "wide.png", (80, 20), (90, 10, 160))
    Image.new("LA", (36, 36), (100, 200)).save(root / "sub" / "gray.png")
    return root


def _build(folder: Path, out: Path, **kwargs) -> Path:
    options = dict(random_weights=True, image_size=32, batch_size=3, progress=False)
    options.update(kwargs)
    return build_image_catalog(folder, out, **options)


def test_build_writes_a_valid_catalogue(folder, tmp_path):
    out = _build(folder, tmp_path / "photos.h5", image_size=64)
    catalog = Catalog.load(out)
    assert list(catalog.ids) == IDS
    assert catalog.features.shape == (7, 512) and catalog.features.dtype == np.float32
    assert catalog.spatial_features.shape == (7, 4, 512)  # 64 pixels: a 2 x 2 grid
    assert sorted(catalog.splits) == ["test", "train"] and catalog.splits["test"].size == 1  # round(0.2 * 7)
    assert catalog.splits["train"].size == 6 and not catalog.attributes
    assert catalog.name == "photos-random-weights"
    assert np.unique(catalog.features, axis=0).shape[0] == 7
    # the spatial features average to the pooled features
    np.testing.assert_allclose(catalog.spatial_features.take(np.arange(7)).mean(axis=1), catalog.features,
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    info = read_build_info(out)
    assert info["random_weights"] is True and info["weights"] == "random" and info["arch"] == "resnet18"
    assert info["image_size"] == 64 and info["num_images"] == 7 and info["num_skipped"] == 0
    assert not (tmp_path / "photos.h5.partial").exists()
    with h5py.File(out, "r") as handle:  # one image per chunk, as dialog_env.catalog writes them
        assert handle["spatial_features"].chunks == (1, 4, 512)
    assert read_build_info(make_synthetic_shoes(num_train=3, num_test=2).save(tmp_path / "plain.h5")) is None


def test_builds_are_deterministic_and_seeded(folder, tmp_path):
    first = Catalog.load(_build(folder, tmp_path / "a.h5"))
    second = Catalog.load(_build(folder, tmp_path / "b.h5", workers=2, batch_size=3))
    assert first == second  # features, ids, splits, spatial features, name
    other = Catalog.load(_build(folder, tmp_path / "c.h5", seed=1))
    assert not np.array_equal(first.features, other.features)


def test_224_pixels_give_a_7_by_7_grid_and_no_spatial_skips_it(folder, tmp_path):
    two = tmp_path / "two"
    _png(two / "a.png", (40, 30))
    _png(two / "b.png", (64, 64), (10, 200, 10))
    catalog = Catalog.load(_build(two, tmp_path / "224.h5", image_size=224, splits="all"))
    assert catalog.spatial_features.shape == (2, 49, 512) and list(catalog.splits) == ["all"]
    flat = Catalog.load(_build(two, tmp_path / "flat.h5", spatial=False, splits="all"))
    assert flat.spatial_features is None and flat.features.shape == (2, 512)
    half = Catalog.load(_build(two, tmp_path / "half.h5", spatial_dtype="float16", splits="all"))
    assert half.spatial_features.storage_dtype == np.float16


class _Stop(Exception):
    pass


def _interrupt_after(batches: int):
    calls = []

    def on_batch(done, total):
        calls.append((done, total))
        if len(calls) == batches:
            raise _Stop

    return on_batch, calls


def test_resume_after_an_interruption_equals_an_uninterrupted_build(folder, tmp_path):
    reference = Catalog.load(_build(folder, tmp_path / "reference.h5", batch_size=2))
    out = tmp_path / "resumed.h5"
    on_batch, calls = _interrupt_after(1)
    with pytest.raises(_Stop):
        _build(folder, out, batch_size=2, on_batch=on_batch)
    assert calls == [(2, 7)] and not out.exists() and (tmp_path / "resumed.h5.partial").exists()
    with pytest.raises(ConfigurationError, match="pass resume=True"):
        _build(folder, out, batch_size=2)
    with h5py.File(tmp_path / "resumed.h5.partial", "a") as handle:  # a crash after writing rows, before the marker
        for name in ("ids", "features", "spatial_features", "build/consumed"):
            handle[name].resize(handle[name].shape[0] + 1, axis=0)
        handle["features"][-1] = 1e30
    _, resumed_calls = _interrupt_after(0)
    _build(folder, out, batch_size=2, resume=True, on_batch=lambda d, t: resumed_calls.append((d, t)))
    assert resumed_calls == [(4, 7), (6, 7), (7, 7)]  # the first batch was not computed again
    resumed = Catalog.load(out)
    assert resumed == reference  # features, spatial features, ids, splits, name
    assert not (tmp_path / "resumed.h5.partial").exists()


def test_a_build_stopped_by_a_bad_file_resumes_once_it_is_removed(folder, tmp_path):
    (folder / "rose.png").write_bytes(b"GIF89a, not a png")  # sorts after three good images
    out = tmp_path / "out.h5"
    with pytest.raises(DataFormatError, match=r"rose\.png' could not be read.*the 3 image\(s\) done so far"):
        _build(folder, out, batch_size=3)
    (folder / "rose.png").unlink()
    _, calls = _interrupt_after(0)
    _build(folder, out, batch_size=3, resume=True, on_batch=lambda d, t: calls.append(d))
    assert calls == [6, 7] and list(Catalog.load(out).ids) == IDS


def test_resume_refuses_other_settings_or_changed_images(folder, tmp_path):
    out = tmp_path / "out.h5"
    on_batch, _ = _interrupt_after(1)
    with pytest.raises(_Stop):
        _build(folder, out, on_batch=on_batch)
    with pytest.raises(ConfigurationError, match=r"image_size 32 there, 64 now"):
        _build(folder, out, resume=True, image_size=64)
    with pytest.raises(ConfigurationError, match="weights_fingerprint"):
        _build(folder, out, resume=True, seed=4)
    with pytest.raises(ConfigurationError, match="spatial True there, False now"):
        _build(folder, out, resume=True, spatial=False)
    _png(folder / "blue_square.png", (49, 48))  # an image already read changes
    with pytest.raises(ConfigurationError, match=r"image #0 was 'blue_square\.png' \(\d+ bytes\)"):
        _build(folder, out, resume=True)
    # put it back; an image that sorts after those read may still be added
    _png(folder / "blue_square.png", (48, 48), (30, 60, 200))
    _png(folder / "zebra.png", (33, 33))
    catalog = Catalog.load(_build(folder, out, resume=True))
    assert list(catalog.ids) == [*IDS, "zebra.png"]
    (tmp_path / "junk.h5.partial").write_text("not hdf5")
    with pytest.raises(ConfigurationError, match="cannot be opened"):
        _build(folder, tmp_path / "junk.h5", resume=True)


def test_like_copies_attributes_and_splits_by_file_stem(pillow, tmp_path):
    shoes = make_synthetic_shoes(num_train=6, num_test=3)
    like = shoes.save(tmp_path / "shoes.h5")
    pictures = tmp_path / "drawn"
    for number, image_id in enumerate(shoes.ids):
        _png(pictures / f"{image_id}.png", (40, 30), (20 * number, 100, 200 - 20 * number))
    catalog = Catalog.load(_build(pictures, tmp_path / "drawn.h5", like=like))
    assert list(catalog.ids) == sorted(f"{i}.png" for i in shoes.ids)
    rows = [list(shoes.ids).index(Path(i).stem) for i in catalog.ids]
    assert catalog.attribute_schema == shoes.attribute_schema
    for name, codes in shoes.attributes.items():
        np.testing.assert_array_equal(catalog.attributes[name], codes[rows])
    for split in ("train", "test"):
        assert {Path(catalog.ids[i]).stem for i in catalog.splits[split]} == set(shoes.ids[shoes.splits[split]])
    assert read_build_info(tmp_path / "drawn.h5")["like"] == "shoes.h5"
    # splits='random' keeps the attributes but draws the splits
    drawn = Catalog.load(_build(pictures, tmp_path / "random.h5", like=like, splits="random"))
    assert drawn.attributes.keys() == shoes.attributes.keys() and drawn.splits["test"].size == 2
    _png(pictures / "stranger.png")
    _png(pictures / "x" / "unknown_7.png")
    with pytest.raises(ConfigurationError, match=r"2 of the 11 images, e\.g\. \['stranger\.png', 'x/unknown_7\.png'\]"):
        _build(pictures, tmp_path / "bad.h5", like=like)


def test_train_test_folders_are_the_splits(pillow, tmp_path):
    root = tmp_path / "split"
    for name in ("train/a.png", "train/b.png", "train/c.png", "test/d.png", "test/e.png", "val/f.png"):
        _png(root / name, (40, 30), (len(name) * 9, 50, 90))
    catalog = Catalog.load(_build(root, tmp_path / "split.h5"))
    assert {k: list(catalog.ids[v]) for k, v in catalog.splits.items()} == {
        "train": ["train/a.png", "train/b.png", "train/c.png"], "test": ["test/d.png", "test/e.png"],
        "val": ["val/f.png"]}  # fmt: skip
    assert read_build_info(tmp_path / "split.h5")["splits"] == "folders"
    _png(root / "loose.png")
    with pytest.raises(ConfigurationError, match=r"1 image\(s\) lie outside train/, test/ and val/.*'loose\.png'"):
        _build(root, tmp_path / "loose.h5")
    assert Catalog.load(_build(root, tmp_path / "all.h5", splits="all")).splits["all"].size == 7
    with pytest.raises(ConfigurationError, match="needs train/ and test/ subfolders"):
        _build(root / "train", tmp_path / "nofolders.h5", splits="folders")


def test_bad_images_stop_the_build_unless_skipped(folder, tmp_path):
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but nothing more")
    _bomb_png(folder / "sub" / "bomb.png")
    out = tmp_path / "out.h5"
    with pytest.raises(DataFormatError, match=r"broken\.png' could not be read.*--skip-bad"):
        _build(folder, out)
    assert not out.exists()
    with pytest.warns(UserWarning, match="left out 2 image file"):
        _build(folder, out, skip_bad=True, resume=True)
    catalog = Catalog.load(out)
    assert list(catalog.ids) == IDS and catalog.spatial_features.shape[0] == 7
    info = read_build_info(out)
    assert info["num_skipped"] == 2 and [s["path"] for s in info["skipped"]] == ["broken.png", "sub/bomb.png"]
    assert "DecompressionBombError" in info["skipped"][1]["reason"]
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    (only_bad / "x.jpg").write_bytes(b"nope")
    with pytest.raises(DataFormatError, match="none of the 1 image files"):
        _build(only_bad, tmp_path / "none.h5", skip_bad=True)


def test_invalid_arguments_and_existing_outputs(folder, tmp_path):
    out = _build(folder, tmp_path / "out.h5", spatial=False)
    with pytest.raises(ConfigurationError, match="exists; pass overwrite=True"):
        _build(folder, out)
    assert Catalog.load(_build(folder, out, overwrite=True, splits="all")).splits.keys() == {"all"}
    for kwargs, message in [
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"image_size": 16}, "image_size must be an integer >= 32"),
        ({"test_fraction": 1.0}, "strictly between 0 and 1"),
        ({"splits": "half"}, "splits must be one of"),
        ({"splits": "like"}, "give one"),
        ({"arch": "vgg16"}, "arch must be one of"),
        ({"random_weights": False}, "no weights given"),
        ({"device": "cuda:7"}, "cuda:7"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            _build(folder, tmp_path / "new.h5", **kwargs)
    assert not (tmp_path / "new.h5").exists() and not (tmp_path / "new.h5.partial").exists()
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(DataFileNotFoundError, match="holds no image files"):
        _build(empty, tmp_path / "e.h5")


def test_a_wrong_shaped_weights_file_stops_before_anything_is_written(folder, tmp_path):
    state = dict(resnet18().state_dict(), **{"layer3.0.conv1.weight": torch.zeros(256, 64, 3, 3)})
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(DataFormatError, match=r"layer3\.0\.conv1\.weight \(256, 64, 3, 3\) \(expected \(256, 128"):
        build_image_catalog(folder, tmp_path / "out.h5", weights=tmp_path / "bad.pth", progress=False)
    assert not (tmp_path / "out.h5").exists() and not (tmp_path / "out.h5.partial").exists()


def test_weights_file_builds_and_records_its_fingerprint(folder, tmp_path):
    torch.save(_random_state(), tmp_path / "r18.pth")
    out = build_image_catalog(folder, tmp_path / "out.h5", weights=tmp_path / "r18.pth", image_size=32,
                              progress=False, splits="all")  # fmt: skip
    info = read_build_info(out)
    assert info["random_weights"] is False and info["weights_description"] == "file r18.pth"
    assert info["weights_fingerprint"].startswith("sha256:") and Catalog.load(out).name == "photos"


def test_command_line_end_to_end(folder, tmp_path, capsys):
    out = tmp_path / "cli.h5"
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    argv = ["build", "--images", str(folder), "--out", str(out), "--random-weights", "--image-size", "32",
            "--batch-size", "4", "--splits", "all", "--no-spatial", "--skip-bad"]  # fmt: skip
    with pytest.warns(UserWarning, match="left out 1"):
        assert main(argv) == 0
    printed = capsys.readouterr()
    assert "wrote" in printed.out and "RANDOM WEIGHTS" in printed.out and "broken.jpg: image" in printed.out
    assert "image features" in printed.err  # the progress bar
    catalog = Catalog.load(out)
    assert catalog.spatial_features is None and list(catalog.splits) == ["all"] and len(catalog) == 7
    assert main(["info", str(out)]) == 0 and "left out 1 file(s)" in capsys.readouterr().out
    assert main(argv) == 2 and "exists; pass overwrite=True" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # neither --weights nor --random-weights
        main(["build", "--images", str(folder), "--out", str(tmp_path / "x.h5")])
    assert exit_info.value.code == 2
    assert main(["info", str(tmp_path / "absent.h5")]) == 2


def test_python_dash_m_runs_the_command(pillow, tmp_path):
    root = tmp_path / "few"
    _png(root / "a.png")
    _png(root / "b.png", (30, 30), (0, 0, 255))
    out = tmp_path / "few.h5"
    result = subprocess.run(
        [sys.executable, "-m", "dialog_env.data.images", "build", "--images", str(root), "--out", str(out),
         "--random-weights", "--image-size", "32", "--no-progress", "--splits", "all"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr and len(Catalog.load(out)) == 2


def test_read_build_info_of_files_that_are_not_catalogues(tmp_path):
    (tmp_path / "x.h5").write_text("text")
    with pytest.raises(CatalogFormatError):
        read_build_info(tmp_path / "x.h5")


def test_without_pillow_the_builder_says_how_to_install_it(folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now raises ImportError
    with pytest.raises(DependencyNotInstalled, match=r'pip install "dialog-retrieval-env\[images\]"'):
        _build(folder, tmp_path / "out.h5")
