"""k-nearest-neighbour search backends, selectable by name, for agents' candidate generation.

``"exact"`` (the default) is :meth:`Ranker.nearest <dialog_env.ranking.Ranker.nearest>`: exact
squared-L2 neighbours, ties broken by the smaller index. The FAISS backends need the optional
``faiss-cpu`` package (``pip install "dialog-retrieval-env[faiss]"``); FAISS is imported only when
one of them is built:

| name | FAISS index | exact? | settings (keyword arguments of :func:`make_knn_index`) |
| --- | --- | --- | --- |
| ``"exact"`` | none (the project's ranker) | yes (float64 order, ties by index) | ``max_chunk_bytes`` |
| ``"faiss-flat"`` | ``IndexFlatL2`` | yes, up to float32 rounding and tie order | none |
| ``"faiss-ivf"`` | ``IndexIVFFlat`` (k-means coarse quantiser) | no | ``nlist`` (default ``4 sqrt(N)``), ``nprobe`` (default 16) |
| ``"faiss-hnsw"`` | ``IndexHNSWFlat`` (graph) | no | ``hnsw_m`` (32), ``ef_construction`` (80), ``ef_search`` (64) |

Recall@k of the approximate indexes against exact search on the default catalogue is measured
by ``python benchmarks/ann_recall.py`` and recorded in ``benchmarks/results/ann_recall.md``.

Every index answers :meth:`KnnIndex.search` with ``(B, k) int64`` indices and ``(B, k) float32``
squared distances, nearest first. An approximate index may find fewer than ``k`` neighbours
(IVF with few probed lists): the missing entries are index ``-1`` with distance ``inf``.

Features of extreme magnitude (a row norm outside ``[2**-40, 2**40]``, e.g. every feature times
``1e19`` or ``1e-30``) are given to FAISS multiplied by a power of two that brings them into
``[0.5, 1)`` (:func:`~dialog_env.ranking.feature_scale`; exact, so neighbours are unchanged), and
queries likewise, so that FAISS's float32 distances neither overflow nor underflow; a FAISS
search refuses a query so far out that they would (``ConfigurationError``; the exact backend
handles any finite query).
"""  # noqa: E501 - the table of backends

from __future__ import annotations

import abc
import inspect
import math
from typing import Any

import numpy as np

from dialog_env.errors import ConfigurationError, DependencyNotInstalled
from dialog_env.ranking import _MAX_REACH, DEFAULT_MAX_CHUNK_BYTES, Ranker, feature_scale

__all__ = [
    "KNN_BACKENDS", "KnnIndex", "ExactKnnIndex", "FaissKnnIndex", "check_knn_settings", "make_knn_index",
    "import_faiss",
]  # fmt: skip

#: Names accepted by :func:`make_knn_index`.
KNN_BACKENDS = ("exact", "faiss-flat", "faiss-ivf", "faiss-hnsw")


def import_faiss() -> Any:
    """The ``faiss`` module, or :class:`DependencyNotInstalled` with the command that installs it."""
    try:
        import faiss  # noqa: PLC0415 - optional dependency, imported on demand
    except ImportError as error:
        raise DependencyNotInstalled(
            'the FAISS k-NN backends need faiss-cpu: pip install "dialog-retrieval-env[faiss]"'
        ) from error
    return faiss


class KnnIndex(abc.ABC):
    """k-nearest-neighbour search over ``(N, D) float32`` catalogue features (squared L2)."""

    #: Backend name (one of :data:`KNN_BACKENDS`).
    name: str = ""
    #: Whether results equal exact search (up to float32 rounding and tie order).
    exact: bool = False

    def __init__(self, features: np.ndarray) -> None:
        features = np.asarray(features)
        if features.ndim != 2 or features.dtype != np.float32 or features.shape[0] < 1:
            raise ConfigurationError(
                f"a k-NN index needs (N, D) float32 features with N >= 1, got dtype {features.dtype} "
                f"and shape {features.shape}"
            )
        self.features = np.ascontiguousarray(features)

    @property
    def num_images(self) -> int:
        """Number of indexed images ``N``."""
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        """Feature dimension ``D``."""
        return int(self.features.shape[1])

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` indexed images nearest to each query, nearest first.

        Args:
            queries: ``(B, D)`` float query vectors (cast to float32).
            k: number of neighbours, ``1..N``.

        Returns:
            ``(indices, squared_distances)``: ``(B, k) int64`` (``-1`` where an approximate index
            found fewer than ``k``) and ``(B, k) float32`` (``inf`` there).
        """
        queries = np.asarray(queries)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ConfigurationError(f"queries must have shape (B, {self.dim}), got {queries.shape}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.num_images:
            raise ConfigurationError(f"k must be an integer in 1..{self.num_images}, got {k!r}")
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if not np.isfinite(queries).all():
            raise ConfigurationError("queries contain NaN or inf")
        return self._search(queries, int(k))

    @abc.abstractmethod
    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Search validated ``(B, D) float32`` C-contiguous queries."""


class ExactKnnIndex(KnnIndex):
    """Exact search with the project's ranker (chunked float32 products, bounded memory).

    Args:
        features: ``(N, D) float32`` features.
        max_chunk_bytes: memory bound of one chunk (see :class:`~dialog_env.ranking.Ranker`).
        ranker: an existing ranker over the same features, to share (e.g. ``env.unwrapped.ranker``).
    """

    name = "exact"
    exact = True

    def __init__(
        self, features: np.ndarray, max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES, ranker: Ranker | None = None
    ) -> None:
        super().__init__(features)
        self.ranker = ranker if ranker is not None else Ranker(self.features, max_chunk_bytes=max_chunk_bytes)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.ranker.nearest(queries, k)


class FaissKnnIndex(KnnIndex):
    """A FAISS index (``IndexFlatL2``, ``IndexIVFFlat`` or ``IndexHNSWFlat``) over the features.

    Args:
        features: ``(N, D) float32`` features.
        kind: ``"flat"``, ``"ivf"`` or ``"hnsw"``.
        nlist: IVF lists (default ``round(4 sqrt(N))``, at most ``N``).
        nprobe: IVF lists probed per query (default 16).
        hnsw_m: HNSW neighbours per node (default 32).
        ef_construction: HNSW build-time beam width (default 80).
        ef_search: HNSW search-time beam width (default 64; at least ``k`` is used).
        seed: seed of the IVF k-means (results are deterministic for a given seed and thread count).

    Raises:
        DependencyNotInstalled: ``faiss`` is not installed.
    """

    exact = False

    def __init__(
        self,
        features: np.ndarray,
        kind: str = "flat",
        nlist: int | None = None,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        seed: int = 1234,
    ) -> None:
        super().__init__(features)
        if kind not in ("flat", "ivf", "hnsw"):
            raise ConfigurationError(f"unknown FAISS index kind {kind!r}; choose 'flat', 'ivf' or 'hnsw'")
        positive = {"nprobe": nprobe, "hnsw_m": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search}
        for label, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigurationError(f"{label} must be an integer >= 1, got {value!r}")
        faiss = import_faiss()
        # FAISS computes float32 distances: features of extreme magnitude go in scaled by a power
        # of two (exact), so that those neither overflow nor underflow.
        self._scale = feature_scale(self.features)
        data = self.features if self._scale == 1.0 else np.ldexp(self.features, np.int32(math.log2(self._scale)))
        with np.errstate(under="ignore"):
            self._max_norm = math.sqrt(float(np.einsum("nd,nd->n", data, data, dtype=np.float64).max()))
        self.kind = kind
        self.name = f"faiss-{kind}"
        self.exact = kind == "flat"
        dim = self.dim
        if kind == "flat":
            index = faiss.IndexFlatL2(dim)
        elif kind == "ivf":
            if nlist is None:
                nlist = max(1, round(4 * math.sqrt(self.num_images)))
            if isinstance(nlist, bool) or not isinstance(nlist, (int, np.integer)) or not 1 <= nlist <= self.num_images:
                raise ConfigurationError(f"nlist must be an integer in 1..{self.num_images}, got {nlist!r}")
            quantizer = faiss.IndexFlatL2(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, int(nlist), faiss.METRIC_L2)
            index.cp.seed = int(seed)
            index.cp.min_points_per_centroid = 1  # small catalogues: no warning, still trains
            index.train(data)
            index.nprobe = min(int(nprobe), int(nlist))
            self._quantizer = quantizer  # FAISS does not own it: keep it alive
            self.nlist = int(nlist)
            self.nprobe = index.nprobe
        else:
            index = faiss.IndexHNSWFlat(dim, int(hnsw_m))
            index.hnsw.efConstruction = int(ef_construction)
            self.ef_search = int(ef_search)
        index.add(data)
        self.index = index

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = max(self.ef_search, k)
        scaled = queries.astype(np.float64) * self._scale
        reach = float(np.sqrt(np.einsum("bd,bd->b", scaled, scaled)).max(initial=0.0)) + self._max_norm
        if reach > _MAX_REACH:
            raise ConfigurationError(
                f"a query of norm {(reach - self._max_norm) / self._scale:.3g} is too far from these features for "
                f"FAISS's float32 distances (at most {(_MAX_REACH - self._max_norm) / self._scale:.3g}); "
                f"use the 'exact' backend, which handles any finite query"
            )
        if self._scale != 1.0:
            with np.errstate(under="ignore"):
                queries = scaled.astype(np.float32)
        distances, indices = self.index.search(queries, k)
        indices = indices.astype(np.int64, copy=False)
        distances = np.maximum(distances, 0.0).astype(np.float64) / self._scale**2
        with np.errstate(over="ignore"):
            distances = np.where(indices >= 0, distances, np.inf).astype(np.float32)
        return indices, distances

    def __getstate__(self) -> dict:
        faiss = import_faiss()
        state = self.__dict__.copy()
        state["index"] = faiss.serialize_index(self.index)
        state.pop("_quantizer", None)
        return state

    def __setstate__(self, state: dict) -> None:
        faiss = import_faiss()
        state = dict(state)
        state["index"] = faiss.deserialize_index(state["index"])
        self.__dict__.update(state)


def make_knn_index(name: str, features: np.ndarray, **kwargs: Any) -> KnnIndex:
    """A k-NN index over ``features`` by backend name.

    Args:
        name: one of :data:`KNN_BACKENDS`: ``"exact"`` (default choice), ``"faiss-flat"``,
            ``"faiss-ivf"``, ``"faiss-hnsw"``.
        features: ``(N, D) float32`` catalogue features (e.g. ``env.unwrapped.catalog.features``).
        **kwargs: settings of the backend (see the module docstring).

    Raises:
        ConfigurationError: unknown name or settings.
        DependencyNotInstalled: a FAISS backend without ``faiss-cpu`` installed.

    Example:
        >>> index = make_knn_index("faiss-hnsw", env.unwrapped.catalog.features)  # doctest: +SKIP
        >>> indices, distances = index.search(query_vectors, k=50)  # doctest: +SKIP
    """
    if name not in KNN_BACKENDS:
        raise ConfigurationError(f"unknown k-NN backend {name!r}; choose one of {list(KNN_BACKENDS)}")
    try:
        if name == "exact":
            return ExactKnnIndex(features, **kwargs)
        return FaissKnnIndex(features, kind=name.removeprefix("faiss-"), **kwargs)
    except TypeError as error:
        raise ConfigurationError(f"k-NN backend {name!r} rejected settings {sorted(kwargs)}: {error}") from error


def check_knn_settings(name: str, settings: dict[str, Any] | None = None) -> None:
    """Check a backend name and the names of its settings before any index is built.

    For a command that builds its index late (after training, say), so that a typo or a missing
    ``faiss-cpu`` stops it at the start. The values are checked when the index is built.

    Raises:
        ConfigurationError: unknown backend or setting name.
        DependencyNotInstalled: a FAISS backend without ``faiss-cpu`` installed.
    """
    if name not in KNN_BACKENDS:
        raise ConfigurationError(f"unknown k-NN backend {name!r}; choose one of {list(KNN_BACKENDS)}")
    backend = ExactKnnIndex if name == "exact" else FaissKnnIndex
    allowed = set(inspect.signature(backend).parameters) - {"features", "kind", "ranker"}
    unknown = sorted(set(settings or {}) - allowed)
    if unknown:
        raise ConfigurationError(f"k-NN backend {name!r} has no settings {unknown}; it takes {sorted(allowed)}")
    if name != "exact":
        import_faiss()
