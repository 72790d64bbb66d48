"""Exact rank tables for index actions: ``table[s, t]``, the rank of target ``t`` when image ``s`` is shown.

When the agent's action is an image index, the shown image is a catalogue row, so every rank the
environment can ever need is one of ``N x N`` numbers. :func:`build_rank_table` computes them all
once (:meth:`Ranker.all_target_ranks <dialog_env.ranking.Ranker.all_target_ranks>`: one float64
product, one sort and a float64 recheck of exact ties per block of shown images, ``O(N^2 (D + log
N))`` work), and a :class:`RankTable` attached to a :class:`~dialog_env.ranking.Ranker` answers
:meth:`Ranker.target_ranks <dialog_env.ranking.Ranker.target_ranks>` by a lookup instead of a
``(B, D) @ (D, N)`` product per step. The numbers are the ranking engine's exactly (float64
reference distances, ties not counted, 0 for the shown target), so a rollout with a table is
bit-identical to one without. Query vectors (an agent's query, the query-vector wrapper,
:meth:`~dialog_env.ranking.Ranker.query_target_ranks`, :meth:`~dialog_env.ranking.Ranker.nearest`)
never read a table.

**Size.** ``N * N`` entries of the smallest unsigned integer type that holds ``N - 1``
(:func:`rank_table_dtype`: ``uint8`` up to 256 images, ``uint16`` up to 65,536, else ``uint32``):
200 MB for the default catalogue's 10,000-image train split, 43 MB for its 4,658-image test split.
A build refuses tables larger than ``max_bytes`` (default 2 GiB, :data:`DEFAULT_MAX_RANK_TABLE_BYTES`)
with a :class:`~dialog_env.errors.ConfigurationError` that says how much it would need.

**Sharing.** :func:`shared_rank_table` keeps one table per set of features and process, keyed by a
fingerprint of the features (BLAKE2b of their bytes, remembered per array for the read-only
arrays of a :class:`~dialog_env.catalog.Catalog`), so that every environment on one split,
single or vector, uses the same table, whichever ``Catalog`` object it was loaded into. It is
thread-safe: concurrent requests for one table wait for a single build. Tables stay cached while
anything uses them, and the most recently used ones (up to :data:`CACHE_KEEP_BYTES` in all) also
after their environments are gone; :func:`clear_rank_table_cache` forgets them.

**In the environments** the option is ``rank_table=False | True | "auto"`` (``False`` by default:
a 10,000-image table takes seconds to build, paid at construction; see :func:`wants_rank_table`).
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np

from dialog_env.errors import ConfigurationError
from dialog_env.ranking import Ranker

__all__ = [
    "AUTO_RANK_TABLE_BYTES",
    "CACHE_KEEP_BYTES",
    "DEFAULT_MAX_RANK_TABLE_BYTES",
    "RANK_TABLE_OPTIONS",
    "RankTable",
    "build_rank_table",
    "set_build_progress",
    "check_rank_table_option",
    "clear_rank_table_cache",
    "features_fingerprint",
    "rank_table_dtype",
    "rank_table_nbytes",
    "shared_rank_table",
    "wants_rank_table",
]

#: A build refuses tables larger than this by default (2 GiB: up to 32,768 images in ``uint16``).
DEFAULT_MAX_RANK_TABLE_BYTES = 2 * 2**30
#: ``rank_table="auto"`` uses a table when it takes at most this (256 MiB: up to 11,585 images).
AUTO_RANK_TABLE_BYTES = 256 * 2**20
#: Tables the cache keeps alive after nothing else uses them (least recently used dropped first).
CACHE_KEEP_BYTES = 2**30
#: The values of the environments' ``rank_table`` option.
RANK_TABLE_OPTIONS = (False, True, "auto")
# Builds of at least this many images (about a second or more) show a progress bar by default.
_PROGRESS_MIN_IMAGES = 4096
# The process's default for builds whose caller does not say (set_build_progress): None is by size.
_progress_default: bool | None = None


def rank_table_dtype(num_images: int) -> np.dtype:
    """The smallest unsigned integer dtype that holds every rank ``0..num_images-1``."""
    return np.dtype(np.min_scalar_type(max(int(num_images) - 1, 0)))


def rank_table_nbytes(num_images: int) -> int:
    """Bytes of the rank table of ``num_images`` images: ``N * N * itemsize``."""
    return int(num_images) ** 2 * rank_table_dtype(num_images).itemsize


def _size(nbytes: int) -> str:
    """``"190.7 MiB"``, ``"2.0 GiB"`` or ``"22,500 bytes"``."""
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:,.1f} GiB"
    if nbytes >= 2**20:
        return f"{nbytes / 2**20:,.1f} MiB"
    return f"{nbytes:,} bytes"


class RankTable:
    """The exact rank of every target w.r.t. every shown image of one catalogue (split).

    Build one with :func:`build_rank_table` or (shared) :func:`shared_rank_table`; attach it with
    :meth:`Ranker.attach_rank_table <dialog_env.ranking.Ranker.attach_rank_table>`.

    Args:
        ranks: ``(N, N)`` unsigned integer ranks, ``ranks[s, t]`` the rank of target ``t`` when
            image ``s`` is shown (kept read-only, not copied).
        fingerprint: :func:`features_fingerprint` of the features they were computed from.
        build_seconds: how long the build took (for reports).

    Raises:
        ConfigurationError: ``ranks`` that are not a square integer array.
    """

    def __init__(self, ranks: np.ndarray, fingerprint: str, build_seconds: float = 0.0) -> None:
        ranks = np.asarray(ranks)
        if ranks.ndim != 2 or ranks.shape[0] != ranks.shape[1] or not np.issubdtype(ranks.dtype, np.integer):
            raise ConfigurationError(
                f"a rank table must be a square (N, N) integer array, got dtype {ranks.dtype} and shape {ranks.shape}"
            )
        ranks.setflags(write=False)
        self.ranks = ranks
        self.fingerprint = str(fingerprint)
        self.build_seconds = float(build_seconds)

    @property
    def num_images(self) -> int:
        """Number of images ``N``."""
        return int(self.ranks.shape[0])

    @property
    def nbytes(self) -> int:
        """Memory of the table in bytes (``N * N * itemsize``)."""
        return int(self.ranks.nbytes)

    def lookup(self, shown: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """The ranks of ``B`` (shown, target) pairs.

        Args:
            shown: ``(B,) int64`` shown image indices in ``0..N-1`` (not checked again: the
                ranker checks them).
            targets: ``(B,) int64`` target indices in ``0..N-1``.

        Returns:
            ``(B,) int64`` ranks, those :meth:`Ranker.target_ranks` computes with the product.
        """
        return self.ranks[shown, targets].astype(np.int64)

    def check_features(self, features: np.ndarray) -> None:
        """:class:`ConfigurationError` unless the table was computed from ``features``.

        Args:
            features: ``(N, D) float32`` catalogue features.
        """
        if features.shape[0] != self.num_images or features_fingerprint(features) != self.fingerprint:
            raise ConfigurationError(
                f"this rank table was computed from other features ({self.num_images} images, fingerprint "
                f"{self.fingerprint[:12]}...) than the ranker's ({features.shape[0]} images, fingerprint "
                f"{features_fingerprint(features)[:12]}...); build one with shared_rank_table(ranker)"
            )

    def __repr__(self) -> str:
        return f"RankTable(N={self.num_images:,}, dtype={self.ranks.dtype}, {_size(self.nbytes)})"


# ---------------------------------------------------------------------- fingerprints
_FINGERPRINT_LOCK = threading.Lock()
# id(array) -> (weak reference, fingerprint) for read-only arrays that own their memory (a
# Catalog's features): they cannot change, so they are hashed once.
_FINGERPRINTS: dict[int, tuple[weakref.ref, str]] = {}


def features_fingerprint(features: np.ndarray) -> str:
    """A hex digest of the features' shape, dtype and bytes (BLAKE2b, 128 bits).

    Remembered per array for read-only arrays that own their memory (a catalogue's features), so
    that many environments on one split hash it once.

    Args:
        features: ``(N, D) float32`` features.
    """
    remember = isinstance(features, np.ndarray) and not features.flags.writeable and features.base is None
    if remember:
        with _FINGERPRINT_LOCK:
            entry = _FINGERPRINTS.get(id(features))
            if entry is not None and entry[0]() is features:
                return entry[1]
    array = np.ascontiguousarray(features)
    digest = hashlib.blake2b(f"{array.dtype.str}{array.shape}".encode(), digest_size=16)
    digest.update(memoryview(array).cast("B"))
    fingerprint = digest.hexdigest()
    if remember:
        key = id(features)

        def forget(_: weakref.ref, key: int = key) -> None:
            with _FINGERPRINT_LOCK:
                entry = _FINGERPRINTS.get(key)
                if entry is not None and entry[0]() is None:
                    del _FINGERPRINTS[key]

        with _FINGERPRINT_LOCK:
            _FINGERPRINTS[key] = (weakref.ref(features, forget), fingerprint)
    return fingerprint


# ---------------------------------------------------------------------- building
def build_rank_table(
    ranker: Ranker,
    *,
    max_bytes: int | None = DEFAULT_MAX_RANK_TABLE_BYTES,
    progress: bool | None = None,
) -> RankTable:
    """Compute the rank table of ``ranker``'s catalogue (not shared: see :func:`shared_rank_table`).

    Row block by row block with :meth:`Ranker.all_target_ranks
    <dialog_env.ranking.Ranker.all_target_ranks>` (scratch memory about ``ranker.max_chunk_bytes``
    beyond the table). Deterministic: the table is a function of the features alone.

    Args:
        ranker: the ranking engine over the catalogue's ``(N, D) float32`` features.
        max_bytes: refuse tables larger than this (``None``: no limit).
        progress: show a tqdm progress bar on stderr; ``None``: the process's default
            (:func:`set_build_progress`), at first for catalogues of at least 4,096 images
            (builds of about a second or more).

    Returns:
        The :class:`RankTable`: ``(N, N)`` ranks of :func:`rank_table_dtype`.

    Raises:
        ConfigurationError: the table would exceed ``max_bytes`` (the message says how much it needs).
    """
    num_images = ranker.num_images
    dtype = rank_table_dtype(num_images)
    nbytes = rank_table_nbytes(num_images)
    if max_bytes is not None and nbytes > max_bytes:
        raise ConfigurationError(
            f"a rank table of {num_images:,} images needs {num_images:,}^2 x {dtype.itemsize} bytes ({dtype}) = "
            f"{_size(nbytes)}, more than max_bytes = {_size(int(max_bytes))}; raise max_bytes (e.g. "
            f"shared_rank_table(ranker, max_bytes={nbytes})) or use rank_table=False (ranks from the matrix product)"
        )
    fingerprint = features_fingerprint(ranker.features)
    started = time.perf_counter()
    ranks = np.empty((num_images, num_images), dtype=dtype)
    rows = ranker.all_target_ranks_rows()
    if progress is None:
        progress = num_images >= _PROGRESS_MIN_IMAGES if _progress_default is None else _progress_default
    show = bool(progress)
    from tqdm import tqdm  # noqa: PLC0415 - a dependency, loaded only when a table is built

    with tqdm(
        total=num_images, desc=f"rank table ({num_images:,} images, {_size(nbytes)})", unit="row",
        disable=not show, leave=False, mininterval=1.0, file=sys.stderr,
    ) as bar:  # fmt: skip
        for start in range(0, num_images, rows):
            stop = min(start + rows, num_images)
            ranks[start:stop] = ranker.all_target_ranks(np.arange(start, stop))
            bar.update(stop - start)
    return RankTable(ranks, fingerprint, build_seconds=time.perf_counter() - started)


# ---------------------------------------------------------------------- the shared tables
_CACHE_LOCK = threading.Lock()
_LIVE: weakref.WeakValueDictionary[str, RankTable] = weakref.WeakValueDictionary()  # every table still in use
_KEPT: OrderedDict[str, RankTable] = OrderedDict()  # recently used ones, kept alive (LRU, CACHE_KEEP_BYTES)
_BUILDS: dict[str, threading.Lock] = {}  # one lock per table being built


def _cached(fingerprint: str) -> RankTable | None:
    """The cached table of ``fingerprint`` (marked as most recently used), or ``None``. Hold the lock."""
    table = _LIVE.get(fingerprint)
    if table is not None:
        _keep(fingerprint, table)
    return table


def _keep(fingerprint: str, table: RankTable) -> None:
    """Keep ``table`` alive as the most recently used; drop the oldest beyond CACHE_KEEP_BYTES. Hold the lock."""
    _LIVE[fingerprint] = table
    _KEPT[fingerprint] = table
    _KEPT.move_to_end(fingerprint)
    while len(_KEPT) > 1 and sum(kept.nbytes for kept in _KEPT.values()) > CACHE_KEEP_BYTES:
        _KEPT.popitem(last=False)


def set_build_progress(show: bool | None) -> bool | None:
    """Whether this process's rank-table builds show a progress bar when their caller does not say.

    The environments build their tables without saying; a command with ``--no-progress`` (or a
    process of a torchrun job other than process 0) calls ``set_build_progress(False)``. ``None``
    restores the default: a bar for builds of at least 4,096 images.

    Returns:
        The setting before (to restore it afterwards).
    """
    global _progress_default  # noqa: PLW0603 - one process-wide setting, like the table cache
    previous, _progress_default = _progress_default, None if show is None else bool(show)
    return previous


def shared_rank_table(
    ranker: Ranker,
    *,
    max_bytes: int | None = DEFAULT_MAX_RANK_TABLE_BYTES,
    progress: bool | None = None,
) -> RankTable:
    """The process's rank table of ``ranker``'s features: built on the first request, then shared.

    Keyed by :func:`features_fingerprint`, so every ranker over the same features (every
    environment on one split) gets the same :class:`RankTable` object. Thread-safe: concurrent
    requests for a table wait for one build. ``max_bytes`` applies to building only: a table
    that is already cached is returned whatever its size (so a larger table can be built once with
    a larger ``max_bytes`` and then used by environments with ``rank_table=True``).

    Args:
        ranker: the ranking engine over the catalogue's features.
        max_bytes: refuse to build tables larger than this (``None``: no limit).
        progress: progress bar of a build (see :func:`build_rank_table`).

    Raises:
        ConfigurationError: a table to build that would exceed ``max_bytes``.
    """
    fingerprint = features_fingerprint(ranker.features)
    with _CACHE_LOCK:
        table = _cached(fingerprint)
        if table is not None:
            return table
        build_lock = _BUILDS.setdefault(fingerprint, threading.Lock())
    with build_lock:
        with _CACHE_LOCK:
            table = _cached(fingerprint)
        if table is None:
            try:
                table = build_rank_table(ranker, max_bytes=max_bytes, progress=progress)
            finally:
                with _CACHE_LOCK:
                    _BUILDS.pop(fingerprint, None)
            with _CACHE_LOCK:
                _keep(fingerprint, table)
    return table


def clear_rank_table_cache() -> None:
    """Forget every shared table (those still attached to a ranker stay in use there)."""
    with _CACHE_LOCK:
        _KEPT.clear()
        _LIVE.clear()


# ---------------------------------------------------------------------- the environments' option
def check_rank_table_option(value: Any) -> bool | str:
    """The environments' ``rank_table`` argument, checked: ``True``, ``False`` or ``"auto"``.

    Raises:
        ConfigurationError: any other value (``1`` or ``"yes"`` are refused, not guessed).
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value == "auto":
        return value
    raise ConfigurationError(
        f"rank_table must be True (look ranks of index actions up in a precomputed exact table), False (compute "
        f"them with the matrix product) or 'auto' (a table when it takes at most {_size(AUTO_RANK_TABLE_BYTES)}), "
        f"got {value!r} of type {type(value).__name__}"
    )


def wants_rank_table(option: bool | str, num_images: int) -> bool:
    """Whether the ``rank_table`` option asks for a table on a split of ``num_images`` images.

    ``True``: always (a build above :data:`DEFAULT_MAX_RANK_TABLE_BYTES` then fails); ``False``:
    never; ``"auto"``: when the table takes at most :data:`AUTO_RANK_TABLE_BYTES` (256 MiB: up to
    11,585 images, e.g. the default catalogue's 10,000-image train split).

    Raises:
        ConfigurationError: an option that :func:`check_rank_table_option` refuses.
    """
    option = check_rank_table_option(option)
    if option == "auto":
        return rank_table_nbytes(num_images) <= AUTO_RANK_TABLE_BYTES
    return bool(option)
