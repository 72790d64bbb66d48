r"""Build a catalogue from a folder of images: ResNet features, streamed to HDF5, resumable.

:func:`build_image_catalog` reads every image under a folder (``.png .jpg .jpeg .webp .bmp``, any
case, recursively, in the order of their relative paths), runs a ResNet of
:mod:`dialog_env.data.backbone` over them a batch at a time and writes the catalogue of
:mod:`dialog_env.catalog.hdf5` (schema version 1):

- ``/ids``: the relative POSIX paths, extension included (``train/boots_001.png``);
- ``/features``: ``(N, C) float32``, the global average of the last stage (``C = 512`` for
  ResNet-18, ``2048`` for ResNet-50);
- ``/spatial_features`` (unless ``spatial=False``): ``(N, L, C)``, that stage's map as ``L = h * w``
  regions in row-major order (``7 x 7 = 49`` at the default 224 pixels);
- ``/splits``: the folder's ``train``/``test`` (and ``val``) subfolders, or those of the ``like``
  catalogue, or a seeded random test fraction, or one split ``all``;
- ``/attributes`` (with ``like``): copied from a catalogue whose ids are the images' file stems;
- the root attribute ``image_catalog``: what built the features, as JSON (:func:`read_build_info`),
  including whether the weights were random.

Each image is converted to RGB (transparent pixels over white, EXIF orientation applied), its
shorter side resized to ``image_size`` (bilinear), centre-cropped to ``image_size x image_size``
and normalised with the ImageNet mean and standard deviation. Files are untrusted: Pillow's
decompression-bomb check stays on, and a file that does not decode stops the build with its name
(or, with ``skip_bad``, is left out, counted and listed).

Rows go to ``OUT.partial`` as they are computed, with a progress marker after each batch, so memory
holds one batch at a time and an interrupted build continues with ``resume=True``; the file is
validated by :meth:`Catalog.load <dialog_env.catalog.Catalog.load>` and renamed to ``OUT`` only
when complete.

Command line::

    python -m dialog_env.data.images build --images photos/ --out photos.h5 \
        --weights resnet18-f37072fd.pth
    python -m dialog_env.data.images info photos.h5
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dialog_env.catalog import FORMAT_NAME, SCHEMA_VERSION, SPATIAL_DATASET, Catalog, nonfinite_rows, oversized_rows
from dialog_env.errors import (
    CatalogFormatError,
    CatalogNotFoundError,
    ConfigurationError,
    DataFileNotFoundError,
    DataFormatError,
    DependencyNotInstalled,
    DialogEnvError,
)

__all__ = [
    "FOLDER_SPLITS",
    "IMAGE_SUFFIXES",
    "INFO_ATTRIBUTE",
    "SPLIT_MODES",
    "ImageFile",
    "build_image_catalog",
    "find_images",
    "load_image",
    "main",
    "read_build_info",
]

#: File suffixes read as images (compared case-insensitively).
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".webp")
#: Subfolders that name splits (``train`` and ``test`` must both exist; ``val`` is optional).
FOLDER_SPLITS = ("train", "test", "val")
#: Values of ``splits``: ``"auto"`` is ``"folders"`` when the folder has ``train/`` and ``test/``,
#: else ``"like"`` when a ``like`` catalogue is given, else ``"random"``.
SPLIT_MODES = ("auto", "folders", "like", "random", "all")
#: Root attribute of a built catalogue that records how it was built (a JSON object).
INFO_ATTRIBUTE = "image_catalog"

_BUILD_FORMAT = "dialog-retrieval-image-catalog-build"  # the root 'format' of a partial file
_BUILD_VERSION = 1
_BUILD_GROUP = "build"
# Bumped whenever decoding or preprocessing changes the pixels a network sees: a partial build of
# an older version must not be resumed.
_PREPROCESSING_VERSION = 1
# Settings that decide the rows already written: a resumed build must repeat them exactly.
_ROW_SETTINGS = ("arch", "weights_fingerprint", "image_size", "spatial", "spatial_dtype", "preprocessing_version")
_MAX_RECORDED_SKIPS = 100
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_FEATURE_CHUNK_ROWS = 64
_PILLOW_HINT = 'reading images needs Pillow: pip install "dialog-retrieval-env[images]"'

if TYPE_CHECKING:
    from dialog_env.data.backbone import Encoder

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ImageFile:
    """One image file found under the folder.

    Attributes:
        relative: the path relative to the folder, POSIX style, extension included: the image's id.
        path: the file.
        size: its size in bytes (a resumed build checks that processed files kept theirs).
    """

    relative: str
    path: Path
    size: int

    @property
    def stem(self) -> str:
        """The file name without folder and extension (``train/boots_001.png`` -> ``boots_001``)."""
        return Path(self.relative).stem


# ---------------------------------------------------------------------- finding and reading images
def find_images(images_dir: PathLike) -> list[ImageFile]:
    """Every image file under ``images_dir``, recursively, sorted by relative POSIX path.

    Names starting with ``.`` (hidden files and folders, macOS ``._*`` companions) are ignored,
    and links to folders are not followed (no cycles, nothing outside the folder by accident).

    Raises:
        DataFileNotFoundError: the folder does not exist, is not a folder, or holds no image.
    """
    root = Path(images_dir)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DataFileNotFoundError(f"image folder {str(root)!r} {what}")
    found = []
    for folder, subfolders, names in os.walk(root, followlinks=False):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in names:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                continue
            path = Path(folder) / name
            if not path.is_file():
                continue  # a dangling link, a socket...
            found.append(ImageFile(path.relative_to(root).as_posix(), path, path.stat().st_size))
    if not found:
        raise DataFileNotFoundError(
            f"image folder {str(root)!r} holds no image files (looked for {', '.join(IMAGE_SUFFIXES)}, any case, "
            f"in all subfolders)"
        )
    return sorted(found, key=lambda item: item.relative)


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as error:
        raise DependencyNotInstalled(_PILLOW_HINT) from error
    return Image


def load_image(path: PathLike, image_size: int) -> np.ndarray:
    """Decode one image file as the network sees it, before normalisation.

    RGB (transparent pixels composited over white, the EXIF orientation applied), the shorter side
    resized to ``image_size`` (bilinear, as torchvision's ``Resize``), then the centre
    ``image_size x image_size`` (as torchvision's ``CenterCrop``).

    Returns:
        ``(image_size, image_size, 3) uint8``.

    Raises:
        DataFormatError: the file does not decode (not an image, truncated, a decompression bomb...);
            the message names the file and what Pillow said.
        DependencyNotInstalled: Pillow is missing.
    """
    image_module = _pillow()
    from PIL import ImageOps

    try:
        with image_module.open(path) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                image = image_module.alpha_composite(image_module.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            image = image.convert("RGB")
            width, height = image.size
            if width < 1 or height < 1:
                raise ValueError(f"empty image ({width} x {height})")
            if width <= height:
                size = (image_size, max(1, int(image_size * height / width)))
            else:
                size = (max(1, int(image_size * width / height)), image_size)
            image = image.resize(size, image_module.Resampling.BILINEAR)
            left = int(round((size[0] - image_size) / 2.0))
            top = int(round((size[1] - image_size) / 2.0))
            image = image.crop((left, top, left + image_size, top + image_size))
            array = np.asarray(image, dtype=np.uint8)
    except Exception as error:  # noqa: BLE001 - a hostile file can make any decoder raise anything
        raise DataFormatError(
            f"image {str(path)!r} could not be read: {type(error).__name__}: {error}".rstrip(": ")
        ) from None
    return array


# ---------------------------------------------------------------------- splits and --like
def _folder_splits(files: Sequence[ImageFile], images_dir: Path) -> None:
    """Check that every image lies in ``train/``, ``test/`` or ``val/``."""
    outside = [item.relative for item in files if item.relative.split("/", 1)[0] not in FOLDER_SPLITS
               or "/" not in item.relative]  # fmt: skip
    if outside:
        raise ConfigurationError(
            f"image folder {str(images_dir)!r} has train/ and test/ subfolders, so they are the splits, but "
            f"{len(outside)} image(s) lie outside train/, test/ and val/, e.g. {outside[:3]}; move them, or choose "
            f"the splits otherwise (splits='random' or 'all', --splits random/all)"
        )


@dataclass(frozen=True)
class _Like:
    """What a ``like`` catalogue gives: per image its row there, the attributes and the splits."""

    path: Path
    rows: dict[str, int]  # image id (relative path) -> row in the like catalogue
    attributes: dict[str, np.ndarray]
    schema: list[Any]
    splits: dict[str, np.ndarray]


def _read_like(like: PathLike, files: Sequence[ImageFile]) -> _Like:
    """Match every image's file stem to an id of the ``like`` catalogue (or fail listing those that do not)."""
    path = Path(like)
    reference = Catalog.load(path)
    index = {str(image_id): row for row, image_id in enumerate(reference.ids)}
    by_stem: dict[str, str] = {}
    for item in files:
        if item.stem in by_stem:
            raise ConfigurationError(
                f"like catalogue {str(path)!r}: images {by_stem[item.stem]!r} and {item.relative!r} have the same "
                f"file stem {item.stem!r}, so they would get the same attributes; rename one"
            )
        by_stem[item.stem] = item.relative
    unmatched = [item.relative for item in files if item.stem not in index]
    if unmatched:
        raise ConfigurationError(
            f"like catalogue {str(path)!r} ({reference.num_images} ids, e.g. {str(reference.ids[0])!r}) has no id "
            f"equal to the file stem of {len(unmatched)} of the {len(files)} images, e.g. {unmatched[:5]}; every "
            f"image must be named by an id of that catalogue (id 'syn_boots_00001' <- file 'syn_boots_00001.png')"
        )
    return _Like(
        path=path,
        rows={item.relative: index[item.stem] for item in files},
        attributes=dict(reference.attributes),
        schema=list(reference.attribute_schema.values()),
        splits=dict(reference.splits),
    )


def _resolve_split_mode(mode: str, images_dir: Path, like: _Like | None) -> str:
    has_folders = (images_dir / "train").is_dir() and (images_dir / "test").is_dir()
    if mode == "auto":
        return "folders" if has_folders else "like" if like is not None else "random"
    if mode == "folders" and not has_folders:
        raise ConfigurationError(
            f"splits='folders' needs train/ and test/ subfolders in image folder {str(images_dir)!r}; it has none"
        )
    if mode == "like" and like is None:
        raise ConfigurationError("splits='like' copies the splits of the like catalogue: give one (like=PATH, --like)")
    return mode


def _make_splits(
    mode: str, ids: Sequence[str], like: _Like | None, test_fraction: float, seed: int, has_val: bool
) -> dict[str, np.ndarray]:
    """The splits of the ``N`` images kept, as index arrays into ``0..N-1``."""
    count = len(ids)
    if mode == "all":
        return {"all": np.arange(count)}
    if mode == "folders":
        tops = np.asarray([image_id.split("/", 1)[0] for image_id in ids])
        names = ("train", "test", "val") if has_val else ("train", "test")
        return {name: np.flatnonzero(tops == name) for name in names}
    if mode == "like":
        assert like is not None
        rows = np.asarray([like.rows[image_id] for image_id in ids], dtype=np.int64)
        return {name: np.flatnonzero(np.isin(rows, members)) for name, members in like.splits.items()}
    if count < 2:
        raise ConfigurationError(
            f"a random train/test split needs at least 2 images, {count} were read; use splits='all' (--splits all)"
        )
    num_test = min(count - 1, max(1, int(round(test_fraction * count))))
    order = np.random.default_rng(seed).permutation(count)
    return {"train": np.sort(order[num_test:]), "test": np.sort(order[:num_test])}


# ---------------------------------------------------------------------- the partial file
def _partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def _create_partial(handle: Any, settings: dict[str, Any], dim: int, regions: int, spatial: bool) -> None:
    import h5py

    handle.attrs["format"] = _BUILD_FORMAT
    handle.attrs["build_version"] = _BUILD_VERSION
    strings = h5py.string_dtype("utf-8")
    handle.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=strings, chunks=(1024,))
    handle.create_dataset(
        "features", shape=(0, dim), maxshape=(None, dim), dtype=np.float32, chunks=(_FEATURE_CHUNK_ROWS, dim)
    )
    if spatial:
        # The layout of dialog_env.catalog.create_spatial_dataset (one image per chunk, so that a
        # few random rows are cheap to read), but resizable: with skip_bad, N is known at the end.
        handle.create_dataset(
            SPATIAL_DATASET,
            shape=(0, regions, dim),
            maxshape=(None, regions, dim),
            dtype=np.dtype(settings["spatial_dtype"]),
            chunks=(1, regions, dim),
        )
    build = handle.create_group(_BUILD_GROUP)
    build.attrs["settings"] = json.dumps(settings, sort_keys=True)
    build.attrs["rows_done"] = 0
    build.attrs["files_done"] = 0
    build.attrs["skipped_done"] = 0
    for name in ("consumed", "skipped", "skipped_reasons"):
        build.create_dataset(name, shape=(0,), maxshape=(None,), dtype=strings, chunks=(1024,))
    build.create_dataset("consumed_sizes", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(1024,))


def _open_partial(handle: Any, partial: Path, settings: dict[str, Any], files: Sequence[ImageFile]) -> tuple[int, int]:
    """Check a partial build against this call; return ``(rows_done, files_done)`` after dropping unfinished rows."""
    where = f"partial build {str(partial)!r}"
    fmt = handle.attrs.get("format")
    if fmt != _BUILD_FORMAT or _BUILD_GROUP not in handle:
        found = "a complete catalogue (rename it to the output?)" if fmt == FORMAT_NAME else f"format {fmt!r}"
        raise ConfigurationError(f"{where} is not a build in progress ({found}); delete it to start again")
    build = handle[_BUILD_GROUP]
    if int(handle.attrs.get("build_version", -1)) != _BUILD_VERSION:
        raise ConfigurationError(f"{where} was written by another version of this builder; delete it to start again")
    recorded = json.loads(build.attrs["settings"])
    differences = [
        f"{key} {recorded.get(key)!r} there, {settings[key]!r} now" for key in _ROW_SETTINGS
        if recorded.get(key) != settings[key]
    ]  # fmt: skip
    if differences:
        raise ConfigurationError(
            f"{where} was made with other settings ({'; '.join(differences)}), so its rows would not match the "
            f"rest; resume with the same settings, or delete it to start again"
        )
    rows_done, files_done = int(build.attrs["rows_done"]), int(build.attrs["files_done"])
    skipped_done = int(build.attrs["skipped_done"])
    consumed = [name.decode() if isinstance(name, bytes) else str(name) for name in build["consumed"][:files_done]]
    sizes = build["consumed_sizes"][:files_done]
    if files_done > len(files):
        raise ConfigurationError(
            f"{where} has already read {files_done} images, but the folder now holds {len(files)}; the images "
            f"it read must stay as they were (delete it to start again)"
        )
    for position, (name, size) in enumerate(zip(consumed, sizes, strict=True)):
        item = files[position]
        if (item.relative, item.size) != (name, int(size)):
            raise ConfigurationError(
                f"{where} does not match the image folder: image #{position} was {name!r} ({int(size)} bytes) when "
                f"it was read, and is {item.relative!r} ({item.size} bytes) now. The images already read must stay "
                f"as they were (those not read yet may change); delete the partial file to start again"
            )
    # Rows written after the last progress marker belong to an unfinished batch: drop them.
    for name in ("ids", "features", SPATIAL_DATASET):
        if name in handle:
            handle[name].resize(rows_done, axis=0)
    for name in ("consumed", "consumed_sizes"):
        build[name].resize(files_done, axis=0)
    for name in ("skipped", "skipped_reasons"):
        build[name].resize(skipped_done, axis=0)
    return rows_done, files_done


def _append(dataset: Any, values: Any) -> None:
    start = dataset.shape[0]
    dataset.resize(start + len(values), axis=0)
    if len(values):
        dataset[start:] = values


# ---------------------------------------------------------------------- the builder
def _check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ConfigurationError(f"{name} must be one of {list(choices)}, got {value!r}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, got {value!r}")


def build_image_catalog(
    images_dir: PathLike,
    out: PathLike,
    *,
    arch: str = "resnet18",
    weights: PathLike | None = None,
    random_weights: bool = False,
    image_size: int = 224,
    batch_size: int = 32,
    spatial: bool = True,
    spatial_dtype: str = "float32",
    splits: str = "auto",
    test_fraction: float = 0.2,
    seed: int = 0,
    like: PathLike | None = None,
    name: str | None = None,
    skip_bad: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    device: str = "auto",
    workers: int = 0,
    on_batch: Callable[[int, int], None] | None = None,
) -> Path:
    """Compute ResNet features of every image under a folder and write them as an HDF5 catalogue.

    See the module docstring for the layout, the preprocessing and the partial file.

    Args:
        images_dir: the folder of images (searched recursively; see :func:`find_images`).
        out: the ``.h5`` catalogue to write. Rows go to ``OUT.partial`` first; ``out`` appears only
            when every image is done and the file loads.
        arch: ``"resnet18"`` (512-d features) or ``"resnet50"`` (2048-d).
        weights: a torchvision weight file (``resnet18-f37072fd.pth``: a plain state dict; or
            ``.safetensors``), or ``"torchvision"`` for torchvision's standard weights (needs
            torchvision); ``None`` with ``random_weights=True`` for random weights.
        random_weights: confirm random weights (seeded by ``seed``; the features mean nothing: for
            tests and smoke runs). The catalogue records it, and its default name says so.
        image_size: side in pixels of the square the network sees (at least 32); the spatial grid
            is ``ceil(image_size / 32)`` cells a side (7 at 224).
        batch_size: images per forward pass and per progress marker.
        spatial: also write ``/spatial_features`` ``(N, L, C)`` (``L = 49``, ``C = 512`` for
            ResNet-18 at 224 pixels: 100 KB per image in float32, 400 KB for ResNet-50).
        spatial_dtype: their storage, ``"float32"`` or ``"float16"`` (half the size).
        splits: one of :data:`SPLIT_MODES`. ``"folders"``: the ``train``/``test`` (and ``val``)
            subfolders; ``"like"``: the splits of ``like``; ``"random"``: ``test_fraction`` of
            the images, drawn with ``np.random.default_rng(seed)``, are ``test``, the rest
            ``train``; ``"all"``: one split ``all``; ``"auto"`` (default): folders if there are,
            else like if given, else random.
        test_fraction: share of the images in ``test`` for random splits, in ``(0, 1)``.
        seed: seeds the random split and random weights.
        like: a catalogue whose ids are the images' file stems (``syn_boots_00001`` for
            ``syn_boots_00001.png``): its attributes (and, by default, its splits) are copied.
            Every image must match one of its ids.
        name: the catalogue's name; default the folder's name (``"-random-weights"`` appended
            with random weights).
        skip_bad: leave out files that do not decode (counted and listed in the catalogue's
            build info, and warned about) instead of stopping at the first.
        resume: continue the build recorded in ``OUT.partial`` (a new build when there is none).
            The architecture, weights, image size and spatial settings must be the same, and the
            images already read unchanged (name and size); splits, ``like`` and ``name`` are
            taken from this call.
        overwrite: replace an existing ``out``.
        progress: show a progress bar.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:1"``...
        workers: threads that decode images beside the network (0: decode in this thread).
        on_batch: called after each batch is safely written, with ``(images read, images in all)``.

    Returns:
        ``out``.

    Raises:
        DataFileNotFoundError: the folder does not exist or holds no image; a missing weight file.
        DataFormatError: an image does not decode (without ``skip_bad``), the weight file is not a
            state dict fitting ``arch``, or the features are not finite.
        ConfigurationError: an invalid argument; ``out`` exists without ``overwrite``; a partial
            build exists without ``resume``, or does not match this call.
        DependencyNotInstalled: Pillow is missing; ``"torchvision"`` without torchvision.
    """
    import h5py
    import torch
    from tqdm import tqdm

    from dialog_env.data.backbone import IMAGENET_MEAN, IMAGENET_STD, feature_grid_size, load_encoder
    from dialog_env.torch_utils import resolve_device

    _pillow()
    _check_choice("arch", arch, ("resnet18", "resnet50"))
    _check_int("image_size", image_size, 32)
    _check_int("batch_size", batch_size, 1)
    _check_int("seed", seed, 0)
    _check_int("workers", workers, 0)
    _check_choice("spatial_dtype", spatial_dtype, ("float32", "float16"))
    _check_choice("splits", splits, SPLIT_MODES)
    if not isinstance(test_fraction, (int, float)) or not 0.0 < float(test_fraction) < 1.0:
        raise ConfigurationError(f"test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}")
    images_dir, out = Path(images_dir), Path(out)
    partial = _partial_path(out)
    if out.exists() and not overwrite:
        raise ConfigurationError(f"output {str(out)!r} exists; pass overwrite=True (--overwrite) to replace it")
    if partial.exists() and not resume:
        raise ConfigurationError(
            f"a partial build {str(partial)!r} exists (an interrupted run?); pass resume=True (--resume) to "
            f"continue it, or delete it to start again"
        )

    files = find_images(images_dir)
    like_data = _read_like(like, files) if like is not None else None
    split_mode = _resolve_split_mode(splits, images_dir, like_data)
    if split_mode == "folders":
        _folder_splits(files, images_dir)
    encoder = load_encoder(arch, weights, random_weights=random_weights, seed=seed)
    torch_device = resolve_device(device)
    model = encoder.model.to(torch_device)
    dim = model.feature_dim
    side = feature_grid_size(image_size)
    settings = {
        "arch": arch,
        "weights_fingerprint": encoder.fingerprint,
        "image_size": int(image_size),
        "spatial": bool(spatial),
        "spatial_dtype": spatial_dtype if spatial else None,
        "preprocessing_version": _PREPROCESSING_VERSION,
    }
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=torch_device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=torch_device).view(1, 3, 1, 1)

    def decode(item: ImageFile) -> np.ndarray | str:
        try:
            return load_image(item.path, image_size)
        except DataFormatError as error:
            return str(error)

    resuming = resume and partial.exists()
    try:
        handle = h5py.File(partial, "a" if resuming else "w-")
    except OSError as error:
        raise ConfigurationError(
            f"partial build {str(partial)!r} cannot be opened (not HDF5, or damaged by a crash while writing?): "
            f"{error}; delete it to start again"
        ) from None
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers) if workers else None
    try:
        with handle:
            if resuming:
                rows_done, files_done = _open_partial(handle, partial, settings, files)
            else:
                _create_partial(handle, settings, dim, side * side, spatial)
                rows_done, files_done = 0, 0
            build = handle[_BUILD_GROUP]
            with tqdm(total=len(files), initial=files_done, unit="img", desc="image features",
                      disable=not progress, mininterval=1.0) as bar:  # fmt: skip
                for start in range(files_done, len(files), batch_size):
                    batch = files[start : start + batch_size]
                    decoded = list(executor.map(decode, batch) if executor else map(decode, batch))
                    pairs = list(zip(batch, decoded, strict=True))
                    good = [(item, array) for item, array in pairs if not isinstance(array, str)]
                    bad = [(item, reason) for item, reason in pairs if isinstance(reason, str)]
                    if bad and not skip_bad:
                        raise DataFormatError(
                            f"{bad[0][1]}. Stopped there: the {rows_done} image(s) done so far are kept in "
                            f"{str(partial)!r}; fix or remove the file and rerun with --resume (resume=True), or "
                            f"rerun with --resume --skip-bad (skip_bad=True) to leave out files that do not decode"
                        )
                    if good:
                        pixels = torch.from_numpy(np.stack([array for _, array in good])).to(torch_device)
                        with torch.inference_mode():
                            x = (pixels.permute(0, 3, 1, 2).to(torch.float32) / 255.0 - mean) / std
                            pooled, regions = model.encode(x)
                        features = pooled.cpu().numpy().astype(np.float32, copy=False)
                        ids = [item.relative for item, _ in good]
                        _check_rows(features, ids, "features")
                        _append(handle["features"], features)
                        if spatial:
                            grid = regions.cpu().numpy().astype(np.float32, copy=False)
                            _check_rows(grid, ids, "spatial features", float16=spatial_dtype == "float16")
                            _append(handle[SPATIAL_DATASET], grid.astype(spatial_dtype, copy=False))
                        _append(handle["ids"], np.asarray(ids, dtype=object))
                    _append(build["consumed"], np.asarray([item.relative for item in batch], dtype=object))
                    _append(build["consumed_sizes"], np.asarray([item.size for item in batch], dtype=np.int64))
                    _append(build["skipped"], np.asarray([item.relative for item, _ in bad], dtype=object))
                    _append(build["skipped_reasons"], np.asarray([reason for _, reason in bad], dtype=object))
                    rows_done += len(good)
                    files_done += len(batch)
                    # The progress marker: rows past it are dropped when the build resumes.
                    build.attrs["rows_done"] = rows_done
                    build.attrs["files_done"] = files_done
                    build.attrs["skipped_done"] = build["skipped"].shape[0]
                    handle.flush()
                    bar.update(len(batch))
                    if on_batch is not None:
                        on_batch(files_done, len(files))
            info = _finish(handle, images_dir, encoder, settings, split_mode, like_data, test_fraction, seed, name)
    finally:
        if executor is not None:
            executor.shutdown(wait=True)
    try:
        Catalog.load(partial)
    except CatalogFormatError as error:  # a bug of this builder, never the user's input
        raise CatalogFormatError(f"the built catalogue {str(partial)!r} does not load: {error}") from error
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, out)
    if info["num_skipped"]:
        first = info["skipped"][0]
        warnings.warn(
            f"{out}: left out {info['num_skipped']} image file(s) that do not decode (first: {first['path']!r}: "
            f"{first['reason']}); read_build_info({str(out)!r})['skipped'] lists them",
            stacklevel=2,
        )
    return out


def _check_rows(array: np.ndarray, ids: Sequence[str], what: str, float16: bool = False) -> None:
    """Finite, in the catalogue's safe range (and float16's, when stored so), or an error naming the image."""
    bad, problem = nonfinite_rows(array), "NaN or inf"
    if not bad.size and float16:
        bad, problem = oversized_rows(array, _FLOAT16_MAX), f"values beyond the float16 range (+-{_FLOAT16_MAX:g})"
    if not bad.size:
        bad, problem = oversized_rows(array), "values beyond dialog_env.catalog.MAX_ABS_FEATURE"
    if bad.size:
        hint = "store the spatial features as float32" if float16 and "float16" in problem else "check the weights"
        raise DataFormatError(
            f"the {what} of image {ids[int(bad[0])]!r} hold {problem} ({bad.size} image(s) of this batch); {hint}"
        )


def _finish(
    handle: Any,
    images_dir: Path,
    encoder: Encoder,
    settings: dict[str, Any],
    split_mode: str,
    like: _Like | None,
    test_fraction: float,
    seed: int,
    name: str | None,
) -> dict[str, Any]:
    """Turn the complete partial file into a catalogue: splits, attributes, root attributes; drop the build group."""
    import torch

    import dialog_env

    build = handle[_BUILD_GROUP]
    ids = [value.decode() if isinstance(value, bytes) else str(value) for value in handle["ids"][()]]
    skipped = [
        {"path": _text(path), "reason": _text(reason)}
        for path, reason in zip(build["skipped"][()], build["skipped_reasons"][()], strict=True)
    ]
    if not ids:
        raise DataFormatError(
            f"none of the {len(skipped)} image files under {str(images_dir)!r} could be read (first: "
            f"{skipped[0]['path']!r}: {skipped[0]['reason']})"
        )
    splits = _make_splits(split_mode, ids, like, test_fraction, seed, has_val=(images_dir / "val").is_dir())
    for leftover in ("splits", "attributes"):  # from a finish that failed half-way
        if leftover in handle:
            del handle[leftover]
    group = handle.create_group("splits")
    for split_name, indices in splits.items():
        group.create_dataset(split_name, data=indices.astype(np.int64))
    if like is not None and like.attributes:
        rows = np.asarray([like.rows[image_id] for image_id in ids], dtype=np.int64)
        attributes = handle.create_group("attributes")
        for schema in like.schema:
            dataset = attributes.create_dataset(schema.name, data=like.attributes[schema.name][rows])
            dataset.attrs["values"] = list(schema.values)
            dataset.attrs["ordinal"] = bool(schema.ordinal)
    side = int(round(handle[SPATIAL_DATASET].shape[1] ** 0.5)) if SPATIAL_DATASET in handle else None
    if name is None:
        name = (images_dir.resolve().name or "images") + ("-random-weights" if encoder.random_weights else "")
    info = {
        "builder": "dialog_env.data.images",
        "builder_version": _BUILD_VERSION,
        "dialog_env_version": dialog_env.__version__,
        "torch_version": torch.__version__,
        "source_folder": images_dir.resolve().name,
        "arch": encoder.arch,
        "weights": encoder.weights,
        "weights_description": encoder.description,
        "weights_fingerprint": encoder.fingerprint,
        "random_weights": encoder.random_weights,
        "image_size": settings["image_size"],
        "preprocessing": "RGB (transparency over white, EXIF orientation applied); shorter side resized to "
        "image_size (bilinear); centre crop image_size x image_size; ImageNet mean/std",
        "preprocessing_version": _PREPROCESSING_VERSION,
        "features": f"global average of the last stage's map, ({encoder.model.feature_dim},) float32",
        "spatial_features": None if side is None else (
            f"the last stage's {side} x {side} map, row-major, ({side * side}, {encoder.model.feature_dim}) "
            f"{settings['spatial_dtype']}"),
        "splits": split_mode,
        "test_fraction": float(test_fraction) if split_mode == "random" else None,
        "seed": int(seed),
        "like": None if like is None else like.path.name,
        "num_images": len(ids),
        "num_skipped": len(skipped),
        "skipped": skipped[:_MAX_RECORDED_SKIPS],
    }
    del handle[_BUILD_GROUP]
    for key in ("build_version",):
        if key in handle.attrs:
            del handle.attrs[key]
    handle.attrs["format"] = FORMAT_NAME
    handle.attrs["schema_version"] = SCHEMA_VERSION
    handle.attrs["name"] = name
    handle.attrs[INFO_ATTRIBUTE] = json.dumps(info)
    return info


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_build_info(path: PathLike) -> dict[str, Any] | None:
    """How a catalogue was built from images (the JSON of its root attribute :data:`INFO_ATTRIBUTE`).

    Keys include ``arch``, ``weights`` (``"file"``, ``"torchvision"`` or ``"random"``),
    ``weights_description``, ``random_weights`` (bool), ``image_size``, ``splits``,
    ``num_images``, ``num_skipped`` and ``skipped`` (the first 100 files left out, each
    ``{"path", "reason"}``). Reads the attribute only (:meth:`Catalog.load` checks the rest).

    Returns:
        The dict, or ``None`` for a catalogue made otherwise (``Catalog.save``, the Shoes importer).

    Raises:
        CatalogNotFoundError: the file does not exist.
        CatalogFormatError: not an HDF5 file, or the attribute is not a JSON object.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise CatalogNotFoundError(f"catalogue file {str(path)!r} does not exist")
    try:
        with h5py.File(path, "r") as handle:
            text = handle.attrs.get(INFO_ATTRIBUTE)
    except OSError as error:
        raise CatalogFormatError(f"catalogue file {str(path)!r} is not a readable HDF5 file: {error}") from None
    if text is None:
        return None
    try:
        info = json.loads(_text(text))
    except ValueError:
        info = None
    if not isinstance(info, dict):
        raise CatalogFormatError(f"catalogue file {str(path)!r}: attribute {INFO_ATTRIBUTE!r} is not a JSON object")
    return info


# ---------------------------------------------------------------------- command line
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dialog_env.data.images",
        description="Build an HDF5 catalogue from a folder of images (ResNet features), or show how one was built.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser(
        "build",
        help="compute ResNet features of a folder of images and write a catalogue",
        description="Compute ResNet features (and 7 x 7 spatial features) of every image under a folder and write "
        "them as an HDF5 catalogue. Rows are written to OUT.partial as they are computed; an interrupted build "
        "continues with --resume.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    build.add_argument("--images", required=True, type=Path, metavar="DIR",
                       help="folder of .png/.jpg/.jpeg/.webp/.bmp images, searched recursively")
    build.add_argument("--out", required=True, type=Path, metavar="CATALOG.h5", help="the catalogue to write")
    build.add_argument("--arch", choices=("resnet18", "resnet50"), default="resnet18",
                       help="network: resnet18 (512-d features) or resnet50 (2048-d)")
    weights = build.add_mutually_exclusive_group(required=True)
    weights.add_argument("--weights", metavar="FILE|torchvision",
                         help="torchvision weight file (a state dict .pth, or .safetensors), or 'torchvision' for "
                         "torchvision's standard weights (needs torchvision)")
    weights.add_argument("--random-weights", action="store_true",
                         help="random weights seeded by --seed (features mean nothing: tests and smoke runs)")
    build.add_argument("--image-size", type=int, default=224,
                       help="pixels a side of the centre crop the network sees (7 x 7 regions at 224)")
    build.add_argument("--batch-size", type=int, default=32, help="images per forward pass and progress marker")
    build.add_argument("--no-spatial", action="store_true", help="skip /spatial_features")
    build.add_argument("--float16", action="store_true", help="store the spatial features as float16 (half the size)")
    build.add_argument("--splits", choices=SPLIT_MODES, default="auto",
                       help="auto: train/test subfolders if any, else those of --like, else random; folders; like; "
                       "random (--test-fraction, --seed); all (one split 'all')")
    build.add_argument("--test-fraction", type=float, default=0.2, help="share of images in 'test' (random splits)")
    build.add_argument("--seed", type=int, default=0, help="seed of the random split and of --random-weights")
    build.add_argument("--like", type=Path, metavar="CATALOG.h5",
                       help="copy attributes (and splits) from this catalogue, whose ids are the images' file stems")
    build.add_argument("--name", default=None, help="catalogue name (default: the folder's name)")
    build.add_argument("--skip-bad", action="store_true",
                       help="leave out files that do not decode (listed in the summary) instead of stopping")
    build.add_argument("--resume", action="store_true", help="continue the interrupted build in OUT.partial")
    build.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    build.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1...")
    build.add_argument("--workers", type=int, default=0, help="threads decoding images (0: none)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")

    info = commands.add_parser("info", help="show a catalogue and how it was built from images")
    info.add_argument("catalog", type=Path, help="the .h5 catalogue")
    return parser


def _summary(path: Path) -> str:
    catalog = Catalog.load(path)
    info = read_build_info(path)
    lines = [f"{path}: {catalog!r}"]
    if info is None:
        lines.append("  (not built from a folder of images)")
        return "\n".join(lines)
    lines.append(f"  features: {info['arch']}, weights {info['weights_description']}, {info['image_size']} pixels")
    if info["random_weights"]:
        lines.append("  RANDOM WEIGHTS: the features carry no meaning (tests and smoke runs only)")
    if info["num_skipped"]:
        lines.append(f"  left out {info['num_skipped']} file(s) that do not decode:")
        lines += [f"    {entry['path']}: {entry['reason']}" for entry in info["skipped"]]
        if info["num_skipped"] > len(info["skipped"]):
            lines.append(f"    ... and {info['num_skipped'] - len(info['skipped'])} more")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 on success, 2 on bad input, 130 when interrupted)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "info":
            print(_summary(args.catalog))
            return 0
        path = build_image_catalog(
            args.images,
            args.out,
            arch=args.arch,
            weights=args.weights,
            random_weights=args.random_weights,
            image_size=args.image_size,
            batch_size=args.batch_size,
            spatial=not args.no_spatial,
            spatial_dtype="float16" if args.float16 else "float32",
            splits=args.splits,
            test_fraction=args.test_fraction,
            seed=args.seed,
            like=args.like,
            name=args.name,
            skip_bad=args.skip_bad,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            device=args.device,
            workers=args.workers,
        )
        print("wrote " + _summary(path))
    except DialogEnvError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"interrupted: the images done so far are kept in {str(_partial_path(args.out))!r}; rerun with --resume",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
