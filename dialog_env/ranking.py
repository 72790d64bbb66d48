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

**Any finite magnitude.** The error bound is relative, ``gamma_{D+2} (|q| + max_i |x_i|)^2``
(Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1), plus an absolute term for
products that underflow, so it holds only while nothing overflows and underflow stays
negligible. Ordinary features (largest row norm within ``[2**-40, 2**40]``) are used as they are.
Other catalogues (e.g. every feature times ``1e19``, or ``1e-30``, or subnormal values) are
multiplied, in a private float32 copy, by the power of two that brings their largest magnitude
into ``[0.5, 1)``, and queries by the same power: scaling by a power of two is exact (short of
underflow, which the absolute term covers), so every comparison, and therefore every rank, is
unchanged. A reference so far from the catalogue that its float32 scores could overflow
(``|q| + max_i |x_i| > 2**63`` after scaling) skips the float32 product and is compared with every
image in float64. So ranks and neighbours equal the float64 reference for every finite input; a
catalogue whose rows span a huge range of magnitudes (one row at ``3e38``, the others near 1) is
still exact but slow, since float32 cannot tell its small rows apart and most pairs are
rechecked (:class:`~dialog_env.catalog.Catalog` refuses features beyond
:data:`~dialog_env.catalog.MAX_ABS_FEATURE` anyway).

**Neighbours** use the same bound: the float32 scores keep every image that could be among the
``k`` nearest (within twice the bound of the ``k``-th float32 score), and those few are ordered by
their float64 reference distance, ties by the smaller index.

**Ties.** An image at exactly the target's float64 distance (a duplicate of the target, or a
tie) is not counted: only strictly closer images are. Both distances of a recheck are computed
with the same float64 expression, so duplicates of the target tie exactly.

**Speed.** The float32 products run on the faster of NumPy's and torch's BLAS on the machine,
chosen by measurement (:mod:`dialog_env.products`; never a different number). Per chunk the work
after the product is three vectorised passes (add the norms, compare with the lower and upper
bounds, count per row with a bit count), plus the float64
recheck of the handful of undecided images; at ``B = 128, N = 10,000, D = 256`` the whole rank
computation takes about 1.2-1.4x the bare product (``benchmarks/env_speed.py`` measures it).

**Rank tables** (:mod:`dialog_env.rank_table`). When the shown image is a catalogue row (an index
action), the rank of every target w.r.t. every shown image can be computed once:
:meth:`Ranker.all_target_ranks` ranks all ``N`` targets of a block of shown images with one
float64 product per block (its error bound, the same Higham bound with the float64 unit roundoff,
leaves little but exact ties and duplicates undecided on ordinary features; the float32 bound
leaves 90% of the targets of the default catalogue within reach of a neighbour), one sort per
shown image, and the float64 reference for the undecided windows. A
:class:`~dialog_env.rank_table.RankTable` attached with :meth:`Ranker.attach_rank_table` then
answers :meth:`Ranker.target_ranks` by a lookup, with the same numbers; query vectors
(:meth:`Ranker.query_target_ranks`, :meth:`Ranker.nearest`) always use the product.

**Memory.** The catalogue is processed in chunks of rows so that the temporary arrays of one
chunk (float32 scores and two bool masks, 6 bytes per reference and row: 7/8 of the budget) and
the float64 rechecks (blocks of pairs: 1/8) take at most about ``max_chunk_bytes`` (256 MiB by
default), whatever ``N`` is (features of extreme magnitude add one scaled ``(N, D)`` float32
copy, made once at construction). These scratch arrays are kept between calls (one set per
thread) so that steps do not pay page faults for fresh arrays; they are not pickled.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

from dialog_env.errors import ConfigurationError
from dialog_env.products import ProductEngine

if TYPE_CHECKING:  # a type only: rank_table imports this module
    from dialog_env.rank_table import RankTable

__all__ = ["Ranker", "rank_percentile", "feature_scale", "DEFAULT_MAX_CHUNK_BYTES"]

DEFAULT_MAX_CHUNK_BYTES = 256 * 2**20
_FLOAT32_UNIT_ROUNDOFF = float(np.finfo(np.float32).eps) / 2
_FLOAT64_UNIT_ROUNDOFF = float(np.finfo(np.float64).eps) / 2
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Largest row norms used as they are; outside, the features are scaled by a power of two.
_PLAIN_MAX_NORM = 2.0**40
_PLAIN_MIN_NORM = 2.0**-40
# |q| + max |x| (after scaling) up to which float32 scores and their bounds stay below 2**127.
_MAX_REACH = 2.0**63
# Absolute error of one float32 product that underflows is at most 2**-150 (half the smallest
# subnormal); sums of subnormals are exact. 2**-147 (D + 2) (1 + |q| + max |x|) bounds the
# underflow of the D + D products of a score, and the rounding of scaled features, queries and
# bounds into the subnormal range (each at most 2**-150 per value).
_UNDERFLOW_UNIT = 2.0**-147
# Bytes of temporaries per (reference, catalogue row) pair: the float32 score and two bool masks.
_BYTES_PER_PAIR = 4 + 1 + 1
# For nearest(): the float32 score, its folds alive at once (half and a quarter of a score, see
# _kth_smallest_upper_bound) and one bool mask.
_NEAREST_BYTES_PER_PAIR = 4 + 3 + 1
# For all_target_ranks(): float64 scores, int64 sort keys, order, scatter indices and key gaps
# (8 bytes each), the output (up to 8) and two bool masks.
_ALL_RANKS_BYTES_PER_PAIR = 6 * 8 + 2
_HAVE_BITWISE_COUNT = hasattr(np, "bitwise_count")


def _error_factor(dim: int, unit: float) -> float:
    """``gamma_{D+2} * 1.01 + 2 u``: the relative error bound of a score, times ``(|q| + max |x|)^2``.

    ``gamma_n = n u / (1 - n u)`` (Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1)
    bounds the rounding of the score ``|x|^2 - 2 q.x`` from a product of ``D`` terms and one
    addition; the 1% slack covers the float64 arithmetic of the bound itself, ``2 u`` the rounding
    of the bounds to the scores' precision.

    Args:
        dim: the feature dimension ``D``.
        unit: the unit roundoff of the scores' arithmetic (``2**-24`` for float32, ``2**-53``
            for float64).
    """
    n_terms = dim + 2
    gamma = n_terms * unit / (1.0 - n_terms * unit)
    return gamma * 1.01 + 2.0 * unit


def rank_percentile(ranks: np.ndarray | int, num_images: int) -> np.ndarray | float:
    """Rank percentile ``1 - rank / (N - 1)``: 1.0 when the target is the closest, 0.0 the farthest.

    Args:
        ranks: integer rank(s) in ``0..N-1``.
        num_images: catalogue size ``N`` (at least 2).
    """
    if num_images < 2:
        raise ConfigurationError(f"rank percentile needs at least 2 images, got {num_images}")
    return 1.0 - np.asarray(ranks, dtype=np.float64) / float(num_images - 1)


def feature_scale(features: np.ndarray, squared_norms: np.ndarray | None = None) -> float:
    """The power of two by which float32 products over ``features`` should scale them (and queries).

    ``1.0`` when the largest row norm is within ``[2**-40, 2**40]`` (ordinary features: nothing
    to do) or every feature is 0; otherwise the power of two ``s`` with ``s max|x_ij|`` in
    ``[0.5, 1)``, so that float32 squared norms and products neither overflow nor underflow.
    Multiplying by a power of two is exact, so distances scale by ``s**2`` exactly and every
    comparison between them is unchanged.

    Args:
        features: ``(N, D) float32``.
        squared_norms: their ``(N,) float32`` squared norms, if known (saves a pass).

    Raises:
        ConfigurationError: the features hold NaN or inf.
    """
    if squared_norms is None:
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            squared_norms = np.einsum("nd,nd->n", features, features, dtype=np.float32)
    top = float(np.max(squared_norms, initial=0.0))  # NaN if a feature is NaN, inf if inf or overflowed
    if _PLAIN_MIN_NORM**2 <= top <= _PLAIN_MAX_NORM**2:
        return 1.0
    if features.size == 0:
        return 1.0
    largest = max(float(features.max()), -float(features.min()))
    if not math.isfinite(largest):
        bad = np.flatnonzero(~np.isfinite(features).all(axis=1))
        raise ConfigurationError(
            f"features contain NaN or inf in {bad.size} row(s), first at row {int(bad[0])}; expected finite values"
        )
    if largest == 0.0:
        return 1.0
    _, exponent = math.frexp(largest)  # largest = m * 2**exponent with 0.5 <= m < 1
    return math.ldexp(1.0, -exponent)


class _References(NamedTuple):
    """References (queries, or shown images' features) as the float32 product sees them."""

    queries64: np.ndarray
    """``(B, D) float64``: the references as given."""
    margins: np.ndarray
    """``(B,) float64``: the bound on the float32 error of each reference's scores (scaled units)."""
    far: np.ndarray | None
    """``None``, or ``(B,) bool``: references so far out that float32 scores could overflow."""
    gemm_queries: np.ndarray
    """``(B, D) float32``: ``-2 s q`` for the product (zero for far references)."""


class _ChunkConsumer(Protocol):
    """What :meth:`Ranker._scan` feeds each chunk of scores to."""

    def consume(self, scores: np.ndarray, start: int, below: np.ndarray, within: np.ndarray) -> None: ...


class Ranker:
    """Exact ranks and k-nearest neighbours over ``(N, D) float32`` features.

    Exact for any finite features and queries (see the module docstring for how extreme
    magnitudes are handled).

    Args:
        features: ``(N, D) float32`` catalogue features, finite (not copied; keep them unchanged;
            features of extreme magnitude are also kept in a scaled private copy).
        squared_norms: optional precomputed ``(N,) float32`` squared norms (e.g.
            :attr:`Catalog.squared_norms`).
        max_chunk_bytes: bound on the temporary memory of one chunk of the catalogue.
        engine: where the float32 products run: ``"auto"`` (the faster of NumPy and torch on
            this machine, measured: :mod:`dialog_env.products`), ``"numpy"`` or ``"torch"``;
            never changes a result.

    Raises:
        ConfigurationError: features that are not ``(N, D) float32`` or hold NaN/inf, squared
            norms of the wrong shape, a non-positive ``max_chunk_bytes`` or an unknown ``engine``.
    """

    def __init__(
        self,
        features: np.ndarray,
        squared_norms: np.ndarray | None = None,
        max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
        engine: str = "auto",
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
            with np.errstate(over="ignore", under="ignore", invalid="ignore"):
                squared_norms = np.einsum("nd,nd->n", self.features, self.features, dtype=np.float32)
        self.squared_norms = np.asarray(squared_norms, dtype=np.float32)
        if self.squared_norms.shape != (self.num_images,):
            raise ConfigurationError(
                f"squared_norms must have shape ({self.num_images},), one per feature row, "
                f"got {self.squared_norms.shape}"
            )
        self.max_chunk_bytes = int(max_chunk_bytes)
        self._products = ProductEngine(engine)
        # The float32 products run on features scaled by this power of two (1.0: the features
        # themselves); the float64 rechecks always use the features as given.
        self._scale = feature_scale(self.features, self.squared_norms)
        if self._scale == 1.0:
            self._gemm_features, self._gemm_norms = self.features, self.squared_norms
        else:
            exponent = int(math.log2(self._scale))
            self._gemm_features = np.ldexp(self.features, np.int32(exponent))  # exact (float32 out)
            with np.errstate(under="ignore"):
                self._gemm_norms = np.einsum("nd,nd->n", self._gemm_features, self._gemm_features, dtype=np.float32)
        n_terms = self.dim + 2
        unit = _FLOAT32_UNIT_ROUNDOFF
        # An upper bound of the largest row norm: float32 squared norms err by gamma_D (and underflow).
        gamma_dim = self.dim * unit / (1.0 - self.dim * unit)
        top = float(self._gemm_norms.max(initial=0.0))
        self._max_norm = math.sqrt((top + n_terms * _UNDERFLOW_UNIT) / (1.0 - gamma_dim))
        # |float32 error| <= gamma_{D+2} * (|q| + |x|)^2 for the score |x|^2 - 2 q.x computed from
        # float32 norms and a float32 product, plus the underflow term (see _error_factor). The
        # target's score is computed in float64, so only the catalogue side errs.
        self._error_factor = _error_factor(self.dim, unit)
        self._underflow_error = n_terms * _UNDERFLOW_UNIT
        self._rank_table: RankTable | None = None
        self._local = threading.local()

    @property
    def num_images(self) -> int:
        """Number of catalogue images ``N``."""
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        """Feature dimension ``D``."""
        return int(self.features.shape[1])

    def chunk_rows(self, batch_size: int, bytes_per_pair: int = _BYTES_PER_PAIR) -> int:
        """Catalogue rows processed at once for ``batch_size`` references (at least 1)."""
        # 7/8 of the budget for the chunk's scores and masks, 1/8 for the float64 rechecks.
        chunk_bytes = self.max_chunk_bytes - self.max_chunk_bytes // 8
        return max(1, min(self.num_images, chunk_bytes // (bytes_per_pair * max(1, batch_size))))

    # ------------------------------------------------------------------ ranks
    def target_ranks(self, shown: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Rank of each target w.r.t. the catalogue image shown with it.

        With a rank table attached (:meth:`attach_rank_table`) the ranks are looked up in it;
        otherwise they are computed with the product. Both give the same numbers.

        Args:
            shown: ``(B,)`` integer indices of the reference images.
            targets: ``(B,)`` integer indices of the targets.

        Returns:
            ``(B,) int64`` ranks in ``0..N-1``.
        """
        shown = self._check_indices(shown, "shown")
        targets = self._check_indices(targets, "targets")
        if self._rank_table is not None:
            if shown.shape != targets.shape:
                raise ConfigurationError(
                    f"need one target per reference, got {shown.shape[0]} references and {targets.shape[0]} targets"
                )
            return self._rank_table.lookup(shown, targets)
        # Catalogue images are never far from the catalogue: no overflow check needed.
        return self._ranks(self.features[shown], targets, may_be_far=False)

    @property
    def rank_table(self) -> RankTable | None:
        """The :class:`~dialog_env.rank_table.RankTable` that :meth:`target_ranks` reads, or ``None``."""
        return self._rank_table

    def attach_rank_table(self, table: RankTable | None) -> None:
        """Answer :meth:`target_ranks` from ``table`` (``None``: from the product again).

        Only :meth:`target_ranks` reads the table; query vectors always use the product.

        Args:
            table: a rank table of these very features (e.g. from
                :func:`~dialog_env.rank_table.shared_rank_table`), or ``None``.

        Raises:
            ConfigurationError: a table of other features (compared by fingerprint).
        """
        if table is not None:
            table.check_features(self.features)
        self._rank_table = table

    def all_target_ranks(self, shown: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The rank of every catalogue image as the target, w.r.t. each of the shown images.

        Row ``b`` equals ``target_ranks(np.full(N, shown[b]), np.arange(N))`` (the same
        semantics: float64 reference distances, ties not counted, 0 for the shown image itself),
        computed without a pass per target: per block of shown images one float64 product
        ``(b, D) @ (D, N)`` for the scores ``|x|^2 - 2 s.x``, one integer sort per row, and the
        float64 reference distances of the few images whose score is too close to a target's to
        decide (ties and duplicates).

        Why it is exact: products of float32 values are exact in float64 and nothing overflows
        or underflows, so the float64 score of an image and its reference distance (module
        docstring) each differ from the exact values by at most ``E = gamma_{D+2} (|s| +
        max |x|)^2`` (:func:`_error_factor` with the float64 unit roundoff). If the scores of
        image ``i`` and target ``t`` differ by more than ``W = 4 E``, their reference distances are
        in the same order. Each row's scores are quantised to integers ``Q`` (``floor((score -
        min) * c)``, ``c`` a power of two that keeps ``Q`` below ``2**50``, so that ``Q`` is within
        1.125 of the exact ``(score - min) c``) and sorted together with the image index; ``Q_i <
        Q_t - K`` with ``K = ceil(W c) + 1`` then proves ``i`` closer than ``t``, ``Q_i > Q_t + K``
        farther. A target whose two neighbours in that order are more than ``K`` away has its
        position as its rank; for the others, the images of their windows ``[Q_t - K, Q_t + K]``
        are compared by reference distance (one :func:`_squared_distances64` per image, so
        duplicates tie exactly). Work: ``O(B N D)`` for the product and ``O(B N log N)`` for the
        sorts, however many ties there are; scratch memory about ``max_chunk_bytes`` plus a
        float64 copy of the features (``8 N D`` bytes) during the call.

        Args:
            shown: ``(B,)`` integer indices of the shown images.
            out: optional C-contiguous ``(B, N)`` integer array to write the ranks into (e.g. rows
                of a ``uint16`` rank table); its dtype must hold ``N - 1``.

        Returns:
            ``(B, N)``: entry ``[b, t]`` is the rank of target ``t`` when image ``shown[b]`` is
            shown; ``int64``, or ``out``.

        Raises:
            ConfigurationError: bad indices, or an ``out`` of the wrong shape or dtype.
        """
        shown = self._check_indices(shown, "shown")
        num_images = self.num_images
        if out is None:
            out = np.empty((shown.size, num_images), dtype=np.int64)
        elif (
            not isinstance(out, np.ndarray)
            or out.shape != (shown.size, num_images)
            or not out.flags.c_contiguous
            or not np.issubdtype(out.dtype, np.integer)
            or np.iinfo(out.dtype).max < num_images - 1
        ):
            raise ConfigurationError(
                f"out must be a C-contiguous ({shown.size}, {num_images}) integer array whose dtype holds "
                f"{num_images - 1}, got {getattr(out, 'dtype', type(out).__name__)} of shape {np.shape(out)}"
            )
        if shown.size == 0:
            return out
        features64 = self.features.astype(np.float64)
        norms64 = np.einsum("nd,nd->n", features64, features64)
        # float64 squared norms err by at most gamma_D (the products are exact): inflated, they bound |x|^2.
        unit = _FLOAT64_UNIT_ROUNDOFF
        inflate = 1.0 / (1.0 - self.dim * unit / (1.0 - self.dim * unit)) + 4.0 * unit
        largest = math.sqrt(float(norms64.max()) * inflate)
        width_factor = 4.0 * _error_factor(self.dim, unit)
        step = min(shown.size, self.all_target_ranks_rows())
        for start in range(0, shown.size, step):
            rows = shown[start : start + step]
            reach = np.sqrt(norms64[rows] * inflate) + largest
            widths = width_factor * reach * reach
            self._all_ranks_block(rows, features64, norms64, widths, out[start : start + rows.size])
        return out

    def all_target_ranks_rows(self) -> int:
        """Shown images that :meth:`all_target_ranks` ranks at once (its scratch within ``max_chunk_bytes``)."""
        return max(1, min(self.num_images, self.max_chunk_bytes // (_ALL_RANKS_BYTES_PER_PAIR * self.num_images)))

    def _all_ranks_block(
        self, rows: np.ndarray, features64: np.ndarray, norms64: np.ndarray, widths: np.ndarray, out: np.ndarray
    ) -> None:
        """:meth:`all_target_ranks` of a block of ``b`` shown images, written into ``out``.

        Args:
            rows: ``(b,) int64`` shown images.
            features64: ``(N, D) float64`` the features.
            norms64: ``(N,) float64`` their squared norms.
            widths: ``(b,) float64`` the decision window ``W`` of each shown image (score units).
            out: ``(b, N)`` integer rows to fill.
        """
        num_images = self.num_images
        index_bits = max(1, (num_images - 1).bit_length())
        # Q below 2**50 keeps the rounding of (score - min) within 1/8 of a quantum (u 2**50);
        # Q << index_bits | index must fit in an int64.
        quantum_bits = min(50, 62 - index_bits)
        queries64 = features64[rows]
        scores = np.matmul(queries64 * -2.0, features64.T)  # -2 s is exact
        scores += norms64
        lowest = scores.min(axis=1)
        spans = (scores.max(axis=1) - lowest) * (1.0 + 4.0 * _FLOAT64_UNIT_ROUNDOFF)
        _, exponents = np.frexp(spans)  # spans < 2**exponents
        scales = np.ldexp(1.0, quantum_bits - exponents)  # powers of two: multiplying by them is exact
        scores -= lowest[:, None]
        scores *= scales[:, None]
        keys = scores.astype(np.int64)  # floor, the values being >= 0
        del scores
        keys <<= index_bits
        keys |= np.arange(num_images, dtype=np.int64)
        keys.sort(axis=1)  # by quantised score, then index
        order = keys & ((1 << index_bits) - 1)
        keys >>= index_bits  # now the sorted quantised scores Q
        # Q_i < Q_t - K proves i closer than t, Q_i > Q_t + K farther (see all_target_ranks).
        quanta = np.minimum(np.ceil(widths * scales), 2.0**quantum_bits) + 1.0
        windows = quanta.astype(np.int64)[:, None]
        separated = np.diff(keys, axis=1) > windows  # (b, N - 1): positions p, p + 1 far apart
        alone = np.ones(keys.shape, dtype=np.bool_)
        alone[:, 1:] = separated
        alone[:, :-1] &= separated
        del separated
        # Decided targets: the rank is the position in score order.
        positions = np.broadcast_to(np.arange(num_images, dtype=out.dtype), keys.shape)
        flat = order + (np.arange(rows.size, dtype=np.int64) * num_images)[:, None]
        out.reshape(-1)[flat.reshape(-1)] = positions.reshape(-1)
        del flat
        for row in np.flatnonzero(~alone.all(axis=1)):
            pending = np.flatnonzero(~alone[row])
            sorted_keys = keys[row]
            window = windows[row, 0]
            # The window of each undecided target, as positions in score order: [first, stop).
            first = np.searchsorted(sorted_keys, sorted_keys[pending] - window, side="left")
            stop = np.searchsorted(sorted_keys, sorted_keys[pending] + window, side="right")
            cover = np.bincount(first, minlength=num_images + 1) - np.bincount(stop, minlength=num_images + 1)
            union = np.flatnonzero(np.cumsum(cover[:num_images]) > 0)  # positions in some window, sorted
            distances = self._reference_distances(order[row, union], queries64[row])
            own = distances[np.searchsorted(union, pending)]  # each undecided target's own distance
            # Images before a target's window are closer, those after it farther: count the closer
            # ones of the union, minus those of the union before this target's window (all closer).
            closer = np.searchsorted(np.sort(distances), own, side="left")
            out[row, order[row, pending]] = first + closer - np.searchsorted(union, first)

    def _reference_distances(self, items: np.ndarray, query64: np.ndarray) -> np.ndarray:
        """``(K,) float64`` reference distances of catalogue images ``items`` to one ``(D,)`` float64 reference."""
        distances = np.empty(items.size, dtype=np.float64)
        block = self._recheck_block()
        for begin in range(0, items.size, block):
            part = items[begin : begin + block]
            distances[begin : begin + part.size] = _squared_distances64(
                self.features[part], np.broadcast_to(query64, (part.size, query64.size))
            )
        return distances

    def query_target_ranks(self, queries: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Rank of each target w.r.t. an arbitrary query vector (e.g. an agent's query).

        Args:
            queries: ``(B, D)`` float query vectors (cast to float32), finite.
            targets: ``(B,)`` integer target indices.

        Returns:
            ``(B,) int64`` ranks in ``0..N-1``.
        """
        queries = self._check_queries(queries)
        return self._ranks(queries, self._check_indices(targets, "targets"))

    def _scaled_references(
        self, queries: np.ndarray, may_be_far: bool = True
    ) -> _References:
        """The float32 product's view of ``(B, D) float32`` references.

        ``may_be_far=False`` for catalogue rows, whose reach is at most ``2 max |s x| <= 2**41 sqrt(D)``.

        Returns:
            ``(queries64, margins, far, gemm_queries)``: the references in float64 (as given);
            the bound on the float32 error of each reference's scores (float64, scaled units);
            ``None``, or a ``(B,)`` bool mask of the references so far from the catalogue that
            float32 scores could overflow (``|s q| + max |s x| > 2**63``: compared in float64
            only); and ``-2 s q`` in float32 for the product (zero for far references).
        """
        queries64 = queries.astype(np.float64)
        scaled64 = queries64 if self._scale == 1.0 else queries64 * self._scale
        reach = np.sqrt(np.einsum("bd,bd->b", scaled64, scaled64)) + self._max_norm
        # gamma (|q| + max |x|)^2 (1.01 + 2 u / gamma) + the underflow term (module docstring).
        margins = (self._error_factor * reach + self._underflow_error) * reach + self._underflow_error
        far = None
        if may_be_far and reach.max(initial=0.0) > _MAX_REACH:  # rare: a query much farther out than the catalogue
            far = reach > _MAX_REACH
            scaled64 = np.where(far[:, None], 0.0, scaled64)
            queries = np.where(far[:, None], np.float32(0.0), queries)
        if self._scale == 1.0:
            # Scaling by -2 is exact in binary floating point, so (-2 q) @ X.T rounds exactly like
            # -2 (q @ X.T) and the error bound still holds, without a pass over the scores.
            gemm_queries = queries * np.float32(-2.0)
        else:
            with np.errstate(under="ignore"):
                gemm_queries = (scaled64 * -2.0).astype(np.float32)
        return _References(queries64, margins, far, gemm_queries)

    def _ranks(self, queries: np.ndarray, targets: np.ndarray, may_be_far: bool = True) -> np.ndarray:
        if queries.shape[0] != targets.shape[0]:
            raise ConfigurationError(
                f"need one target per reference, got {queries.shape[0]} references and {targets.shape[0]} targets"
            )
        if queries.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        references = self._scaled_references(queries, may_be_far)
        counter = _RankCounter(self, references, targets)
        self._scan(references.gemm_queries, [counter], self.chunk_rows(queries.shape[0]))
        return counter.finish()

    def _scan(self, gemm_queries: np.ndarray, consumers: Sequence[_ChunkConsumer], step: int) -> None:
        """One pass of the float32 product over the catalogue, ``step`` rows at a time.

        Each chunk's scores ``(B, size) float32`` (``-2 s q . s x + |s x|^2``, in the workspace:
        valid only during the call) go to every consumer's ``consume(scores, start, below,
        within)``, with ``start`` the chunk's first catalogue row and ``below`` / ``within`` two
        ``(B, width) bool`` scratch masks (``width``: ``step`` rounded up to a multiple of 8), so
        that several results (ranks and nearest images) share one product.
        """
        batch = gemm_queries.shape[0]
        width = -(-step // 8) * 8  # a multiple of 8, so that 8 booleans can be counted as one uint64
        scores_buffer, below, within = self._workspace(batch, step, width)
        for start in range(0, self.num_images, step):
            stop = min(start + step, self.num_images)
            size = stop - start
            # A C-contiguous output, so that matmul writes into it without a temporary copy.
            scores = scores_buffer[: batch * size].reshape(batch, size)
            self._products.matmul(gemm_queries, self._gemm_features[start:stop].T, scores)
            scores += self._gemm_norms[start:stop]
            for consumer in consumers:
                consumer.consume(scores, start, below, within)

    def _recheck_block(self) -> int:
        """Pairs rechecked in float64 at once (temporaries within an eighth of max_chunk_bytes)."""
        return max(64, self.max_chunk_bytes // (8 * 40 * self.dim))

    def _workspace(self, batch: int, rows: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scratch memory: a flat float32 buffer for ``(batch, rows)`` scores and two ``(batch, width)`` bool masks.

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
        # A rank table (N^2 bytes) is not pickled: the copy takes it from its process's shared
        # tables (built there if needed), the same numbers either way.
        table = state.pop("_rank_table", None)
        state["_rank_table_bytes"] = None if table is None else table.nbytes
        return state

    def __setstate__(self, state: dict) -> None:
        table_bytes = state.pop("_rank_table_bytes", None)
        self.__dict__.update(state)
        self.__dict__.setdefault("_products", ProductEngine())
        self._rank_table = None
        self._local = threading.local()
        if table_bytes is not None:
            from dialog_env.rank_table import DEFAULT_MAX_RANK_TABLE_BYTES, shared_rank_table  # noqa: PLC0415

            self.attach_rank_table(shared_rank_table(self, max_bytes=max(table_bytes, DEFAULT_MAX_RANK_TABLE_BYTES)))

    def target_percentiles(self, shown: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """:func:`rank_percentile` of :meth:`target_ranks`. Returns ``(B,) float64``."""
        return rank_percentile(self.target_ranks(shown, targets), self.num_images)

    # ------------------------------------------------------------------ neighbours
    def nearest(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` catalogue images nearest to each query, exact, nearest first.

        Nearest by the float64 reference distance of the module docstring; ties in distance are
        broken by the smaller index.

        Args:
            queries: ``(B, D)`` float query vectors (cast to float32), finite.
            k: number of neighbours, ``1..N``.

        Returns:
            ``(indices, squared_distances)``: ``(B, k) int64`` and ``(B, k) float32`` (the float64
            distances rounded to float32: ``inf`` where they exceed the float32 range).
        """
        queries = self._check_queries(queries)
        if not 1 <= k <= self.num_images:
            raise ConfigurationError(f"k must be in 1..{self.num_images}, got {k}")
        references = self._scaled_references(queries)
        tracker = _NearestTracker(self, references, k)
        self._scan(references.gemm_queries, [tracker], self.chunk_rows(queries.shape[0], _NEAREST_BYTES_PER_PAIR))
        return tracker.finish()

    def nearest_and_query_ranks(self, queries: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`nearest` (``k = 1``) and :meth:`query_target_ranks` of the same queries, from one product.

        What a query-action step needs (the image shown for each query, and where the target
        stands w.r.t. the query): the same numbers as the two calls, for the price of one pass
        over the catalogue.

        Args:
            queries: ``(B, D)`` float query vectors (cast to float32), finite.
            targets: ``(B,)`` integer target indices.

        Returns:
            ``(nearest_indices, ranks)``: ``(B,) int64`` each.
        """
        queries = self._check_queries(queries)
        targets = self._check_indices(targets, "targets")
        if queries.shape[0] != targets.shape[0]:
            raise ConfigurationError(
                f"need one target per query, got {queries.shape[0]} queries and {targets.shape[0]} targets"
            )
        if queries.shape[0] == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        references = self._scaled_references(queries)
        tracker = _NearestTracker(self, references, 1)
        counter = _RankCounter(self, references, targets)
        step = self.chunk_rows(queries.shape[0], max(_NEAREST_BYTES_PER_PAIR, _BYTES_PER_PAIR))
        self._scan(references.gemm_queries, [tracker, counter], step)
        return tracker.finish()[0][:, 0], counter.finish()

    # ------------------------------------------------------------------ validation
    def _check_indices(self, indices: np.ndarray, name: str) -> np.ndarray:
        indices = np.asarray(indices)
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise ConfigurationError(
                f"{name} must be a 1-D integer array, got dtype {indices.dtype}, shape {indices.shape}"
            )
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_images):
            raise ConfigurationError(f"{name} must be image indices in 0..{self.num_images - 1}, got {indices}")
        return indices.astype(np.int64, copy=False)

    def _check_queries(self, queries: np.ndarray) -> np.ndarray:
        queries = np.asarray(queries)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ConfigurationError(f"queries must have shape (B, {self.dim}), got {queries.shape}")
        if queries.dtype == np.float32:
            queries = np.ascontiguousarray(queries)
        else:
            with np.errstate(over="ignore"):  # values beyond the float32 range become inf: refused below
                queries = np.ascontiguousarray(queries, dtype=np.float32)
        if not np.isfinite(queries).all():
            raise ConfigurationError(
                f"queries contain NaN or inf (or values beyond the float32 range +-{_FLOAT32_MAX:.8g}); "
                f"expected finite values"
            )
        return queries


class _RankCounter:
    """Counts, chunk by chunk, the catalogue images strictly closer to each reference than its target.

    Images whose float32 score is within the error bound of the target's are rechecked in float64
    at the end (:meth:`finish`); the target itself is never counted.
    """

    def __init__(self, ranker: Ranker, references: _References, targets: np.ndarray) -> None:
        queries64, margins, far, _ = references
        self.ranker, self.queries64, self.targets = ranker, queries64, targets
        self.ranks = np.zeros(targets.shape[0], dtype=np.int64)
        target_features = ranker.features[targets].astype(np.float64)
        scale = ranker._scale
        if scale == 1.0:
            target_scores = np.einsum("bd,bd->b", target_features, target_features - 2.0 * queries64)
        else:
            target_features *= scale
            target_scores = np.einsum("bd,bd->b", target_features, target_features - (2.0 * scale) * queries64)
        lower = target_scores - margins
        upper = target_scores + margins
        if far is not None:  # every image of a far reference goes to the float64 recheck
            lower[far] = -np.inf
            upper[far] = np.inf
        self.lower = lower.astype(np.float32)[:, None]
        self.upper = upper.astype(np.float32)[:, None]
        self.band_rows: list[np.ndarray] = []
        self.band_items: list[np.ndarray] = []

    def consume(self, scores: np.ndarray, start: int, below: np.ndarray, within: np.ndarray) -> None:
        size, width = scores.shape[1], below.shape[1]
        if size < width:  # a short chunk: padding columns must count as False
            below[:, size:] = False
            within[:, size:] = False
        np.less(scores, self.lower, out=below[:, :size])
        np.less_equal(scores, self.upper, out=within[:, :size])
        num_below = _count_per_row(below)
        self.ranks += num_below
        if np.any(_count_per_row(within) > num_below):
            # Images whose float32 score is too close to the target's to decide: recheck them in
            # float64. ``within`` includes ``below``, so XOR leaves the band.
            np.not_equal(within, below, out=below)
            flat = np.flatnonzero(below)
            rows = flat // width
            self.band_rows.append(rows)
            self.band_items.append(flat - rows * width + start)

    def finish(self) -> np.ndarray:
        """``(B,) int64`` ranks."""
        ranks, targets, features = self.ranks, self.targets, self.ranker.features
        if self.band_rows:
            rows = np.concatenate(self.band_rows)
            items = np.concatenate(self.band_items)
            candidates = items != targets[rows]  # the target is never counted
            rows, items = rows[candidates], items[candidates]
            # Blocks of pairs keep the float64 temporaries within an eighth of max_chunk_bytes.
            block = self.ranker._recheck_block()
            for begin in range(0, rows.size, block):
                block_rows, block_items = rows[begin : begin + block], items[begin : begin + block]
                pair_queries = self.queries64[block_rows]
                # Both distances with the same expression on same-shaped arrays, so that a duplicate
                # of the target gets bit-identical distances and counts as a tie (not closer).
                item_distances = _squared_distances64(features[block_items], pair_queries)
                target_distances = _squared_distances64(features[targets[block_rows]], pair_queries)
                ranks += np.bincount(block_rows[item_distances < target_distances], minlength=ranks.size)
        return ranks


class _NearestTracker:
    """Keeps, chunk by chunk, every image that may be among each reference's ``k`` nearest.

    An image can be among the ``k`` nearest only if its float32 score is within twice the error
    bound of the ``k``-th smallest float32 score (each errs by at most one bound); the candidates
    are ordered by float64 distance at the end (:meth:`finish`), ties by the smaller index.

    Per chunk: a cheap upper bound of the chunk's ``k``-th smallest score
    (:func:`_kth_smallest_upper_bound`) and the bound so far select the few images that can
    matter, and the ``k`` smallest scores so far are updated from those alone, so that no pass
    sorts or partitions the whole chunk.
    """

    def __init__(self, ranker: Ranker, references: _References, k: int) -> None:
        queries64, margins, far, _ = references
        self.ranker, self.queries64, self.far, self.k = ranker, queries64, far, k
        batch = queries64.shape[0]
        self.slack = 2.0 * margins
        # The k smallest float32 scores so far, ascending per row (inf until k images are seen).
        self.kept = np.full((batch, k), np.inf, dtype=np.float32)
        self.bound = np.full(batch, np.inf, dtype=np.float32)
        self.found_rows: list[np.ndarray] = []
        self.found_items: list[np.ndarray] = []
        self.found_scores: list[np.ndarray] = []

    def consume(self, scores: np.ndarray, start: int, below: np.ndarray, within: np.ndarray) -> None:  # noqa: ARG002
        k, (size, width) = self.k, (scores.shape[1], within.shape[1])
        threshold = self.bound
        if size >= k:
            # Every image among the k nearest overall scores at most min(k-th so far, chunk's k-th).
            chunk_bound = _bound_above(_kth_smallest_upper_bound(scores, k), self.slack, self.far)
            threshold = np.minimum(threshold, chunk_bound)
        if size < width:  # a short chunk: padding columns must count as False
            within[:, size:] = False
        np.less_equal(scores, threshold[:, None], out=within[:, :size])
        flat = np.flatnonzero(within)  # far faster than a 2-D nonzero
        rows = flat // width
        cols = flat - rows * width
        found_scores = scores[rows, cols]  # a copy: the scores are scratch memory
        self.found_rows.append(rows)
        self.found_items.append(cols + start)
        self.found_scores.append(found_scores)
        if rows.size:
            # The k smallest so far are among the kept ones and this chunk's found ones.
            self.kept = _k_smallest_per_row(self.kept, rows, found_scores)
            self.bound = _bound_above(self.kept[:, k - 1], self.slack, self.far)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, squared_distances)``: ``(B, k) int64`` and ``(B, k) float32``, nearest first."""
        batch, k = self.queries64.shape[0], self.k
        rows = np.concatenate(self.found_rows)
        items = np.concatenate(self.found_items)
        keep = np.concatenate(self.found_scores) <= self.bound[rows]  # the final, tightest bound
        rows, items = rows[keep], items[keep]
        distances = np.empty(rows.size, dtype=np.float64)
        block = self.ranker._recheck_block()
        for begin in range(0, rows.size, block):
            part = slice(begin, begin + block)
            distances[part] = _squared_distances64(self.ranker.features[items[part]], self.queries64[rows[part]])
        order = np.lexsort((items, distances, rows))
        sorted_rows = rows[order]
        position_in_row = np.arange(sorted_rows.size) - np.searchsorted(sorted_rows, np.arange(batch))[sorted_rows]
        selected = order[position_in_row < k]
        with np.errstate(over="ignore"):
            nearest_distances = distances[selected].astype(np.float32).reshape(batch, k)
        return items[selected].reshape(batch, k), nearest_distances


def _bound_above(kth: np.ndarray, slack: np.ndarray, far: np.ndarray | None) -> np.ndarray:
    """``kth + slack`` as float32, never below the exact sum (``inf`` for far references)."""
    bound = kth.astype(np.float64) + slack
    if far is not None:
        bound[far] = np.inf
    # The slack holds 2 u (|q| + max |x|)^2 beyond the error bound, more than the rounding here.
    return bound.astype(np.float32)


def _kth_smallest_upper_bound(scores: np.ndarray, k: int, groups: int = 64) -> np.ndarray:
    """``(B,) float32``, at least the ``k``-th smallest entry of each row of ``(B, W)`` scores, ``k <= W``.

    The row is folded in halves (element-wise minima) until between ``max(groups, k)`` and twice
    that many values are left: each is the minimum of a disjoint, interleaved set of the row's
    entries, so their ``k``-th smallest has at least ``k`` entries at or below it. Interleaved
    sets keep the bound tight whatever the catalogue's order (on random scores it admits about
    ``k`` images per row); the folds cost about one pass over the chunk, a fraction of a
    partition's.
    """
    width = max(groups, k)
    folded = scores
    while folded.shape[1] >= 2 * width:
        half = folded.shape[1] // 2
        halved = np.minimum(folded[:, :half], folded[:, half : 2 * half])
        if folded.shape[1] % 2:  # the odd one out joins the first set
            np.minimum(halved[:, 0], folded[:, -1], out=halved[:, 0])
        folded = halved
    return np.partition(folded, k - 1, axis=1)[:, k - 1]


def _k_smallest_per_row(kept: np.ndarray, rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The ``k`` smallest of ``(B, k)`` kept values and the ``(M,)`` values ``scores`` of rows ``rows``.

    Returns:
        ``(B, k)`` of ``kept``'s dtype, ascending per row.
    """
    batch, k = kept.shape
    all_rows = np.concatenate([np.repeat(np.arange(batch), k), rows])
    all_scores = np.concatenate([kept.reshape(-1), scores])
    order = np.lexsort((all_scores, all_rows))
    sorted_rows = all_rows[order]
    position_in_row = np.arange(order.size) - np.searchsorted(sorted_rows, np.arange(batch))[sorted_rows]
    return all_scores[order[position_in_row < k]].reshape(batch, k)  # k per row: kept holds k each


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
