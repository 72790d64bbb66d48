"""The ranking engine: exact target ranks and nearest neighbours over a catalogue's features.

One implementation, used by the environments, the agents and the benchmarks.

**Rank.** For a reference vector ``q`` (the features of a shown image, or an agent's query vector)
and a target image ``t``, the rank is the number of catalogue images ``i`` that are *strictly*
closer to ``q`` than ``t`` is, in squared L2 distance. The target itself is never counted, so the
rank of a shown target is 0; images at exactly the target's distance (ties, duplicates) are not
counted either. The reference semantics is float64 arithmetic on the float32 features:
``d_i = sum((x_i - q) ** 2)`` in float64.

**How it is computed.** All references of a batch are compared with the catalogue through one
float32 matrix product per chunk of catalogue rows, using precomputed squared norms
(``|x_i|^2 - 2 q.x_i``; ``|q|^2`` is common to all ``i`` and drops out of the comparison). A
rigorous bound on the float32 rounding error decides most comparisons (the target's own score is
computed in float64); the few images whose float32 score lies within that bound of the target's
are recomputed in float64 with the reference formula. The result therefore equals the float64
brute-force reference exactly, ties included, at the cost of one float32 GEMM.

**Ties.** An image at exactly the target's float64 distance (a duplicate of the target, or a
tie) is not counted: only strictly closer images are. Both distances of a recheck are computed
with the same float64 expression, so duplicates of the target tie exactly.

**Speed.** Per chunk the work after the product is three vectorised passes (add the norms,
compare with the lower and upper bounds, count per row with a bit count), plus the float64
recheck of the handful of undecided images; at ``B = 128, N = 10,000, D = 256`` the whole rank
computation takes about 1.2-1.4x the bare product (``benchmarks/env_speed.py`` measures it).

**Memory.** The catalogue is processed in chunks of rows so that the temporary arrays of one
chunk (float32 scores and two bool masks, 6 bytes per reference and row: 7/8 of the budget) and
the float64 rechecks (blocks of pairs: 1/8) take at most about ``max_chunk_bytes`` (256 MiB by
default), whatever ``N`` is. These scratch arrays are kept between calls (one set per thread) so that steps do not pay
page faults for fresh arrays; they are not pickled.
"""

from __future__ import annotations

import threading

import numpy as np

from dialog_env.errors import ConfigurationError

__all__ = ["Ranker", "rank_percentile", "DEFAULT_MAX_CHUNK_BYTES"]

DEFAULT_MAX_CHUNK_BYTES = 256 * 2**20
_FLOAT32_UNIT_ROUNDOFF = float(np.finfo(np.float32).eps) / 2
# Bytes of temporaries per (reference, catalogue row) pair: the float32 score and two bool masks.
_BYTES_PER_PAIR = 4 + 1 + 1
_HAVE_BITWISE_COUNT = hasattr(np, "bitwise_count")


def rank_percentile(ranks: np.ndarray | int, num_images: int) -> np.ndarray | float:
    """Rank percentile ``1 - rank / (N - 1)``: 1.0 when the target is the closest, 0.0 the farthest.

    Args:
        ranks: integer rank(s) in ``0..N-1``.
        num_images: catalogue size ``N`` (at least 2).
    """
    if num_images < 2:
        raise ConfigurationError(f"rank percentile needs at least 2 images, got {num_images}")
    return 1.0 - np.asarray(ranks, dtype=np.float64) / float(num_images - 1)


class Ranker:
    """Exact ranks and k-nearest neighbours over ``(N, D) float32`` features.

    Args:
        features: ``(N, D) float32`` catalogue features (not copied; keep them unchanged).
        squared_norms: optional precomputed ``(N,) float32`` squared norms (e.g.
            :attr:`Catalog.squared_norms`).
        max_chunk_bytes: bound on the temporary memory of one chunk of the catalogue.
    """

    def __init__(
        self,
        features: np.ndarray,
        squared_norms: np.ndarray | None = None,
        max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
    ) -> None:
        features = np.asarray(features)
        if features.ndim != 2 or features.dtype != np.float32:
            raise ConfigurationError(
                f"Ranker needs (N, D) float32 features, got dtype {features.dtype} and shape {features.shape}"
            )
        if max_chunk_bytes < 1:
            raise ConfigurationError(f"max_chunk_bytes must be positive, got {max_chunk_bytes}")
        self.features = np.ascontiguousarray(features)
        if squared_norms is None:
            squared_norms = np.einsum("nd,nd->n", self.features, self.features, dtype=np.float32)
        self.squared_norms = np.asarray(squared_norms, dtype=np.float32)
        self.max_chunk_bytes = int(max_chunk_bytes)
        self._max_norm = float(np.sqrt(self.squared_norms.max(initial=0.0, where=np.isfinite(self.squared_norms))))
        # |float32 error| <= gamma_{D+2} * (|q| + |x|)^2 for the score |x|^2 - 2 q.x computed from
        # float32 norms and a float32 product, gamma_n = n u / (1 - n u) (Higham, Accuracy and
        # Stability of Numerical Algorithms, 3.1). The target's score is computed in float64, so
        # only the catalogue side errs; the 1% slack covers float64 error and rounding the bounds.
        n_terms = self.dim + 2
        gamma = n_terms * _FLOAT32_UNIT_ROUNDOFF / (1.0 - n_terms * _FLOAT32_UNIT_ROUNDOFF)
        self._error_factor = gamma * 1.01
        self._local = threading.local()

    @property
    def num_images(self) -> int:
        """Number of catalogue images ``N``."""
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        """Feature dimension ``D``."""
        return int(self.features.shape[1])

    def chunk_rows(self, batch_size: int) -> int:
        """Catalogue rows processed at once for ``batch_size`` references (at least 1)."""
        # 7/8 of the budget for the chunk's scores and masks, 1/8 for the float64 rechecks.
        chunk_bytes = self.max_chunk_bytes - self.max_chunk_bytes // 8
        return max(1, min(self.num_images, chunk_bytes // (_BYTES_PER_PAIR * max(1, batch_size))))

    # ------------------------------------------------------------------ ranks
    def target_ranks(self, shown: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Rank of each target w.r.t. the catalogue image shown with it.

        Args:
            shown: ``(B,)`` integer indices of the reference images.
            targets: ``(B,)`` integer indices of the targets.

        Returns:
            ``(B,) int64`` ranks in ``0..N-1``.
        """
        shown = self._check_indices(shown, "shown")
        return self._ranks(self.features[shown], self._check_indices(targets, "targets"))

    def query_target_ranks(self, queries: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Rank of each target w.r.t. an arbitrary query vector (e.g. an agent's query).

        Args:
            queries: ``(B, D)`` float query vectors (cast to float32).
            targets: ``(B,)`` integer target indices.

        Returns:
            ``(B,) int64`` ranks in ``0..N-1``.
        """
        queries = self._check_queries(queries)
        return self._ranks(queries, self._check_indices(targets, "targets"))

    def _ranks(self, queries: np.ndarray, targets: np.ndarray) -> np.ndarray:
        if queries.shape[0] != targets.shape[0]:
            raise ConfigurationError(
                f"need one target per reference, got {queries.shape[0]} references and {targets.shape[0]} targets"
            )
        batch = queries.shape[0]
        ranks = np.zeros(batch, dtype=np.int64)
        if batch == 0:
            return ranks
        target_features = self.features[targets].astype(np.float64)
        queries64 = queries.astype(np.float64)
        target_scores = np.einsum("bd,bd->b", target_features, target_features - 2.0 * queries64)
        query_norms = np.sqrt(np.einsum("bd,bd->b", queries64, queries64))
        margins = self._error_factor * (query_norms + self._max_norm) ** 2
        lower = (target_scores - margins).astype(np.float32)[:, None]
        upper = (target_scores + margins).astype(np.float32)[:, None]
        # Scaling by -2 is exact in binary floating point, so (-2 q) @ X.T rounds exactly like
        # -2 (q @ X.T) and the error bound above still holds, without a pass over the scores.
        scaled_queries = queries * np.float32(-2.0)

        step = self.chunk_rows(batch)
        # Width rounded up to a multiple of 8 so that 8 booleans can be counted as one uint64.
        width = -(-step // 8) * 8
        scores_buffer, below, within = self._workspace(batch, step, width)
        band_rows: list[np.ndarray] = []
        band_items: list[np.ndarray] = []
        for start in range(0, self.num_images, step):
            stop = min(start + step, self.num_images)
            size = stop - start
            if size < width:  # the last, short chunk: padding columns must count as False
                below[:, size:] = False
                within[:, size:] = False
            # A C-contiguous output, so that matmul writes into it without a temporary copy.
            scores = scores_buffer[: batch * size].reshape(batch, size)
            np.matmul(scaled_queries, self.features[start:stop].T, out=scores)
            scores += self.squared_norms[start:stop]
            np.less(scores, lower, out=below[:, :size])
            np.less_equal(scores, upper, out=within[:, :size])
            num_below = _count_per_row(below)
            ranks += num_below
            if np.any(_count_per_row(within) > num_below):
                # Images whose float32 score is too close to the target's to decide: recheck
                # them in float64. ``within`` includes ``below``, so XOR leaves the band.
                np.not_equal(within, below, out=below)
                flat = np.flatnonzero(below)
                rows = flat // width
                band_rows.append(rows)
                band_items.append(flat - rows * width + start)
        if band_rows:
            rows = np.concatenate(band_rows)
            items = np.concatenate(band_items)
            candidates = items != targets[rows]  # the target is never counted
            rows, items = rows[candidates], items[candidates]
            # Blocks of pairs keep the float64 temporaries within an eighth of max_chunk_bytes.
            block = max(64, self.max_chunk_bytes // (8 * 40 * self.dim))
            for begin in range(0, rows.size, block):
                block_rows, block_items = rows[begin : begin + block], items[begin : begin + block]
                pair_queries = queries64[block_rows]
                # Both distances with the same expression on same-shaped arrays, so that a duplicate
                # of the target gets bit-identical distances and counts as a tie (not closer).
                item_distances = _squared_distances64(self.features[block_items], pair_queries)
                target_distances = _squared_distances64(self.features[targets[block_rows]], pair_queries)
                ranks += np.bincount(block_rows[item_distances < target_distances], minlength=batch)
        return ranks

    def _workspace(self, batch: int, rows: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scratch memory: a flat float32 buffer for ``(batch, rows)`` scores and two
        ``(batch, width)`` bool masks.

        Kept between calls (one set per thread, grown to the largest request so far) because
        fresh multi-megabyte arrays cost page faults on every step; bounded by about
        ``max_chunk_bytes``.
        """
        buffers = getattr(self._local, "buffers", None)
        if buffers is None or buffers[0].size < batch * rows or buffers[1].size < batch * width:
            buffers = (
                np.empty(batch * rows, np.float32),
                np.empty(batch * width, np.bool_),
                np.empty(batch * width, np.bool_),
            )
            self._local.buffers = buffers
        scores, below, within = buffers
        return scores, below[: batch * width].reshape(batch, width), within[: batch * width].reshape(batch, width)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_local"]  # scratch memory: neither picklable nor worth copying
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def target_percentiles(self, shown: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """:func:`rank_percentile` of :meth:`target_ranks`. Returns ``(B,) float64``."""
        return rank_percentile(self.target_ranks(shown, targets), self.num_images)

    # ------------------------------------------------------------------ neighbours
    def nearest(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` catalogue images nearest to each query, exact, nearest first.

        Ties in distance are broken by the smaller index.

        Args:
            queries: ``(B, D)`` float query vectors.
            k: number of neighbours, ``1..N``.

        Returns:
            ``(indices, squared_distances)``: ``(B, k) int64`` and ``(B, k) float32``.
        """
        queries = self._check_queries(queries)
        if not 1 <= k <= self.num_images:
            raise ConfigurationError(f"k must be in 1..{self.num_images}, got {k}")
        batch = queries.shape[0]
        query_norms = np.einsum("bd,bd->b", queries, queries, dtype=np.float32)[:, None]
        best_scores = np.full((batch, 0), np.inf, dtype=np.float32)
        best_items = np.zeros((batch, 0), dtype=np.int64)
        step = self.chunk_rows(batch)
        for start in range(0, self.num_images, step):
            stop = min(start + step, self.num_images)
            scores = queries @ self.features[start:stop].T
            scores *= -2.0
            scores += self.squared_norms[start:stop]
            items = np.broadcast_to(np.arange(start, stop, dtype=np.int64), scores.shape)
            best_scores, best_items = _smallest_k(
                np.concatenate([best_scores, scores], axis=1), np.concatenate([best_items, items], axis=1), k
            )
        distances = np.maximum(best_scores + query_norms, 0.0).astype(np.float32)
        return best_items, distances

    # ------------------------------------------------------------------ validation
    def _check_indices(self, indices: np.ndarray, name: str) -> np.ndarray:
        indices = np.asarray(indices)
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise ConfigurationError(f"{name} must be a 1-D integer array, got dtype {indices.dtype}, shape {indices.shape}")
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_images):
            raise ConfigurationError(f"{name} must be image indices in 0..{self.num_images - 1}, got {indices}")
        return indices.astype(np.int64, copy=False)

    def _check_queries(self, queries: np.ndarray) -> np.ndarray:
        queries = np.asarray(queries)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ConfigurationError(f"queries must have shape (B, {self.dim}), got {queries.shape}")
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if not np.isfinite(queries).all():
            raise ConfigurationError("queries contain NaN or inf")
        return queries


def _count_per_row(mask: np.ndarray) -> np.ndarray:
    """Number of True entries per row of a C-contiguous ``(B, W)`` bool array, ``W % 8 == 0``.

    ``np.count_nonzero(mask, axis=1)`` takes a slow strided path; a NumPy bool is one byte 0 or 1,
    so the bit count of each 8-byte word is the number of True entries in it.
    """
    if _HAVE_BITWISE_COUNT:
        return np.bitwise_count(mask.view(np.uint64)).sum(axis=1, dtype=np.int64)
    return np.count_nonzero(mask, axis=1).astype(np.int64)  # NumPy < 2.0


def _squared_distances64(items: np.ndarray, queries64: np.ndarray) -> np.ndarray:
    """Row-wise ``sum((items - queries) ** 2)`` in float64: ``(K, D), (K, D) -> (K,)``."""
    difference = items.astype(np.float64) - queries64
    return np.einsum("kd,kd->k", difference, difference)


def _smallest_k(scores: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` entries of smallest score, ordered by (score, item).

    Args:
        scores: ``(B, M) float32``.
        items: ``(B, M) int64`` item index of each score.
        k: how many to keep; at most ``M`` are returned.

    Returns:
        ``(B, min(k, M))`` scores and items.
    """
    batch, width = scores.shape
    keep = min(k, width)
    if keep < width:
        kth = np.partition(scores, keep - 1, axis=1)[:, keep - 1 : keep]
        rows, cols = np.nonzero(scores <= kth)  # the k smallest and any ties with the k-th
    else:
        rows, cols = np.nonzero(np.ones_like(scores, dtype=bool))
    candidate_scores = scores[rows, cols]
    candidate_items = items[rows, cols]
    order = np.lexsort((candidate_items, candidate_scores, rows))
    rows = rows[order]
    row_starts = np.searchsorted(rows, np.arange(batch))
    position_in_row = np.arange(rows.size) - row_starts[rows]
    selected = order[position_in_row < keep]
    return candidate_scores[selected].reshape(batch, keep), candidate_items[selected].reshape(batch, keep)
