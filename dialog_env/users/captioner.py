"""The paper's user model: a neural relative captioner, and the user simulator built on it.

Guo et al. (2018, section 3.2) simulate the shopper with a *relative captioner*: a network that
looks at the target and the shown (reference) image and says how the target differs, trained on
real shoppers' relative captions. This module is our own implementation of that idea:

* an encoder over the target's and the reference's global features and their difference,
  ``[t, r, t - r]``, which initialises the decoder and gives it a context vector;
* when the catalogue provides spatial features (``(N, L, C)``, e.g. ResNet's 7 x 7 grid), additive
  attention over the ``L`` locations of ``[t_l, r_l, t_l - r_l]``, recomputed at every word
  ("show, attend and tell"); without them, the fixed pair context ("show and tell");
* an LSTM decoder over the words of a :class:`~dialog_env.text.Vocabulary`, whose padding id 0
  doubles as the end-of-caption token; the unknown-word id is never generated.

Decoding is greedy (deterministic) by default, or samples words with the dialogs' own generators
(``decoding="sample"``), one uniform number per word position per dialog, so a batch behaves like
its dialogs played one at a time. Each word position is one batched decoder step over the captions
not yet ended. ``train_captioner.py`` trains it on the pairs of
:mod:`dialog_env.users.captioner_data` with the training functions here (:func:`train_epoch`:
teacher-forced cross-entropy; :func:`mean_token_loss`: held-out validation, which selects the best
checkpoint; :func:`caption_pairs`: greedy captions for BLEU); :class:`CaptionerUser` plugs a
checkpoint into the environments as ``user="captioner"``.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dialog_env.catalog import Catalog
from dialog_env.errors import ConfigurationError, UserSimulatorError
from dialog_env.io import atomic_torch_save
from dialog_env.text import MAX_FEEDBACK_TOKENS, PAD_ID, UNK_ID, Vocabulary
from dialog_env.torch_utils import plain, read_tagged_torch_file, resolve_device
from dialog_env.users.base import UserSimulator

if TYPE_CHECKING:
    from dialog_env.users.captioner_data import CaptionPairs

__all__ = [
    "CAPTIONER_FORMAT",
    "CAPTIONER_VERSION",
    "MIN_DECODE_ROWS",
    "CaptionerConfig",
    "RelativeCaptioner",
    "CaptionerUser",
    "batch_tensors",
    "train_epoch",
    "mean_token_loss",
    "caption_pairs",
    "catalog_probe",
    "save_captioner",
    "load_captioner_checkpoint",
]

CAPTIONER_FORMAT = "dialog-env-captioner"
CAPTIONER_VERSION = 1
END_ID = PAD_ID  # the padding id ends a caption: captions hold no padding inside
DECODINGS = ("greedy", "sample")
#: Fewest rows a decoding step keeps in its batch (ended captions fill up the rest). MKL's float32
#: matrix product takes another path for small row counts, whose sums round differently: 1-3 rows
#: on an AMD EPYC (AVX2), 1-15 rows on an Intel Xeon (measured with tests/test_captioner.py's
#: check at every size); keeping 16 rows whenever the batch has them makes each caption, on one torch
#: thread, the same as when every row is stepped at every position (issue 17;
#: tests/test_captioner.py checks it). With several threads MKL splits rows by batch size, so a
#: caption may rarely differ from that; decoding stays deterministic for a given thread count.
MIN_DECODE_ROWS = 16


@dataclass(frozen=True)
class CaptionerConfig:
    """Sizes of the relative captioner.

    Attributes:
        image_dim: catalogue feature dimension ``D``.
        vocab_size: token ids of the vocabulary (reserved padding/end and unknown ids included).
        spatial_shape: ``(L, C)`` of the catalogue's spatial features to attend over, or ``None``
            for no attention.
        embed_dim: word-embedding dimension.
        hidden_dim: LSTM state and context dimension ``H``.
        attention_dim: hidden size of the additive attention.
        dropout: dropout on the word embeddings and before the output layer (training only).
        max_tokens: longest caption generated, in words (the environment's feedback length).
    """

    image_dim: int
    vocab_size: int
    spatial_shape: tuple[int, int] | None = None
    embed_dim: int = 256
    hidden_dim: int = 512
    attention_dim: int = 256
    dropout: float = 0.2
    max_tokens: int = MAX_FEEDBACK_TOKENS

    def __post_init__(self) -> None:
        for name in ("image_dim", "vocab_size", "embed_dim", "hidden_dim", "attention_dim", "max_tokens"):
            if int(getattr(self, name)) < 1:
                raise ConfigurationError(f"CaptionerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.vocab_size < 3:
            raise ConfigurationError(
                f"CaptionerConfig.vocab_size must be >= 3 (two reserved ids and a word), got {self.vocab_size}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigurationError(f"CaptionerConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.spatial_shape is not None:
            shape = tuple(int(v) for v in self.spatial_shape)
            if len(shape) != 2 or min(shape) < 1:
                raise ConfigurationError(
                    f"CaptionerConfig.spatial_shape must be (L, C) with L, C >= 1, got {self.spatial_shape}"
                )
            object.__setattr__(self, "spatial_shape", shape)

    @property
    def attends(self) -> bool:
        """Whether the model attends over spatial features."""
        return self.spatial_shape is not None


class RelativeCaptioner(nn.Module):
    """Encoder over a (target, reference) pair and an LSTM decoder of the relative caption.

    Args:
        config: the sizes (see :class:`CaptionerConfig`).
    """

    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_dim
        self.pair_encoder = nn.Sequential(
            nn.LayerNorm(3 * config.image_dim), nn.Linear(3 * config.image_dim, hidden), nn.Tanh()
        )
        self.initial_hidden = nn.Linear(hidden, hidden)
        self.initial_cell = nn.Linear(hidden, hidden)
        self.word_embedding = nn.Embedding(config.vocab_size, config.embed_dim)
        self.start_embedding = nn.Parameter(torch.zeros(config.embed_dim))
        if config.attends:
            _, channels = config.spatial_shape  # type: ignore[misc]
            self.region_encoder = nn.Sequential(nn.LayerNorm(3 * channels), nn.Linear(3 * channels, hidden), nn.Tanh())
            self.attention_keys = nn.Linear(hidden, config.attention_dim, bias=False)
            self.attention_query = nn.Linear(hidden, config.attention_dim)
            self.attention_score = nn.Linear(config.attention_dim, 1, bias=False)
        self.decoder = nn.LSTMCell(config.embed_dim + hidden, hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(2 * hidden, config.vocab_size)

    # ------------------------------------------------------------------ pieces
    def encode(
        self,
        targets: torch.Tensor,
        references: torch.Tensor,
        target_regions: torch.Tensor | None = None,
        reference_regions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor | None, torch.Tensor | None]:
        """Encode a batch of pairs.

        Args:
            targets: ``(B, D) float32`` global features of the targets.
            references: ``(B, D) float32`` global features of the references (shown images).
            target_regions: ``(B, L, C) float32`` spatial features of the targets (attention only).
            reference_regions: ``(B, L, C) float32`` spatial features of the references (attention only).

        Returns:
            ``(context, (h0, c0), regions, keys)``: the pair context ``(B, H)``, the initial LSTM
            state, and for attention the encoded regions ``(B, L, H)`` and their keys ``(B, L, A)``
            (``None`` without attention).
        """
        context = self.pair_encoder(torch.cat([targets, references, targets - references], dim=1))
        state = (torch.tanh(self.initial_hidden(context)), torch.tanh(self.initial_cell(context)))
        regions = keys = None
        if self.config.attends:
            if target_regions is None or reference_regions is None:
                raise UserSimulatorError("this captioner attends over spatial features, but none were given")
            regions = self.region_encoder(
                torch.cat([target_regions, reference_regions, target_regions - reference_regions], dim=2)
            )
            keys = self.attention_keys(regions)
        return context, state, regions, keys

    def _step(
        self,
        word_input: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        context: torch.Tensor,
        regions: torch.Tensor | None,
        keys: torch.Tensor | None,
        places: torch.Tensor | None = None,
        energies: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One decoder step: attend with the previous state, update the LSTM, score the next word.

        Args:
            word_input: ``(B', E) float32`` embeddings of the previous words.
            state: the LSTM state, two ``(B', H) float32``.
            context: ``(B', H) float32`` pair contexts.
            regions: ``(B', L, H) float32`` encoded regions from :meth:`encode` (attention only, else ``None``).
            keys: ``(B', L, A) float32`` their attention keys (attention only, else ``None``).
            places: with attention, when the ``B'`` rows are some of the ``B`` rows decoding began
                with: ``(B',) int64`` their places among those ``B`` (``None``: all of them, in order).
            energies: with ``places``: a ``(B, L, A) float32`` buffer for the attention energies.

        Returns:
            ``(logits (B', V), (hidden, cell))``.
        """
        if regions is not None and keys is not None:
            energy = torch.tanh(keys + self.attention_query(state[0]).unsqueeze(1))
            if places is None or energies is None:
                scores = self.attention_score(energy).squeeze(2)
            else:
                # The (B * L, A) x (A, 1) product of the scores rounds a location's sum by its place in
                # the matrix (MKL's matrix-vector path): score each row at its place among all B rows.
                whole = self.attention_score(energies.index_copy_(0, places, energy)).squeeze(2)
                scores = whole.index_select(0, places)
            context = torch.einsum("bl,blh->bh", torch.softmax(scores, dim=1), regions)
        hidden, cell = self.decoder(torch.cat([self.dropout(word_input), context], dim=1), state)
        logits = self.output(self.dropout(torch.cat([hidden, context], dim=1)))
        return logits, (hidden, cell)

    # ------------------------------------------------------------------ training
    def forward(
        self,
        targets: torch.Tensor,
        references: torch.Tensor,
        captions: torch.Tensor,
        target_regions: torch.Tensor | None = None,
        reference_regions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Teacher-forced next-word logits.

        Args:
            targets: ``(B, D) float32`` features of the targets.
            references: ``(B, D) float32`` features of the references.
            captions: ``(B, T) int64`` token ids padded with 0 (no padding inside a caption).
            target_regions: ``(B, L, C) float32`` spatial features of the targets (attention only).
            reference_regions: ``(B, L, C) float32`` spatial features of the references (attention only).

        Returns:
            ``(B, T + 1, V)`` logits: position ``s`` predicts word ``s`` of the caption, and the
            position after the last word predicts the end id 0.
        """
        context, state, regions, keys = self.encode(targets, references, target_regions, reference_regions)
        batch, length = captions.shape
        inputs = torch.cat([self.start_embedding.expand(batch, 1, -1), self.word_embedding(captions)], dim=1)
        logits = []
        for position in range(length + 1):
            step_logits, state = self._step(inputs[:, position], state, context, regions, keys)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)

    @staticmethod
    def loss(logits: torch.Tensor, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy over every word and the end token, and the number of tokens scored.

        Args:
            logits: ``(B, T + 1, V)`` from :meth:`forward`.
            captions: ``(B, T) int64`` padded captions.

        Returns:
            ``(summed loss, token count)``, both scalars (divide for the mean per token).
        """
        batch = captions.shape[0]
        targets = torch.cat(
            [captions, torch.full((batch, 1), END_ID, dtype=captions.dtype, device=captions.device)], dim=1
        )
        lengths = (captions != PAD_ID).sum(dim=1)
        scored = torch.arange(targets.shape[1], device=captions.device).unsqueeze(0) <= lengths.unsqueeze(1)
        losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
        return (losses * scored.reshape(-1)).sum(), scored.sum()

    # ------------------------------------------------------------------ decoding
    @torch.inference_mode()
    def generate(
        self,
        targets: torch.Tensor,
        references: torch.Tensor,
        target_regions: torch.Tensor | None = None,
        reference_regions: torch.Tensor | None = None,
        uniforms: np.ndarray | None = None,
        temperature: float = 1.0,
    ) -> np.ndarray:
        """Decode captions word by word, one batched decoder step per word position.

        Only the captions still being written are stepped: a caption that has ended leaves the
        batch (issue 17), and decoding stops when every caption has ended or after ``max_tokens``
        words. On one torch thread the captions are those of stepping every row at every position:
        each row's numbers do not depend on which other rows share its batch (see
        :data:`MIN_DECODE_ROWS`, which also says what changes with several threads).

        Args:
            targets: ``(B, D) float32`` features of the targets.
            references: ``(B, D) float32`` features of the references.
            target_regions: ``(B, L, C) float32`` spatial features of the targets (attention only).
            reference_regions: ``(B, L, C) float32`` spatial features of the references (attention only).
            uniforms: ``None`` for greedy decoding (the most likely word each time), or
                ``(B, S) float64`` numbers in ``[0, 1)`` with ``S >= max_tokens``: word ``s`` of
                dialog ``b`` is drawn by inverting the cumulative distribution at ``uniforms[b, s]``.
            temperature: softmax temperature of sampling (> 0).

        Returns:
            ``(B, max_tokens) int64`` token ids, padded with 0. Never empty, never the unknown id.
        """
        was_training = self.training
        self.eval()
        try:
            context, state, regions, keys = self.encode(targets, references, target_regions, reference_regions)
            return self._decode(context, state, regions, keys, uniforms, temperature)
        finally:
            self.train(was_training)

    def _decode(
        self,
        context: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        regions: torch.Tensor | None,
        keys: torch.Tensor | None,
        uniforms: np.ndarray | None,
        temperature: float,
    ) -> np.ndarray:
        """The decoding loop of :meth:`generate`, from the output of :meth:`encode` (``B`` rows)."""
        batch, max_tokens = context.shape[0], self.config.max_tokens
        device = context.device
        out = np.zeros((batch, max_tokens), dtype=np.int64)
        # Masks added to the logits: the unknown id is never said, and position 0 cannot end the caption.
        banned = torch.zeros((2, self.config.vocab_size), device=device)
        banned[:, UNK_ID] = -torch.inf
        banned[0, END_ID] = -torch.inf
        keep_rows = min(batch, MIN_DECODE_ROWS)
        rows = np.arange(batch)  # the row of `out` that each stepped row writes
        ended = np.zeros(batch, dtype=bool)  # stepped rows kept only to fill MIN_DECODE_ROWS
        word_input = self.start_embedding.expand(batch, -1)
        places = energies = None  # set once rows have left (attention only)
        for position in range(max_tokens):
            logits, state = self._step(word_input, state, context, regions, keys, places, energies)
            logits = logits + banned[min(position, 1)]
            if uniforms is None:
                words = logits.argmax(dim=1).cpu().numpy()
            else:
                words = _inverse_cdf(logits.double(), uniforms[rows, position], temperature)
            words[ended] = END_ID
            out[rows, position] = words
            ended |= words == END_ID
            if ended.all():
                break
            if ended.any():  # drop the ended rows, but keep at least `keep_rows` rows in the batch
                keep = ~ended
                short = keep_rows - int(keep.sum())
                if short > 0:
                    keep[np.flatnonzero(ended)[:short]] = True
                if not keep.all():
                    index = torch.from_numpy(np.flatnonzero(keep)).to(device)
                    rows, ended, words = rows[keep], ended[keep], words[keep]
                    state = (state[0].index_select(0, index), state[1].index_select(0, index))
                    context = context.index_select(0, index)
                    if regions is not None and keys is not None:
                        regions, keys = regions.index_select(0, index), keys.index_select(0, index)
                        places = torch.from_numpy(rows).to(device)
                        if energies is None:
                            energies = torch.zeros((batch, *keys.shape[1:]), dtype=keys.dtype, device=device)
            word_input = self.word_embedding(torch.from_numpy(words).to(device))
        return out


def _inverse_cdf(logits: torch.Tensor, uniforms: np.ndarray, temperature: float) -> np.ndarray:
    """Words drawn by inverting each row's cumulative softmax at its uniform number.

    Args:
        logits: ``(B, V) float64`` next-word logits (``-inf`` for words that cannot be said).
        uniforms: ``(B,) float64`` numbers in ``[0, 1)``.
        temperature: softmax temperature (> 0).

    Returns:
        ``(B,) int64`` token ids.
    """
    probabilities = torch.softmax(logits / temperature, dim=1).cpu().numpy()
    cumulative = np.cumsum(probabilities, axis=1)
    thresholds = uniforms * cumulative[:, -1]
    words = (cumulative <= thresholds[:, None]).sum(axis=1)
    return np.minimum(words, probabilities.shape[1] - 1)


# ---------------------------------------------------------------------------- training
def batch_tensors(
    catalog: Catalog, pairs: CaptionPairs, rows: np.ndarray, attends: bool, device: torch.device
) -> list[torch.Tensor]:
    """The model's inputs for some pairs, on ``device``.

    Args:
        catalog: the split the pairs index.
        pairs: the caption pairs.
        rows: ``(B,)`` integer positions in ``pairs``.
        attends: also return the spatial features of the targets and references.
        device: where the tensors go.

    Returns:
        ``[targets (B, D) float32, references (B, D) float32, tokens (B, T) int64]``, then with
        ``attends`` ``target regions, reference regions``, each ``(B, L, C)``.
    """
    targets, references = pairs.targets[rows], pairs.references[rows]
    tensors = [
        torch.as_tensor(catalog.features[targets]),
        torch.as_tensor(catalog.features[references]),
        torch.as_tensor(pairs.tokens[rows]),
    ]
    if attends:
        spatial = catalog.spatial_features
        tensors += [torch.as_tensor(spatial.take(targets)), torch.as_tensor(spatial.take(references))]
    return [t.to(device) for t in tensors]


def train_epoch(
    model: RelativeCaptioner,
    optimizer: torch.optim.Optimizer,
    catalog: Catalog,
    pairs: CaptionPairs,
    order: np.ndarray,
    batch_size: int,
    device: torch.device,
    *,
    max_grad_norm: float = 5.0,
    progress: bool = False,
    description: str = "training",
) -> float:
    """One teacher-forced pass over ``pairs``: one optimiser step per batch, in train mode.

    Each batch's loss is the mean cross-entropy per scored token (words and end tokens); the
    gradient norm is clipped to ``max_grad_norm`` before the step.

    Args:
        model: the captioner, on ``device``.
        optimizer: the optimiser of its parameters.
        catalog: the split the pairs index.
        pairs: the training pairs.
        order: ``(M,)`` positions in ``pairs``, in the order they are visited (batches are
            consecutive slices of ``batch_size``).
        batch_size: pairs per optimiser step.
        device: the model's device.
        max_grad_norm: bound on the gradient's L2 norm.
        progress: show a progress bar (tqdm, on stdout).
        description: the progress bar's label.

    Returns:
        The mean training loss per token over the pass, in nats.
    """
    from tqdm import tqdm

    model.train()
    bar = tqdm(total=len(order), desc=description, disable=not progress, mininterval=2.0, file=sys.stdout, unit="pair")
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        targets, references, tokens, *regions = batch_tensors(catalog, pairs, rows, model.config.attends, device)
        loss, scored = model.loss(model(targets, references, tokens, *regions), tokens)
        optimizer.zero_grad(set_to_none=True)
        (loss / scored).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        total, count = total + loss.item(), count + int(scored)
        bar.update(rows.size)
        bar.set_postfix(loss=f"{total / count:.3f}", refresh=False)
    bar.close()
    return total / count


def mean_token_loss(
    model: RelativeCaptioner, catalog: Catalog, pairs: CaptionPairs, batch_size: int, device: torch.device
) -> float:
    """Teacher-forced cross-entropy per token (words and end tokens) over ``pairs``, in eval mode.

    Args:
        model: the captioner, on ``device``.
        catalog: the split the pairs index.
        pairs: the pairs to score.
        batch_size: pairs scored at once.
        device: the model's device.

    Returns:
        The mean loss per token, in nats (0.0 for no pairs).
    """
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(pairs), batch_size):
            rows = np.arange(start, min(start + batch_size, len(pairs)))
            targets, references, tokens, *regions = batch_tensors(catalog, pairs, rows, model.config.attends, device)
            loss, scored = model.loss(model(targets, references, tokens, *regions), tokens)
            total, count = total + loss.item(), count + int(scored)
    return total / max(count, 1)


def caption_pairs(
    model: RelativeCaptioner,
    catalog: Catalog,
    pairs: CaptionPairs,
    vocabulary: Vocabulary,
    device: torch.device,
    batch_size: int = 512,
) -> list[str]:
    """Greedy captions of ``pairs`` (e.g. the hypotheses of BLEU).

    Args:
        model: the captioner, on ``device``.
        catalog: the split the pairs index.
        pairs: the pairs to caption.
        vocabulary: the model's vocabulary.
        device: the model's device.
        batch_size: pairs captioned at once.

    Returns:
        One caption text per pair, in order.
    """
    out: list[str] = []
    for start in range(0, len(pairs), batch_size):
        rows = np.arange(start, min(start + batch_size, len(pairs)))
        targets, references, _, *regions = batch_tensors(catalog, pairs, rows, model.config.attends, device)
        out.extend(vocabulary.decode_batch(model.generate(targets, references, *regions)))
    return out


# ---------------------------------------------------------------------------- checkpoints
def catalog_probe(catalog: Catalog, size: int = 64, seed: int = 0) -> dict[str, Any]:
    """A small fingerprint of a catalogue's feature space: some image ids and their features.

    A captioner only makes sense on the features it was trained on; :class:`CaptionerUser` checks
    that the images of the probe found in a catalogue have the same features.

    Returns:
        ``{"name", "dim", "ids": list[str], "features": (k, D) float32}`` with ``k = min(size, N)``.
    """
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(catalog.num_images, size=min(size, catalog.num_images), replace=False))
    return {
        "name": catalog.name,
        "dim": catalog.dim,
        "ids": [str(i) for i in catalog.ids[chosen]],
        "features": np.array(catalog.features[chosen], dtype=np.float32),
    }


def save_captioner(
    path: str | os.PathLike[str],
    model: RelativeCaptioner,
    vocabulary: Vocabulary,
    catalog: Catalog,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a captioner checkpoint atomically (temporary file, flush, rename).

    The file holds the format tag and version, the config, the weights, the vocabulary, a
    :func:`catalog_probe` of the training catalogue and ``extra`` (training metrics, arguments...).
    """
    payload = {
        "format": CAPTIONER_FORMAT,
        "version": CAPTIONER_VERSION,
        "config": asdict(model.config),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "vocabulary": vocabulary.words,
        "catalog": _probe_to_file(catalog_probe(catalog)),
        **plain(extra or {}),
    }
    return atomic_torch_save(path, payload)


def _probe_to_file(probe: dict[str, Any]) -> dict[str, Any]:
    """A probe as the checkpoint stores it: features as a tensor (``weights_only`` loads no NumPy)."""
    return {
        **probe,
        "ids": [str(i) for i in probe["ids"]],
        "features": torch.from_numpy(np.asarray(probe["features"], dtype=np.float32)),
    }


def _probe_from_file(probe: Any, where: str) -> dict[str, Any]:
    """The probe of a loaded checkpoint, checked, with features back as a ``(k, D) float32`` array."""
    if not isinstance(probe, dict) or not {"name", "dim", "ids", "features"} <= set(probe):
        raise UserSimulatorError(f"{where}: 'catalog' must be a probe with keys name, dim, ids, features")
    features, ids = probe["features"], probe["ids"]
    if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.dtype != torch.float32:
        raise UserSimulatorError(
            f"{where}: the probe's features must be a 2-D float32 tensor, got {type(features).__name__}"
        )
    if not isinstance(ids, list) or len(ids) != features.shape[0] or not all(isinstance(i, str) for i in ids):
        raise UserSimulatorError(f"{where}: the probe's ids must be {features.shape[0]} strings, one per feature row")
    return {**probe, "features": features.numpy()}


def load_captioner_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a captioner checkpoint written by :func:`save_captioner`.

    Raises:
        UserSimulatorError: missing, unreadable (truncated, corrupted), not a captioner checkpoint
            of this project, or of an unsupported version; the message names the file.
    """
    payload = read_tagged_torch_file(
        path,
        "captioner checkpoint",
        CAPTIONER_FORMAT,
        CAPTIONER_VERSION,
        UserSimulatorError,
        " (train one with train_captioner.py)",
        required={"config": dict, "model": dict, "vocabulary": list, "catalog": dict},
    )
    payload["catalog"] = _probe_from_file(payload["catalog"], f"captioner checkpoint {str(path)!r}")
    return payload


_CHECKPOINT_CACHE: dict[tuple[str, int, int], dict[str, Any]] = {}


def _cached_checkpoint(path: Path) -> dict[str, Any]:
    """:func:`load_captioner_checkpoint`, memoised by file identity (many envs share one file)."""
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    except OSError:
        return load_captioner_checkpoint(path)  # raises the clear error
    if key not in _CHECKPOINT_CACHE:
        if len(_CHECKPOINT_CACHE) > 8:
            _CHECKPOINT_CACHE.clear()
        _CHECKPOINT_CACHE[key] = load_captioner_checkpoint(path)
    return _CHECKPOINT_CACHE[key]


# ---------------------------------------------------------------------------- the user simulator
class CaptionerUser(UserSimulator):
    """A shopper simulated by a trained :class:`RelativeCaptioner` (the paper's user model).

    ``gym.make("DialogRetrieval-v0", user="captioner", user_kwargs={"checkpoint": "runs/captioner/best.pt"})``

    Args:
        checkpoint: a file written by ``train_captioner.py`` (:func:`save_captioner`).
        model, vocabulary, probe: instead of ``checkpoint``, a model in memory, its vocabulary and
            optionally a :func:`catalog_probe` of its training catalogue.
        decoding: ``"greedy"`` (deterministic, the default) or ``"sample"`` (random words drawn
            with each dialog's generator).
        temperature: sampling temperature (``decoding="sample"`` only).
        device: torch device for the model (``"cpu"`` default; ``"auto"`` picks CUDA if available).
        strict_catalog: refuse a catalogue that shares no probed image with the training
            catalogue (its features may come from another extractor). Images it does share must
            have the same features whatever this flag says.
        batch_size: largest batch decoded at once.

    Raises:
        UserSimulatorError: unreadable checkpoint, or (at environment construction) a catalogue
            whose features do not fit the checkpoint.
        ConfigurationError: bad arguments.
    """

    name: ClassVar[str] = "captioner"

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        *,
        model: RelativeCaptioner | None = None,
        vocabulary: Vocabulary | None = None,
        probe: dict[str, Any] | None = None,
        decoding: str = "greedy",
        temperature: float = 1.0,
        device: str = "cpu",
        strict_catalog: bool = True,
        batch_size: int = 1024,
    ) -> None:
        if decoding not in DECODINGS:
            raise ConfigurationError(f"captioner decoding must be one of {list(DECODINGS)}, got {decoding!r}")
        if not temperature > 0:
            raise ConfigurationError(f"captioner temperature must be > 0, got {temperature}")
        if int(batch_size) < 1:
            raise ConfigurationError(f"captioner batch_size must be >= 1, got {batch_size}")
        self.device = resolve_device(device)
        if checkpoint is not None:
            if model is not None or vocabulary is not None:
                raise ConfigurationError(
                    "give the captioner either a checkpoint or a model and its vocabulary, not both"
                )
            self.source = str(checkpoint)
            payload = _cached_checkpoint(Path(checkpoint))
            try:
                model = RelativeCaptioner(CaptionerConfig(**payload["config"]))
            except (TypeError, ValueError, RuntimeError) as error:
                raise UserSimulatorError(
                    f"captioner checkpoint {self.source!r}: its config {payload['config']} is not a "
                    f"CaptionerConfig: {error}"
                ) from error
            try:
                model.load_state_dict(payload["model"])
            except (RuntimeError, TypeError, KeyError) as error:
                raise UserSimulatorError(
                    f"captioner checkpoint {self.source!r}: weights do not fit its config: {error}"
                ) from error
            vocabulary = Vocabulary(payload["vocabulary"])
            probe = payload["catalog"]
        elif model is None or vocabulary is None:
            raise ConfigurationError(
                "the captioner user needs user_kwargs={'checkpoint': PATH} (a file from train_captioner.py), "
                "or a model and its vocabulary"
            )
        else:
            self.source = "a model in memory"
        if len(vocabulary) != model.config.vocab_size:
            raise UserSimulatorError(
                f"captioner ({self.source}) has {model.config.vocab_size} output ids but its vocabulary has "
                f"{len(vocabulary)}"
            )
        self.model = model.to(self.device).eval()
        self._vocabulary = vocabulary
        self.probe = probe
        self.decoding = decoding
        self.temperature = float(temperature)
        self.strict_catalog = bool(strict_catalog)
        self.batch_size = int(batch_size)
        self._catalog_features: tuple[Catalog, torch.Tensor] | None = None

    @property
    def vocabulary(self) -> Vocabulary:
        """The vocabulary of the captions (the checkpoint's)."""
        return self._vocabulary

    @property
    def config(self) -> CaptionerConfig:
        """The model's sizes."""
        return self.model.config

    def check_catalog(self, catalog: Catalog) -> None:
        """Refuse a catalogue whose features do not fit the model (see the class docstring)."""
        where = f"captioner ({self.source})"
        if catalog.dim != self.config.image_dim:
            raise UserSimulatorError(
                f"{where} was trained on {self.config.image_dim}-d features, but catalogue {catalog.name!r} has "
                f"{catalog.dim}-d features"
            )
        if self.config.attends:
            spatial = catalog.spatial_features
            if spatial is None:
                raise UserSimulatorError(
                    f"{where} attends over spatial features of shape {self.config.spatial_shape}, but catalogue "
                    f"{catalog.name!r} has none (import them with the catalogue's spatial_features)"
                )
            if tuple(spatial.shape[1:]) != tuple(self.config.spatial_shape):  # type: ignore[arg-type]
                raise UserSimulatorError(
                    f"{where} expects spatial features of shape (N, {self.config.spatial_shape[0]}, "  # type: ignore[index]
                    f"{self.config.spatial_shape[1]}), catalogue {catalog.name!r} has {tuple(spatial.shape)}"  # type: ignore[index]
                )
        if self.probe is None:
            return
        index_of = {str(image_id): i for i, image_id in enumerate(catalog.ids)}
        found = [
            (index_of[i], row)
            for i, row in zip(self.probe["ids"], self.probe["features"], strict=True)
            if i in index_of
        ]
        if found:
            rows = np.asarray([i for i, _ in found])
            expected = np.stack([row for _, row in found]).astype(np.float32)
            mismatched = ~np.isclose(catalog.features[rows], expected, rtol=1e-5, atol=1e-6).all(axis=1)
            if mismatched.any():
                first = int(np.flatnonzero(mismatched)[0])
                raise UserSimulatorError(
                    f"{where} was trained on catalogue {self.probe['name']!r}, whose image "
                    f"{catalog.ids[rows[first]]!r} has other features than in catalogue {catalog.name!r} "
                    f"({int(mismatched.sum())} of {len(found)} probed images differ): the features come from another "
                    f"extractor or catalogue; retrain the captioner on this catalogue"
                )
        elif self.strict_catalog:
            raise UserSimulatorError(
                f"{where} was trained on catalogue {self.probe['name']!r}, which shares none of its "
                f"{len(self.probe['ids'])} probed image ids with catalogue {catalog.name!r}; retrain the captioner on "
                f"this catalogue, or pass user_kwargs strict_catalog=False if the features come from the same extractor"
            )

    def describe(
        self,
        catalog: Catalog,
        targets: np.ndarray,
        shown: np.ndarray,
        rngs: Sequence[np.random.Generator],
    ) -> list[str]:
        """The model's captions of the pairs (see :meth:`UserSimulator.describe`).

        Greedy decoding ignores ``rngs``; sampling draws one uniform number per word position
        from each dialog's generator.
        """
        targets = np.asarray(targets, dtype=np.int64)
        shown = np.asarray(shown, dtype=np.int64)
        steps = self.config.max_tokens
        uniforms = None
        if self.decoding == "sample":
            uniforms = np.stack([rng.random(steps) for rng in rngs]) if len(rngs) else np.zeros((0, steps))
        captions: list[str] = []
        for start in range(0, targets.size, self.batch_size):
            part = slice(start, start + self.batch_size)
            ids = self.model.generate(
                *self._features(catalog, targets[part], shown[part]),
                uniforms=None if uniforms is None else uniforms[part],
                temperature=self.temperature,
            )
            captions.extend(self.vocabulary.decode_batch(ids))
        return captions

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_catalog_features"] = None  # a cache (a view of a catalogue's features), rebuilt on demand
        return state

    def _features(self, catalog: Catalog, targets: np.ndarray, shown: np.ndarray) -> tuple[torch.Tensor, ...]:
        """Global (and spatial) features of a batch of pairs, as float32 tensors on the model's device.

        The catalogue's ``(N, D)`` features become a tensor once per catalogue (a view on the CPU,
        a copy on another device), which each call indexes.
        """
        cached = self._catalog_features
        if cached is None or cached[0] is not catalog:
            with warnings.catch_warnings():  # read-only: catalogues are immutable, and the view is only read
                warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
                features = torch.from_numpy(catalog.features)
            cached = self._catalog_features = (catalog, features.to(self.device, dtype=torch.float32))
        features = cached[1]
        index = torch.from_numpy(np.concatenate([targets, shown])).to(self.device)
        pairs = features.index_select(0, index)
        tensors = [pairs[: targets.size], pairs[targets.size :]]
        if self.config.attends:
            spatial = catalog.spatial_features
            tensors += [
                torch.as_tensor(spatial.take(targets)).to(self.device, dtype=torch.float32),
                torch.as_tensor(spatial.take(shown)).to(self.device, dtype=torch.float32),
            ]
        return tuple(tensors)
