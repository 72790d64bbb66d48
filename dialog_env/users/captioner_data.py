"""The neural captioner's training data: captioned (target, reference) pairs over a catalogue split.

The relative captioner (:mod:`dialog_env.users.captioner`) learns from pairs of images of one
split and a caption that says how the target differs from the reference. Two sources:

* :func:`synthetic_pairs`: pairs drawn as shoppers compare shoes, captioned by the rule-based
  user (the default of ``train_captioner.py``, for the embedded synthetic catalogue);
* :func:`real_pairs`: Shoes-format caption files (Guo et al., 2018, section 4.1): relative
  captions, and optionally single-image captions, each paired with a few visually distant
  references (:func:`distant_references`), for which an absolute description is a fair relative
  caption.

:func:`split_by_target` then holds out every pair of a random share of the target images, so that
validation measures captions of targets never trained on.

Every random draw flows from the run's seed through :mod:`dialog_env.random_streams`: purposes
``captioner_pairs`` (the synthetic pairs and their captions) and ``captioner_distant_references``
here; the caller draws the validation split from ``captioner_validation_split``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from dialog_env.catalog import Catalog
from dialog_env.errors import ConfigurationError
from dialog_env.random_streams import stream, stream_seed
from dialog_env.ranking import Ranker
from dialog_env.synthetic import draw_pairs
from dialog_env.text import MAX_FEEDBACK_TOKENS, Vocabulary

if TYPE_CHECKING:
    from dialog_env.users.rule import RuleBasedUser

__all__ = [
    "CaptionPairs",
    "CaptionFiles",
    "synthetic_pairs",
    "distant_references",
    "real_pairs",
    "split_by_target",
]

#: Targets whose neighbours are ordered at once by :func:`distant_references` (bounds its memory:
#: about ``40 * N`` bytes per target).
_TARGETS_PER_CHUNK = 256
#: Simulated captions drawn at once by :func:`synthetic_pairs`.
_CAPTIONS_PER_CHUNK = 4096


@dataclass
class CaptionPairs:
    """Captioned (target, reference) pairs over one catalogue split.

    Attributes:
        targets: ``(M,) int64`` indices into the split of the images the captions describe.
        references: ``(M,) int64`` indices into the split of the images they are compared with.
        captions: ``M`` caption texts (also the references of BLEU).
        tokens: ``(M, max_tokens) int64`` token ids of the captions, padded with 0.
        kinds: ``(M,) int8``: 0 for a relative caption, 1 for a single-image caption paired with a
            distant reference.
    """

    targets: np.ndarray
    references: np.ndarray
    captions: list[str]
    tokens: np.ndarray
    kinds: np.ndarray

    def __len__(self) -> int:
        return int(self.targets.size)

    def subset(self, rows: np.ndarray) -> CaptionPairs:
        """The pairs at ``rows``, an ``(K,)`` integer array of positions, in that order."""
        return CaptionPairs(
            self.targets[rows],
            self.references[rows],
            [self.captions[i] for i in rows],
            self.tokens[rows],
            self.kinds[rows],
        )


class CaptionFiles(Protocol):
    """What :func:`real_pairs` reads: ``train_captioner.Args`` is one.

    Attributes:
        relative_captions: path of a relative-caption JSON file, records ``{ImageName,
            ReferenceImageName, RelativeCaption}``.
        image_captions: path of a single-image caption JSON file, records ``{ImageName,
            Caption}``, or ``None``.
        split: name of the catalogue split whose images the pairs compare.
        distant_references: references paired with each single-image caption (>= 1).
        min_word_count: words seen fewer times become the unknown word.
    """

    relative_captions: str | None
    image_captions: str | None
    split: str
    distant_references: int
    min_word_count: int


def synthetic_pairs(catalog: Catalog, num_pairs: int, seed: int, user: RuleBasedUser) -> CaptionPairs:
    """Pairs drawn as shoppers compare shoes (93% same category), captioned by the rule-based user.

    The pairs and the caption generators come from the stream ``captioner_pairs`` of ``seed``
    (spawned in two). Each pair has a generator of its own, so the captions do not depend on how
    they are batched.

    Args:
        catalog: the split's catalogue view; it needs a ``category`` attribute.
        num_pairs: number of pairs ``M``.
        seed: the run's seed.
        user: the captioning user; its vocabulary encodes the tokens.

    Returns:
        ``M`` pairs of kind 0, tokens of :data:`~dialog_env.text.MAX_FEEDBACK_TOKENS` ids.
    """
    pair_rng, caption_seed = (np.random.default_rng(s) for s in stream_seed(seed, "captioner_pairs").spawn(2))
    targets, references = draw_pairs(catalog, num_pairs, pair_rng)
    captions: list[str] = []
    caption_seeds = caption_seed.integers(2**63, size=num_pairs)
    for start in range(0, num_pairs, _CAPTIONS_PER_CHUNK):
        part = slice(start, start + _CAPTIONS_PER_CHUNK)
        rngs = [np.random.default_rng(int(s)) for s in caption_seeds[part]]
        captions.extend(user.describe(catalog, targets[part], references[part], rngs))
    tokens = user.vocabulary.encode_batch(captions, MAX_FEEDBACK_TOKENS)
    kinds = np.zeros(num_pairs, dtype=np.int8)
    return CaptionPairs(targets.astype(np.int64), references.astype(np.int64), captions, tokens, kinds)


def distant_references(catalog: Catalog, targets: np.ndarray, per_target: int, rng: np.random.Generator) -> np.ndarray:
    """For each target, ``per_target`` references drawn uniformly from the farther half of the split.

    The paper pairs single-image captions ("black strappy high heels") with visually distant
    reference images, for which an absolute description is a fair relative caption. The farther
    half of a target are the images strictly farther from it than the median distance, in the
    squared L2 distance of :class:`~dialog_env.ranking.Ranker` (exact: float64 arithmetic on the
    float32 features, so images closer together than float32 can tell apart are still ordered).
    If there is none (every image at one distance), any image but the target will do. For each
    target in turn, ``rng.integers(K, size=per_target)`` picks among the ``K`` candidates in index
    order.

    Args:
        catalog: the split's catalogue view, ``N`` images.
        targets: ``(T,)`` integer indices into ``catalog``.
        per_target: references per target, ``R``.
        rng: the generator of the draws (``train_captioner.py``: the stream
            ``captioner_distant_references``).

    Returns:
        ``(T, R) int64`` indices into ``catalog``; never the target itself.
    """
    targets = np.asarray(targets, dtype=np.int64)
    ranker = Ranker(catalog.features, catalog.squared_norms)
    num_images = ranker.num_images
    # The near half (the median image and every closer one), plus one image to tell whether the
    # next one ties the median.
    known = min(num_images, (num_images + 1) // 2 + 1)
    out = np.empty((targets.size, per_target), dtype=np.int64)
    for start in range(0, targets.size, _TARGETS_PER_CHUNK):
        rows = targets[start : start + _TARGETS_PER_CHUNK]
        order, distances = ranker.nearest(catalog.features[rows], k=known)
        for offset, target in enumerate(rows):
            far = _farther_than_median(ranker, int(target), order[offset], distances[offset])
            if far.size == 0:
                far = np.flatnonzero(np.arange(num_images) != target)
            out[start + offset] = far[rng.integers(far.size, size=per_target)]
    return out


def _farther_than_median(ranker: Ranker, target: int, order: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """The images strictly farther from ``target`` than the median distance, in index order.

    With the ``N`` exact distances sorted, ``v_0 <= ... <= v_{N-1}``, and ``h = ceil(N / 2)``, an
    image is farther than the median exactly when it is farther than ``v_{h-1}``, the distance of
    the *pivot* (for odd ``N`` that is the median; for even ``N`` the median lies between ``v_{h-1}``
    and ``v_h``, or equals both). So the farther half is every image after the pivot in the exact
    nearest-first order, except those at exactly the pivot's distance. Exact ties have equal
    float32 ``distances``; those few candidates are confirmed with exact ranks (an image tied with
    the pivot has the pivot's rank, a farther one more: the pivot counts).

    Args:
        ranker: the ranker of the split, ``N`` images.
        target: index of the target.
        order: ``(K,) int64`` the ``K > h - 1`` images nearest to ``target``, nearest first, ties by
            index (:meth:`Ranker.nearest <dialog_env.ranking.Ranker.nearest>`).
        distances: ``(K,) float32`` their squared distances (the float64 ones rounded).

    Returns:
        ``(F,) int64`` sorted image indices.
    """
    num_images = ranker.num_images
    pivot = (num_images + 1) // 2 - 1
    equal = int(np.searchsorted(distances[pivot + 1 :], distances[pivot], side="right"))
    if pivot + 1 + equal == order.size < num_images:
        # Every known image after the pivot looks like a tie in float32: order them all (rare).
        order, distances = (row[0] for row in ranker.nearest(ranker.features[target : target + 1], k=num_images))
        equal = int(np.searchsorted(distances[pivot + 1 :], distances[pivot], side="right"))
    far = np.ones(num_images, dtype=bool)
    far[order[: pivot + 1]] = False
    if equal:
        candidates = order[pivot : pivot + 1 + equal]  # the pivot first
        ranks = ranker.target_ranks(np.full(candidates.size, target), candidates)
        far[candidates[1:][ranks[1:] == ranks[0]]] = False
    return np.flatnonzero(far)


def real_pairs(
    files: CaptionFiles, full: Catalog, catalog: Catalog, seed: int
) -> tuple[CaptionPairs, Vocabulary, dict[str, Any]]:
    """Pairs from Shoes-format caption files, with a vocabulary of the words seen often enough.

    Pairs with an image outside the split are left out (and counted). Each single-image caption
    is repeated ``files.distant_references`` times, with references from
    :func:`distant_references` drawn with the stream ``captioner_distant_references`` of ``seed``.
    Prints the loaders' summaries.

    Args:
        files: the caption files and settings (see :class:`CaptionFiles`).
        full: the whole catalogue, whose ids the files name.
        catalog: its view of split ``files.split``.
        seed: the run's seed.

    Returns:
        ``(pairs, vocabulary, counts)``: the relative pairs (kind 0) then the single-image ones
        (kind 1); the vocabulary of the words seen ``files.min_word_count`` times; record counts
        (``relative_records``, ``relative_missing_images``, ``relative_outside_split``,
        ``relative_pairs``, and with single-image captions ``image_records``,
        ``image_missing_images``, ``image_outside_split``, ``image_pairs``).

    Raises:
        ConfigurationError: no relative-caption file, or no pair with both images in the split.
        CaptionFormatError: a caption file that cannot be read (see :mod:`dialog_env.data.captions`).
    """
    from dialog_env.data.captions import load_image_captions, load_relative_captions

    if not files.relative_captions:
        raise ConfigurationError("real caption pairs need a relative-caption file (--relative-captions)")
    split_rows = full.splits[files.split]
    to_split = np.full(full.num_images, -1, dtype=np.int64)
    to_split[split_rows] = np.arange(split_rows.size)
    relative = load_relative_captions(files.relative_captions, full)
    print(relative.summary(), flush=True)
    targets, references = to_split[relative.targets], to_split[relative.references]
    keep = (targets >= 0) & (references >= 0)
    captions = [c for c, k in zip(relative.captions, keep, strict=True) if k]
    targets, references = targets[keep], references[keep]
    kinds = np.zeros(targets.size, dtype=np.int8)
    counts: dict[str, Any] = {
        "relative_records": relative.total_records,
        "relative_missing_images": relative.missing_images,
        "relative_outside_split": int((~keep).sum()),
        "relative_pairs": int(keep.sum()),
    }
    if files.image_captions:
        single = load_image_captions(files.image_captions, full)
        print(single.summary(), flush=True)
        image_targets = to_split[single.targets]
        inside = image_targets >= 0
        image_targets = image_targets[inside]
        image_captions = [c for c, k in zip(single.captions, inside, strict=True) if k]
        per_target = files.distant_references
        refs = distant_references(catalog, image_targets, per_target, stream(seed, "captioner_distant_references"))
        targets = np.concatenate([targets, np.repeat(image_targets, per_target)])
        references = np.concatenate([references, refs.reshape(-1)])
        captions += [c for c in image_captions for _ in range(per_target)]
        kinds = np.concatenate([kinds, np.ones(refs.size, dtype=np.int8)])
        counts.update(
            image_records=single.total_records,
            image_missing_images=single.missing_images,
            image_outside_split=int((~inside).sum()),
            image_pairs=int(refs.size),
        )
    if targets.size == 0:
        raise ConfigurationError(f"no caption pair has both images in split {files.split!r} of catalogue {full.name!r}")
    vocabulary = Vocabulary.from_texts(captions, min_count=files.min_word_count)
    tokens = vocabulary.encode_batch(captions, MAX_FEEDBACK_TOKENS)
    return CaptionPairs(targets, references, captions, tokens, kinds), vocabulary, counts


def split_by_target(
    pairs: CaptionPairs, num_images: int, val_fraction: float, rng: np.random.Generator
) -> tuple[CaptionPairs, CaptionPairs]:
    """Hold out the pairs of a random ``val_fraction`` of the target images.

    Args:
        pairs: all pairs over a split of ``num_images`` images.
        num_images: size of the split.
        val_fraction: share of the split's images held out as validation targets, in ``(0, 1)``
            (at least one image).
        rng: the generator of the held-out images (``train_captioner.py``: the stream
            ``captioner_validation_split``).

    Returns:
        ``(train, validation)``, each in the order of ``pairs``.

    Raises:
        ConfigurationError: the split leaves no training or no validation pair.
    """
    held_out = np.zeros(num_images, dtype=bool)
    held_out[rng.choice(num_images, size=max(1, round(val_fraction * num_images)), replace=False)] = True
    is_val = held_out[pairs.targets]
    if is_val.all() or not is_val.any():
        raise ConfigurationError(
            f"holding out {val_fraction:.0%} of the target images leaves {int((~is_val).sum())} training and "
            f"{int(is_val.sum())} validation pairs; use more pairs or another --val-fraction"
        )
    return pairs.subset(np.flatnonzero(~is_val)), pairs.subset(np.flatnonzero(is_val))
