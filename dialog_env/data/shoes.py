r"""Import the Shoes image features released with Guo et al. (2018) into an HDF5 catalogue.

The authors distribute (``features/`` of https://github.com/XiaoxiaoGuo/fashion-retrieval, read by
its ``sim_user.py``):

- ``fc_feature.npz``: ResNet-101 pooled features, ``(14658, 2048)``, saved under the default key
  ``arr_0``;
- ``att_feature.npz``: ResNet-101 7 x 7 grid features, ``(14658, 7, 7, 2048)`` channels-last
  (``resnet_batch.py`` permutes to ``N x H x W x C``), key ``arr_0``; about 6 GB in float32;
- ``256embedding.p``: a pickle of a dict ``{"train": (10000, 256), "test": (4658, 256)}``, the
  image embedding that the retrieval model ranks with.

``sim_user.py`` takes the first 10,000 rows of the npz arrays as the training images and the rest
as the test images. This importer assumes, and cannot check, that row ``i`` is the ``i``-th name of
``train_im_names.txt`` followed by ``eval_im_names.txt`` (``test_im_names.txt`` in older copies),
in file order. It is flexible about the rest:

- one ``.npz`` (or ``.npy``) for all rows, or two (train rows, then test rows);
- the array inside an ``.npz`` is chosen with ``fc_key``/``att_key``, by default the only array in
  the file (an error lists the keys when there are several);
- ``att`` may be ``(N, H, W, C)`` (reshaped to ``(N, H*W, C)``), ``(N, C, H, W)`` with
  ``att_layout="nchw"``, or already ``(N, L, C)``;
- the embedding pickle may be a dict (train key ``"train"``; test key ``"test"`` or ``"eval"``)
  or a tuple/list ``(train, test)``; values NumPy arrays or nested lists.

The catalogue's ids are the image names, its splits ``"train"`` and ``"test"`` follow the name
lists, its features are the 256-d embedding when given (or ``fc`` with ``features="fc"``), and
``att`` becomes ``/spatial_features``. The ``att`` array is streamed a block of rows at a time from
the archive (compressed or not), never loaded whole. The output is written atomically.

Command line::

    python -m dialog_env.data.shoes import --train-names train_im_names.txt \
        --test-names eval_im_names.txt --fc fc_feature.npz --att att_feature.npz \
        --embedding 256embedding.p --output shoes.h5
    python -m dialog_env.data.shoes captions --catalog shoes.h5 \
        --relative relative_captions_shoes.json --image captions_shoes.json
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import pickle
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from dialog_env.catalog import Catalog, create_spatial_dataset, nonfinite_rows
from dialog_env.data.captions import load_image_captions, load_relative_captions, read_image_names
from dialog_env.errors import ConfigurationError, DataFileNotFoundError, DataFormatError, DialogEnvError
from dialog_env.io import atomic_path

__all__ = ["import_shoes", "load_embedding", "main", "EMBEDDING_TRAIN_KEYS", "EMBEDDING_TEST_KEYS"]

#: Keys accepted for the training part of a dict embedding pickle.
EMBEDDING_TRAIN_KEYS = ("train",)
#: Keys accepted for the test part of a dict embedding pickle.
EMBEDDING_TEST_KEYS = ("test", "eval")

_FEATURE_CHOICES = ("embedding", "fc")
_NUMPY_CORE = "numpy._core" if importlib.util.find_spec("numpy._core") is not None else "numpy.core"
_ATT_LAYOUTS = ("nhwc", "nchw")
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_DEFAULT_CHUNK_BYTES = 64 * 2**20

PathLike = str | os.PathLike[str]


# ---------------------------------------------------------------------- streaming .npy / .npz
class _NpyStream:
    """One array of a ``.npz`` archive (or a ``.npy`` file), read sequentially by blocks of rows.

    The ``.npy`` header gives shape and dtype; the data follow in C order, so rows can be read
    one block at a time from the (possibly deflated) archive member without loading the array.
    """

    def __init__(self, path: Path, key: str | None, role: str) -> None:
        self.path = path
        self.role = role
        self.key = key
        self._zip: zipfile.ZipFile | None = None
        self._file: IO[bytes]
        if not path.exists():
            raise DataFileNotFoundError(f"{role} file {str(path)!r} does not exist")
        if path.is_dir():
            raise DataFormatError(f"{role} file {str(path)!r} is a directory, expected a .npz or .npy file")
        if zipfile.is_zipfile(path):
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as error:
                raise DataFormatError(f"{role} file {str(path)!r} is a damaged .npz (zip) archive: {error}") from error
            members = {name[: -len(".npy")]: name for name in self._zip.namelist() if name.endswith(".npy")}
            if key is None:
                if len(members) != 1:
                    self.close()
                    raise DataFormatError(
                        f"{role} file {str(path)!r} holds {len(members)} arrays {sorted(members)}; "
                        f"expected one, or name it with the key option"
                    )
                key = next(iter(members))
            elif key not in members:
                self.close()
                raise DataFormatError(
                    f"{role} file {str(path)!r} has no array {key!r}; its arrays are {sorted(members)}"
                )
            self.key = key
            self._file = self._zip.open(members[key])
        else:
            if key is not None:
                raise DataFormatError(
                    f"{role} file {str(path)!r} is not a .npz archive, so key {key!r} cannot be looked up "
                    f"(a .npy file holds one array; drop the key)"
                )
            self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._read_header()

    @property
    def where(self) -> str:
        inside = f", array {self.key!r}" if self._zip is not None else ""
        return f"{self.role} file {str(self.path)!r}{inside}"

    def _read_header(self) -> None:
        fmt = np.lib.format
        try:
            version = fmt.read_magic(self._file)
            if version == (1, 0):
                shape, fortran_order, dtype = fmt.read_array_header_1_0(self._file)
            elif version == (2, 0):
                shape, fortran_order, dtype = fmt.read_array_header_2_0(self._file)
            else:
                raise ValueError(f"unsupported .npy format version {version}, expected 1.0 or 2.0")
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
            self.close()
            raise DataFormatError(f"{self.where} is not a readable .npy array: {error}") from error
        if dtype.hasobject or dtype.kind not in "fiu":
            self.close()
            raise DataFormatError(f"{self.where} holds dtype {dtype}, expected numbers (float32, float16...)")
        if fortran_order and len(shape) > 1:
            self.close()
            raise DataFormatError(
                f"{self.where} is stored in Fortran order, so its rows cannot be streamed; "
                f"re-save it with np.savez(path, np.ascontiguousarray(array))"
            )
        if len(shape) < 1:
            self.close()
            raise DataFormatError(f"{self.where} is a scalar, expected one row per image")
        self.shape: tuple[int, ...] = tuple(int(n) for n in shape)
        self.dtype: np.dtype = dtype

    def blocks(self, rows_per_block: int) -> Iterator[np.ndarray]:
        """Successive ``(b, *shape[1:])`` blocks of rows, in the stored dtype (read-only)."""
        row_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize
        done = 0
        while done < self.shape[0]:
            count = min(rows_per_block, self.shape[0] - done)
            try:
                buffer = self._read_exact(count * row_bytes)
            except (OSError, zipfile.BadZipFile, EOFError) as error:
                raise DataFormatError(f"{self.where} could not be read at row {done}: {error}") from error
            if len(buffer) != count * row_bytes:
                raise DataFormatError(
                    f"{self.where} is truncated: the header promises {self.shape[0]} rows, the data end "
                    f"within row {done + len(buffer) // max(1, row_bytes)}"
                )
            yield np.frombuffer(buffer, dtype=self.dtype).reshape((count, *self.shape[1:]))
            done += count

    def _read_exact(self, size: int) -> bytes:
        parts = []
        while size > 0:
            part = self._file.read(size)
            if not part:
                break
            parts.append(part)
            size -= len(part)
        return b"".join(parts)

    def read_all(self) -> np.ndarray:
        """The whole array (for the small ``fc`` arrays only)."""
        blocks = list(self.blocks(max(1, self.shape[0])))
        return blocks[0] if len(blocks) == 1 else np.empty((0, *self.shape[1:]), dtype=self.dtype)

    def close(self) -> None:
        if getattr(self, "_file", None) is not None:
            self._file.close()
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> _NpyStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------- embedding pickle
# A pickle can run arbitrary code when loaded (its opcodes may call any importable function), and
# the embedding file comes from a third-party download. This unpickler resolves only the few
# globals that NumPy arrays (and an OrderedDict) need, so a tampered file fails instead of running.
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], where: str) -> None:
        # latin1 decodes the byte strings inside NumPy arrays pickled by Python 2.
        super().__init__(file, encoding="latin1")
        self._where = where

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise DataFormatError(
                f"{self._where} refers to {module}.{name}; only NumPy arrays, lists, tuples and dicts are "
                f"accepted (the file is not loaded, because a pickle can run arbitrary code). Convert "
                f"tensors with .numpy() and pickle a dict of arrays"
            )
        # NumPy 2 renamed numpy.core to numpy._core: resolve either name in the running NumPy.
        for prefix in ("numpy.core.", "numpy._core."):
            if module.startswith(prefix):
                module = _NUMPY_CORE + "." + module[len(prefix) :]
        return super().find_class(module, name)


def load_embedding(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The train and test parts of an embedding pickle (``256embedding.p`` layout).

    Accepted: a dict with a train key (:data:`EMBEDDING_TRAIN_KEYS`) and a test key
    (:data:`EMBEDDING_TEST_KEYS`), or a tuple/list of two arrays ``(train, test)``. Values are
    2-D NumPy arrays or nested lists of numbers. Only NumPy array reconstruction is allowed
    while unpickling.

    Returns:
        ``(train, test)``: ``(n_train, E)`` and ``(n_test, E)`` float32, finite.

    Raises:
        DataFileNotFoundError: the file does not exist.
        DataFormatError: not a pickle, a disallowed global, another structure, bad shapes or
            NaN/inf.
    """
    path = Path(path)
    where = f"embedding file {str(path)!r}"
    if not path.exists():
        raise DataFileNotFoundError(f"{where} does not exist")
    try:
        with open(path, "rb") as handle:
            data = _ArrayOnlyUnpickler(handle, where).load()
    except DataFormatError:
        raise
    except Exception as error:  # noqa: BLE001 - any unpickling failure means "not a valid pickle"
        raise DataFormatError(f"{where} is not a readable pickle: {type(error).__name__}: {error}") from error

    if isinstance(data, dict):
        train_key = next((key for key in EMBEDDING_TRAIN_KEYS if key in data), None)
        test_key = next((key for key in EMBEDDING_TEST_KEYS if key in data), None)
        if train_key is None or test_key is None:
            raise DataFormatError(
                f"{where} holds a dict with keys {sorted(map(str, data))}; expected a train key "
                f"{list(EMBEDDING_TRAIN_KEYS)} and a test key {list(EMBEDDING_TEST_KEYS)}"
            )
        parts = {train_key: data[train_key], test_key: data[test_key]}
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        parts = {"[0] (train)": data[0], "[1] (test)": data[1]}
    else:
        found = type(data).__name__ + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else "")
        raise DataFormatError(f"{where} holds a {found}; expected a dict with train/test parts or a pair (train, test)")

    arrays = []
    for label, value in parts.items():
        try:
            array = np.asarray(value)
        except ValueError as error:
            raise DataFormatError(f"{where}, part {label}: not an array of numbers ({error})") from error
        if array.ndim != 2 or array.dtype.kind not in "fiu":
            raise DataFormatError(
                f"{where}, part {label}: found dtype {array.dtype} and shape {array.shape}, expected a 2-D "
                f"array of numbers (images x embedding dimensions)"
            )
        array = array.astype(np.float32)
        _check_finite(array, f"{where}, part {label}")
        arrays.append(array)
    train, test = arrays
    if train.shape[1] != test.shape[1]:
        raise DataFormatError(
            f"{where}: the train part has {train.shape[1]} dimensions and the test part {test.shape[1]}; expected equal"
        )
    return train, test


def _check_finite(array: np.ndarray, where: str, row_offset: int = 0, names: Sequence[str] | None = None) -> None:
    """NaN/inf check of the rows of ``array``.

    They are rows ``row_offset...`` of ``where`` and show the images ``names`` (one per row of
    ``array``).
    """
    bad = nonfinite_rows(array)
    if bad.size:
        label = f" ({names[int(bad[0])]})" if names is not None else ""
        raise DataFormatError(
            f"{where}: row {row_offset + int(bad[0])}{label} contains NaN or inf ({bad.size} such row(s) "
            f"in this block); expected finite values"
        )


# ---------------------------------------------------------------------- the importer
def _as_paths(value: PathLike | Sequence[PathLike] | None, role: str) -> list[Path]:
    if value is None:
        return []
    paths = [Path(value)] if isinstance(value, (str, os.PathLike)) else [Path(item) for item in value]
    if len(paths) not in (1, 2):
        raise ConfigurationError(
            f"{role}: give one file for all images or two (train rows, then test rows), got {len(paths)}"
        )
    return paths


def _row_ranges(paths: list[Path], num_train: int, num_test: int) -> list[tuple[Path, int, int]]:
    """``(file, first catalogue row, row count)`` for one file of all rows or one per split."""
    if len(paths) == 1:
        return [(paths[0], 0, num_train + num_test)]
    return [(paths[0], 0, num_train), (paths[1], num_train, num_test)]


def import_shoes(
    train_names: PathLike,
    test_names: PathLike,
    fc: PathLike | Sequence[PathLike],
    output: PathLike,
    att: PathLike | Sequence[PathLike] | None = None,
    embedding: PathLike | None = None,
    features: str | None = None,
    fc_key: str | None = None,
    att_key: str | None = None,
    att_layout: str = "nhwc",
    spatial_dtype: str = "float32",
    name: str = "shoes",
    chunk_bytes: int = _DEFAULT_CHUNK_BYTES,
    progress: bool = True,
) -> Path:
    """Convert the released Shoes feature files into an HDF5 catalogue (see the module docstring).

    Args:
        train_names: the training image names, one per line, in feature-row order.
        test_names: the test image names, likewise; they follow the training rows.
        fc: ``(N, 2048)`` ResNet features: one ``.npz``/``.npy`` for all ``N`` rows, or two
            (train, test).
        output: the ``.h5`` file to write (replaced atomically if it exists).
        att: optional spatial features ``(N, H, W, C)`` (or ``(N, L, C)``), one file or two;
            streamed into ``/spatial_features`` as ``(N, H*W, C)``.
        embedding: optional embedding pickle with train/test parts (see :func:`load_embedding`).
        features: catalogue features: ``"embedding"`` (the default when ``embedding`` is given)
            or ``"fc"`` (the default otherwise).
        fc_key: the array to read inside the ``fc`` ``.npz``; default: its only array.
        att_key: the array to read inside the ``att`` ``.npz``; default: its only array.
        att_layout: ``"nhwc"`` (channels last, as released) or ``"nchw"``; ignored for 3-D ``att``.
        spatial_dtype: storage of the spatial features, ``"float32"`` or ``"float16"`` (half
            the size; values beyond +-65504 are an error).
        name: catalogue name.
        chunk_bytes: bound on the raw bytes of ``att`` read at once (at least one row).
        progress: show a progress bar while streaming ``att``.

    Returns:
        The path written.

    Raises:
        DataFileNotFoundError: an input file does not exist.
        DataFormatError: an input is malformed or disagrees with the name lists (row counts, a
            name in both lists, NaN/inf, an ambiguous or unknown array key...); the message names
            the file.
        ConfigurationError: an invalid option.
    """
    if features is None:
        features = "embedding" if embedding is not None else "fc"
    if features not in _FEATURE_CHOICES:
        raise ConfigurationError(f"features must be one of {list(_FEATURE_CHOICES)}, got {features!r}")
    if features == "embedding" and embedding is None:
        raise ConfigurationError("features='embedding' needs an embedding pickle (embedding=PATH)")
    if att_layout not in _ATT_LAYOUTS:
        raise ConfigurationError(f"att_layout must be one of {list(_ATT_LAYOUTS)}, got {att_layout!r}")
    if spatial_dtype not in ("float32", "float16"):
        raise ConfigurationError(f"spatial_dtype must be 'float32' or 'float16', got {spatial_dtype!r}")
    storage = np.dtype(spatial_dtype)
    if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < 1:
        raise ConfigurationError(f"chunk_bytes must be a positive integer, got {chunk_bytes!r}")
    fc_paths = _as_paths(fc, "fc")
    att_paths = _as_paths(att, "att")
    output = Path(output)

    train = read_image_names(train_names)
    test = read_image_names(test_names)
    in_both = sorted(set(train) & set(test))
    if in_both:
        raise DataFormatError(
            f"image-name lists {str(train_names)!r} and {str(test_names)!r} share {len(in_both)} name(s), "
            f"e.g. {in_both[0]!r}; expected disjoint splits"
        )
    names = train + test
    num_train, num_test = len(train), len(test)
    counts = f"{num_train} train + {num_test} test names"

    fc_parts = []
    for path, first, count in _row_ranges(fc_paths, num_train, num_test):
        with _NpyStream(path, fc_key, "fc features") as stream:
            if len(stream.shape) != 2 or stream.shape[0] != count:
                raise DataFormatError(
                    f"{stream.where} has shape {stream.shape}, expected ({count}, D): one row per image "
                    f"({counts}; rows {first}..{first + count - 1})"
                )
            array = stream.read_all().astype(np.float32)
            _check_finite(array, stream.where, 0, names[first : first + count])
            fc_parts.append(array)
    fc_array = np.concatenate(fc_parts) if len(fc_parts) > 1 else fc_parts[0]

    if embedding is not None:
        train_embedding, test_embedding = load_embedding(embedding)
        for part, expected, label in ((train_embedding, num_train, "train"), (test_embedding, num_test, "test")):
            if part.shape[0] != expected:
                raise DataFormatError(
                    f"embedding file {str(embedding)!r}: the {label} part has {part.shape[0]} rows, expected "
                    f"{expected} (one per name in the {label} list)"
                )
        embedding_array = np.concatenate([train_embedding, test_embedding])
    catalog = Catalog(
        features=embedding_array if features == "embedding" else fc_array,
        ids=names,
        splits={"train": np.arange(num_train), "test": np.arange(num_train, num_train + num_test)},
        name=name,
    )

    with atomic_path(output) as temporary:
        catalog.save(temporary)
        if att_paths:
            _stream_spatial(
                temporary, att_paths, att_key, att_layout, storage, names, num_train, num_test, chunk_bytes, progress
            )
        Catalog.load(temporary)  # the written file must load (reads no spatial values)
    return output


def _spatial_shape(shape: tuple[int, ...], layout: str, where: str) -> tuple[int, int]:
    """``(L, C)`` of one stored row."""
    if len(shape) == 3:
        return shape[1], shape[2]
    if len(shape) == 4:
        if layout == "nhwc":
            return shape[1] * shape[2], shape[3]
        return shape[2] * shape[3], shape[1]
    raise DataFormatError(f"{where} has shape {shape}, expected (N, H, W, C) or (N, L, C)")


def _stream_spatial(
    catalog_path: Path,
    att_paths: list[Path],
    att_key: str | None,
    layout: str,
    storage: np.dtype,
    names: list[str],
    num_train: int,
    num_test: int,
    chunk_bytes: int,
    progress: bool,
) -> None:
    """Append ``/spatial_features`` to a catalogue file, block by block from the ``att`` files."""
    import h5py
    from tqdm import tqdm

    streams = []
    try:
        for path, first, count in _row_ranges(att_paths, num_train, num_test):
            stream = _NpyStream(path, att_key, "att features")
            streams.append((stream, first, count))
            if len(stream.shape) not in (3, 4) or stream.shape[0] != count:
                raise DataFormatError(
                    f"{stream.where} has shape {stream.shape}, expected ({count}, H, W, C) or ({count}, L, C): one "
                    f"row per image (rows {first}..{first + count - 1} of {len(names)})"
                )
        regions, channels = _spatial_shape(streams[0][0].shape, layout, streams[0][0].where)
        for stream, _, _ in streams[1:]:
            if _spatial_shape(stream.shape, layout, stream.where) != (regions, channels):
                raise DataFormatError(
                    f"{stream.where} has rows of shape {stream.shape[1:]}, but {streams[0][0].where} has "
                    f"{streams[0][0].shape[1:]}; expected the same"
                )

        with h5py.File(catalog_path, "a") as handle, tqdm(
            total=len(names), unit="img", desc="spatial features", disable=not progress, mininterval=1.0
        ) as bar:
            dataset = create_spatial_dataset(handle, (len(names), regions, channels), storage)
            for stream, first, _ in streams:
                row_bytes = math.prod(stream.shape[1:]) * stream.dtype.itemsize
                rows_per_block = max(1, chunk_bytes // row_bytes)
                row = first
                for block in stream.blocks(rows_per_block):
                    if layout == "nchw" and block.ndim == 4:
                        block = block.transpose(0, 2, 3, 1)
                    block = block.reshape(block.shape[0], regions, channels).astype(np.float32)
                    _check_finite(block, stream.where, row - first, names[row : row + block.shape[0]])
                    if storage == np.float16 and block.size and float(np.abs(block).max()) > _FLOAT16_MAX:
                        row_max = np.abs(block).reshape(block.shape[0], -1).max(axis=1)
                        bad = int(np.flatnonzero(row_max > _FLOAT16_MAX)[0])
                        raise DataFormatError(
                            f"{stream.where}: row {row - first + bad} ({names[row + bad]}) has values beyond the "
                            f"float16 range (+-{_FLOAT16_MAX:g}); store the spatial features as float32"
                        )
                    dataset[row : row + block.shape[0]] = block
                    row += block.shape[0]
                    bar.update(block.shape[0])
    finally:
        for stream, _, _ in streams:
            stream.close()


# ---------------------------------------------------------------------- command line
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dialog_env.data.shoes",
        description="Shoes data (Guo et al., 2018): import the released feature files into an HDF5 "
        "catalogue, or check caption files against a catalogue.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    imp = commands.add_parser(
        "import",
        help="convert fc/att .npz and the embedding pickle into an HDF5 catalogue",
        description="Convert the released Shoes features into an HDF5 catalogue. Feature rows are assumed to "
        "be the train names then the test names, in file order.",
    )
    imp.add_argument("--train-names", required=True, type=Path,
                     help="train_im_names.txt: training image names, one per line")
    imp.add_argument("--test-names", required=True, type=Path,
                     help="eval_im_names.txt (or test_im_names.txt): test image names")
    imp.add_argument("--fc", required=True, type=Path, nargs="+", metavar="NPZ",
                     help="fc_feature.npz (N x 2048), or two files: train rows then test rows")
    imp.add_argument("--att", type=Path, nargs="+", metavar="NPZ",
                     help="att_feature.npz (N x 7 x 7 x 2048), or two files; streamed into /spatial_features")
    imp.add_argument("--embedding", type=Path, metavar="PICKLE",
                     help="256embedding.p: dict {'train', 'test'} (or a pair) of embedding arrays")
    imp.add_argument("--features", choices=_FEATURE_CHOICES, default=None,
                     help="catalogue features (default: embedding when --embedding is given, else fc)")
    imp.add_argument("--fc-key", default=None, help="array name inside the fc .npz (default: its only array)")
    imp.add_argument("--att-key", default=None, help="array name inside the att .npz (default: its only array)")
    imp.add_argument("--att-layout", choices=_ATT_LAYOUTS, default="nhwc",
                     help="axis order of a 4-D att array (default: nhwc, channels last, as released)")
    imp.add_argument("--float16", action="store_true", help="store the spatial features as float16 (half the size)")
    imp.add_argument("--name", default="shoes", help="catalogue name (default: shoes)")
    imp.add_argument("--chunk-mb", type=float, default=_DEFAULT_CHUNK_BYTES / 2**20,
                     help="MiB of att read at once (default: 64)")
    imp.add_argument("--no-progress", action="store_true", help="no progress bar")
    imp.add_argument("--output", required=True, type=Path, help="the .h5 catalogue to write")

    cap = commands.add_parser(
        "captions",
        help="check caption files against a catalogue and report counts",
        description="Load caption JSON files against a catalogue and print what was kept and skipped.",
    )
    cap.add_argument("--catalog", required=True, type=Path, help="the .h5 catalogue")
    cap.add_argument("--relative", type=Path, nargs="*", default=[], help="relative-caption JSON files")
    cap.add_argument("--image", type=Path, nargs="*", default=[], help="single-image caption JSON files")
    cap.add_argument("--on-missing", choices=("skip", "error"), default="skip",
                     help="records naming an image the catalogue lacks: skip and count them (default) or fail")
    cap.add_argument("--non-ascii", choices=("error", "transliterate"), default="error",
                     help="non-ASCII captions: fail (default) or transliterate accented letters")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 on success, 2 on bad input)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "import":
            path = import_shoes(
                train_names=args.train_names,
                test_names=args.test_names,
                fc=args.fc,
                output=args.output,
                att=args.att,
                embedding=args.embedding,
                features=args.features,
                fc_key=args.fc_key,
                att_key=args.att_key,
                att_layout=args.att_layout,
                spatial_dtype="float16" if args.float16 else "float32",
                name=args.name,
                chunk_bytes=max(1, int(args.chunk_mb * 2**20)),
                progress=not args.no_progress,
            )
            print(f"wrote {path}: {Catalog.load(path)!r}")
        else:
            catalog = Catalog.load(args.catalog)
            print(repr(catalog))
            for loader, paths in ((load_relative_captions, args.relative), (load_image_captions, args.image)):
                for path in paths:
                    print(loader(path, catalog, on_missing=args.on_missing, non_ascii=args.non_ascii).summary())
    except DialogEnvError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
