"""The paper's dialog manager (Guo et al. 2018, Sec. 3): response encoder, state tracker, candidate generator.

Shapes: ``B`` dialogs, ``D`` catalogue feature dimension, ``L`` feedback tokens, ``E = 256`` the
embedding dimension, ``H = 256`` the state dimension.

- Response encoder: a linear image encoder ``D -> E`` over the shown image's catalogue features;
  a text encoder over the feedback (512-d word embeddings, a bigram convolution, max-pooling over
  time, batch normalisation, linear to ``E``); the two summed and passed through a linear layer.
  The bigram convolution is computed from the vocabulary projected through its two taps when that
  is less work (small vocabularies, and always without gradients), the same function.
- State tracker: a GRU cell (``H``) over the encoded responses.
- Output head: a linear layer giving a query vector in the image-embedding space.
- Candidate generator: the catalogue image whose embedding is nearest the query (the shared
  :class:`~dialog_env.ranking.Ranker` over the embedded catalogue), never one already shown in the
  dialog.

Stage 1 (supervised pre-training with a triplet loss) is :func:`pretrain`; stage 2 (model-based
policy improvement) is in :mod:`agents.policy_improvement`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agents.base import Agent
from agents.distributed import SINGLE_PROCESS, DialogShard
from dialog_env.ann import KNN_BACKENDS, KnnIndex, make_knn_index
from dialog_env.catalog import Catalog
from dialog_env.dynamics import uniform_except
from dialog_env.errors import ConfigurationError
from dialog_env.random_streams import stream
from dialog_env.ranking import Ranker
from dialog_env.text import PAD_ID
from dialog_env.torch_utils import resolve_device

__all__ = [
    "DialogManagerConfig", "DialogManager", "DialogManagerAgent", "Searcher", "nearest_unseen", "pretrain",
    "resolve_device", "top_unseen",
]  # fmt: skip


@dataclass(frozen=True)
class DialogManagerConfig:
    """Sizes of the dialog manager.

    Attributes:
        image_dim: catalogue feature dimension ``D``.
        vocab_size: number of token ids (the environment's vocabulary, reserved ids included).
        embed_dim: image-embedding and response dimension ``E`` (256 in the paper).
        word_dim: word-embedding dimension (512 in the paper).
        hidden_dim: GRU state dimension ``H`` (256 in the paper).
    """

    image_dim: int
    vocab_size: int
    embed_dim: int = 256
    word_dim: int = 512
    hidden_dim: int = 256


class DialogManager(nn.Module):
    """Response encoder + GRU state tracker + linear query head (see the module docstring)."""

    def __init__(self, config: DialogManagerConfig) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = nn.Linear(config.image_dim, config.embed_dim)
        self.word_embedding = nn.Embedding(config.vocab_size, config.word_dim, padding_idx=PAD_ID)
        self.bigram_conv = nn.Conv1d(config.word_dim, config.embed_dim, kernel_size=2)
        self.text_norm = nn.BatchNorm1d(config.embed_dim)
        self.text_linear = nn.Linear(config.embed_dim, config.embed_dim)
        self.response_linear = nn.Linear(config.embed_dim, config.embed_dim)
        self.state_tracker = nn.GRUCell(config.embed_dim, config.hidden_dim)
        self.query_head = nn.Linear(config.hidden_dim, config.embed_dim)

    def embed_images(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, D) float32 -> (N, E)`` image embeddings."""
        return self.image_encoder(features)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, L) int64`` token ids (0-padded) ``-> (B, E)``."""
        if tokens.shape[1] < 2:  # a bigram needs two positions
            tokens = F.pad(tokens, (0, 2 - tokens.shape[1]), value=PAD_ID)
        batch, length = tokens.shape
        # Without gradients the projected vocabulary is cached (every caption then encodes the same
        # way whatever else is in its batch); with them, the cheaper of the two ways is taken.
        if not torch.is_grad_enabled() or self.config.vocab_size <= batch * (length - 1):
            bigrams = self._bigrams_from_vocabulary(tokens)
        else:
            words = self.word_embedding(tokens).transpose(1, 2)  # (B, W, L)
            bigrams = self.bigram_conv(words).transpose(1, 2)  # (B, L - 1, E)
        # Max over the bigrams that start on a word; a caption without words pools to zero.
        starts_on_word = (tokens[:, :-1] != PAD_ID).unsqueeze(2)
        pooled = bigrams.masked_fill(~starts_on_word, float("-inf")).amax(dim=1)
        pooled = torch.where(torch.isfinite(pooled), pooled, torch.zeros_like(pooled))
        return self.text_linear(self.text_norm(pooled))

    def _bigrams_from_vocabulary(self, tokens: torch.Tensor) -> torch.Tensor:
        """The bigram filter's ``(B, L - 1, E)`` outputs, from the vocabulary projected through both taps.

        The filter is linear in the two word embeddings of a bigram, so projecting each of the
        ``V`` vocabulary entries once through each tap and adding the rows of a bigram's two words
        gives the convolution's outputs (up to float rounding), for ``V`` instead of ``B (L - 1)``
        projections: with the default vocabulary (under 200 words) and a batch of 128 captions
        of 16 tokens, forward and backward cost a sixth of the convolution's. The padding word's
        embedding is zero and gets no gradient, as in :class:`~torch.nn.Embedding`. Without
        gradients the projection is kept until the weights change (``(V, 2E)`` floats, not part
        of the state dict).
        """
        embedding, filters = self.word_embedding.weight, self.bigram_conv.weight  # filters: (E, W, 2), two taps
        embed_dim = filters.shape[0]
        # The cache holds the parameters themselves (so that they stay the same objects) and their
        # storage, device and in-place version: any change of the weights (an optimizer step,
        # load_state_dict, .to(), a copy of the model) misses it.
        key = [(p, p._version, p.data_ptr(), p.device, p.dtype) for p in (embedding, filters)]
        cached = self.__dict__.get("_projected_vocabulary")
        if not torch.is_grad_enabled() and cached is not None and _same_parameters(cached[0], key):
            taps = cached[1]
        else:
            table = embedding.index_fill(0, torch.tensor([PAD_ID], device=tokens.device), 0.0)
            taps = F.linear(table, torch.cat([filters[:, :, 0], filters[:, :, 1]], dim=0))  # (V, 2E)
            if not torch.is_grad_enabled():
                self.__dict__["_projected_vocabulary"] = (key, taps)
        # F.embedding, not fancy indexing: its backward sums each word's gradient in a fixed order
        # whatever the thread count (index_put's accumulation order varies between runs).
        first = F.embedding(tokens[:, :-1], taps[:, :embed_dim])
        second = F.embedding(tokens[:, 1:], taps[:, embed_dim:])
        return first + second + self.bigram_conv.bias

    def initial_state(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        """``(B, H)`` zeros: the state before the first response."""
        return torch.zeros(batch, self.config.hidden_dim, device=device)

    def forward(
        self, image_features: torch.Tensor, tokens: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One turn: encode the response (shown image + feedback), update the state, emit a query.

        Args:
            image_features: ``(B, D) float32`` features of the image the feedback is about.
            tokens: ``(B, L) int64`` feedback token ids.
            state: ``(B, H)`` previous state.

        Returns:
            ``(query (B, E), state (B, H))``.
        """
        return self.respond(image_features, self.encode_text(tokens), state)

    def respond(
        self, image_features: torch.Tensor, text_encoding: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` with the feedback already encoded (``(B, E)``, see :class:`TextEncodingCache`)."""
        response = self.response_linear(self.embed_images(image_features) + text_encoding)
        state = self.state_tracker(response, state)
        return self.query_head(state), state


def _same_parameters(cached: list[tuple[Any, ...]], current: list[tuple[Any, ...]]) -> bool:
    """Whether two lists of ``(parameter, version, data pointer, device, dtype)`` describe the same weights."""
    return all(a[0] is b[0] and a[1:] == b[1:] for a, b in zip(cached, current, strict=True))


class TextEncodingCache:
    """Memoised :meth:`DialogManager.encode_text` of a model in evaluation mode.

    A frozen model (the base policy of stage 2, an agent under evaluation) encodes a caption the
    same way every time, and simulated shoppers repeat themselves: look-ahead rollouts ask for the
    same few thousand captions over and over. Valid only while the model's weights and mode do not
    change; build a new cache after training.

    Args:
        model: the model (put in evaluation mode by the caller).
        max_entries: bound on the number of remembered captions (the cache is cleared when full).
    """

    def __init__(self, model: DialogManager, max_entries: int = 100_000) -> None:
        self.model = model
        self.max_entries = max_entries
        self._rows: dict[bytes, int] = {}
        self._table: torch.Tensor | None = None

    @torch.no_grad()
    def __call__(self, tokens: np.ndarray) -> torch.Tensor:
        """``(B, L) int64`` token ids -> ``(B, E)`` encodings (on the model's device)."""
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        keys = [row.tobytes() for row in tokens]
        new = {key: i for i, key in enumerate(keys) if key not in self._rows}
        if len(self._rows) + len(new) > self.max_entries:
            self._rows, self._table = {}, None
            new = {key: i for i, key in enumerate(keys)}
        device = next(self.model.parameters()).device
        if new:
            encoded = self.model.encode_text(torch.from_numpy(tokens[list(new.values())]).to(device))
            start = 0 if self._table is None else self._table.shape[0]
            self._table = encoded if self._table is None else torch.cat([self._table, encoded])
            for offset, key in enumerate(new):
                self._rows[key] = start + offset
        assert self._table is not None
        index = torch.tensor([self._rows[key] for key in keys], device=device)
        return self._table[index]


#: What finds a query's nearest images: the exact ranker, or a k-NN index (:mod:`dialog_env.ann`).
Searcher = Ranker | KnnIndex


def _nearest(searcher: Searcher, queries: np.ndarray, k: int) -> np.ndarray:
    """``(B, k) int64`` nearest images of each query, nearest first (``-1``: an index found fewer)."""
    if isinstance(searcher, Ranker):
        return searcher.nearest(queries, k=k)[0]
    return searcher.search(queries, k=k)[0]


def top_unseen(
    searcher: Searcher, queries: np.ndarray, shown: np.ndarray, k: int, fallback: Ranker | None = None
) -> np.ndarray:
    """The ``k`` nearest unseen images of each query, nearest first.

    Args:
        searcher: the exact ranker over the (embedded) catalogue, or a k-NN index over it.
        queries: ``(B, E)`` query vectors.
        shown: ``(B, S) int64`` images already shown in each dialog (``-1`` pads unused slots).
        k: candidates per dialog (at most the images not yet shown).
        fallback: the exact ranker over the same embeddings, for the dialogs in which an
            approximate index found fewer than ``k`` unseen images among its ``S + k`` neighbours
            (IVF with few probed lists can); those dialogs are searched exactly.

    Returns:
        ``(B, k) int64`` image indices.

    Raises:
        ConfigurationError: an index found too few unseen images and no ``fallback`` was given.
    """
    width = min(searcher.num_images, shown.shape[1] + k)
    candidates = _nearest(searcher, queries, width)
    unavailable = (candidates[:, :, None] == shown[:, None, :]).any(axis=2) | (candidates < 0)
    short = np.flatnonzero((~unavailable).sum(axis=1) < k)
    if short.size:
        if fallback is None:
            raise ConfigurationError(
                f"the k-NN index found fewer than {k} unseen images for {short.size} queries; give an exact fallback"
            )
        candidates[short] = fallback.nearest(queries[short], k=width)[0]
        unavailable[short] = (candidates[short, :, None] == shown[short, None, :]).any(axis=2)
    order = np.argsort(unavailable, axis=1, kind="stable")[:, :k]  # unseen first, in distance order
    return np.take_along_axis(candidates, order, axis=1)


def nearest_unseen(
    searcher: Searcher, queries: np.ndarray, shown: np.ndarray, fallback: Ranker | None = None
) -> np.ndarray:
    """For each query, the nearest catalogue image not among the dialog's shown images.

    :func:`top_unseen` with ``k = 1``: ``(B, E)`` queries and ``(B, S) int64`` shown images (``-1``
    pads) give ``(B,) int64`` image indices.
    """
    return top_unseen(searcher, queries, shown, 1, fallback)[:, 0]


#: Catalogue rows embedded at once by :meth:`DialogManagerAgent.reset` (bounded memory: a block
#: of ``(rows, D)`` and ``(rows, E)`` float32 at a time, whatever the catalogue's size).
EMBED_BLOCK_ROWS = 65_536


class DialogManagerAgent(Agent):
    """The dialog manager as an :class:`~agents.base.Agent` (evaluation mode, no gradients).

    Args:
        model: a trained :class:`DialogManager`.
        device: where to run it.
        name: name in tables (``"paper-stage1"``, ``"paper-stage2"``...).
        knn: how the candidate generator finds the image nearest to a query: ``"exact"`` (the
            default: the exact ranker, a chunked scan of the embedded catalogue per turn) or one of
            the FAISS backends of :data:`dialog_env.ann.KNN_BACKENDS` (``"faiss-ivf"``,
            ``"faiss-hnsw"``: approximate, for catalogues of a million images; built once per
            :meth:`reset`). The agent's ranking of the target (:meth:`rank_targets`) stays exact
            whichever is chosen.
        knn_options: settings of the FAISS index (keyword arguments of
            :func:`dialog_env.ann.make_knn_index`, e.g. ``{"nprobe": 32}``).
    """

    def __init__(
        self,
        model: DialogManager,
        device: torch.device | str = "cpu",
        name: str = "paper",
        knn: str = "exact",
        knn_options: Mapping[str, Any] | None = None,
    ) -> None:
        if knn not in KNN_BACKENDS:
            raise ConfigurationError(f"knn must be one of {list(KNN_BACKENDS)}, got {knn!r}")
        self.model = model
        self.device = torch.device(device)
        self.name = name
        self.knn = knn
        self.knn_options = dict(knn_options or {})
        self._ranker: Ranker | None = None
        self._index: KnnIndex | None = None
        self._state: torch.Tensor | None = None
        self._shown = np.zeros((0, 0), dtype=np.int64)
        self._queries: np.ndarray | None = None

    @torch.no_grad()
    def reset(self, catalog: Catalog, num_dialogs: int) -> None:
        """Embed the catalogue (blocks of :data:`EMBED_BLOCK_ROWS` rows), build its k-NN index, start the dialogs."""
        if catalog.dim != self.model.config.image_dim:
            raise ConfigurationError(
                f"the dialog manager was built for {self.model.config.image_dim}-d features, "
                f"catalogue {catalog.name!r} has {catalog.dim}-d features"
            )
        self.model.eval()
        embeddings = np.empty((catalog.num_images, self.model.config.embed_dim), dtype=np.float32)
        for start in range(0, catalog.num_images, EMBED_BLOCK_ROWS):
            block = np.array(catalog.features[start : start + EMBED_BLOCK_ROWS], dtype=np.float32)
            embedded = self.model.embed_images(torch.from_numpy(block).to(self.device))
            embeddings[start : start + block.shape[0]] = embedded.float().cpu().numpy()
        self._ranker = Ranker(embeddings)
        self._index = None if self.knn == "exact" else make_knn_index(self.knn, embeddings, **self.knn_options)
        self._state = self.model.initial_state(num_dialogs, self.device)
        self._shown = np.full((num_dialogs, 0), -1, dtype=np.int64)
        self._queries = None

    @torch.no_grad()
    def act(self, observations: Mapping[str, np.ndarray], infos: Mapping[str, Any]) -> np.ndarray:
        """One turn of the model per dialog; the nearest unseen image to each query."""
        if self._ranker is None or self._state is None:
            raise ConfigurationError("act() called before reset()")
        new = np.asarray(observations["turn"]).reshape(-1) == 0
        shown_now = np.asarray(infos["shown_index"], dtype=np.int64)
        if new.any():
            self._state[torch.from_numpy(new).to(self.device)] = 0.0
            self._shown[new] = -1
        self._shown = np.concatenate([self._shown, shown_now[:, None]], axis=1)
        query, self._state = self.model(
            torch.from_numpy(np.asarray(observations["image"], dtype=np.float32)).to(self.device),
            torch.from_numpy(np.asarray(observations["feedback"], dtype=np.int64)).to(self.device),
            self._state,
        )
        self._queries = query.float().cpu().numpy()
        searcher = self._index if self._index is not None else self._ranker
        return nearest_unseen(searcher, self._queries, self._shown, fallback=self._ranker)

    def rank_targets(self, targets: np.ndarray) -> np.ndarray:
        """Exact rank of each target w.r.t. the last query, in the embedding space."""
        if self._queries is None or self._ranker is None:
            raise ConfigurationError("rank_targets() called before act()")
        return self._ranker.query_target_ranks(self._queries, np.asarray(targets, dtype=np.int64))


def pretrain(
    model: DialogManager,
    envs: Any,
    iterations: int,
    optimizer: torch.optim.Optimizer,
    seed: int,
    start_iteration: int = 0,
    margin: float = 0.1,
    device: torch.device | str = "cpu",
    on_iteration: Callable[[int, dict[str, float]], None] | None = None,
    shard: DialogShard = SINGLE_PROCESS,
) -> None:
    """Stage 1: supervised pre-training with a triplet loss and on-policy roll-in.

    Each iteration plays ``B`` new dialogs of ``envs.max_turns`` turns in ``envs`` (a
    :class:`~dialog_env.vector.DialogRetrievalVectorEnv` with ``expose_target=True``). At every
    turn the query is pulled towards the target's embedding and pushed from a random other image's
    (triplet loss on L2 distances, ``margin``), and the next image shown is the nearest unseen
    image to the query (on-policy roll-in). Dialogs that found their target stop contributing.

    Args:
        model: the dialog manager (trained in place).
        envs: the training vector environment.
        iterations: last iteration (exclusive) to run.
        optimizer: e.g. Adam over ``model.parameters()`` (lr 1e-3 in the paper).
        seed: iteration ``i`` plays the dialogs of ``envs.reset(seed=seed + i * B)`` and draws its
            negatives from ``random_streams.stream(seed, "pretraining", i)``, so a resumed run repeats the
            same numbers.
        start_iteration: first iteration (for resuming).
        margin: triplet margin.
        device: where the model lives.
        on_iteration: called with ``(iteration, {"loss": ...})`` after each iteration (the loss of
            all processes' dialogs).
        shard: this process's share of a data-parallel job (:mod:`agents.distributed`): ``envs``
            holds its ``B / world_size`` dialogs of the iteration's ``B``, and ``model`` is trained
            through ``DistributedDataParallel``; the default trains alone.
    """
    device = torch.device(device)
    catalog_features = torch.from_numpy(np.array(envs.catalog.features, dtype=np.float32)).to(device)
    num_images = envs.catalog.num_images
    batch = envs.num_envs * shard.world_size
    rows = shard.rows(batch)
    trained = shard.data_parallel(model)  # its forward passes' gradients are averaged over the processes
    for iteration in range(start_iteration, iterations):
        model.train()
        rng = stream(seed, "pretraining", iteration)
        observations, infos = envs.reset(seed=seed + iteration * batch + rows.start)
        targets = np.asarray(infos["target_index"], dtype=np.int64)
        with torch.no_grad():  # candidate generation needs every embedding, the loss only a few
            all_embeddings = model.embed_images(catalog_features)
        ranker = Ranker(np.ascontiguousarray(all_embeddings.cpu().numpy(), dtype=np.float32))
        state = model.initial_state(envs.num_envs, device)
        shown = np.asarray(infos["shown_index"], dtype=np.int64)[:, None]
        active = np.ones(envs.num_envs, dtype=bool)
        losses = []
        target_embeddings = model.embed_images(catalog_features[torch.from_numpy(targets).to(device)])
        for _ in range(envs.max_turns):
            image = torch.from_numpy(observations["image"]).to(device)
            query, state = trained(image, torch.from_numpy(observations["feedback"]).to(device), state)
            negatives = uniform_except(rng, num_images, targets, size=batch, rows=rows)
            negative_embeddings = model.embed_images(catalog_features[torch.from_numpy(negatives).to(device)])
            per_dialog = F.triplet_margin_loss(
                query, target_embeddings, negative_embeddings, margin=margin, reduction="none"
            )
            losses.append(shard.masked_mean(per_dialog, active))
            actions = nearest_unseen(ranker, query.detach().cpu().numpy(), shown)
            observations, shown, active = roll_in(envs, actions, shown, active)
        loss = shard.mean(optimization_step(optimizer, losses))
        if on_iteration is not None:
            on_iteration(iteration, {"loss": loss})


def roll_in(
    envs: Any, actions: np.ndarray, shown: np.ndarray, active: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Show ``actions`` in the training dialogs (a real environment step, not an imagined one).

    Returns:
        The new observations, the shown-image history with the actions appended and the dialogs
        still active (a found target ends one).
    """
    observations, _, terminations, _, _ = envs.step(actions)
    still_active = active & ~np.asarray(terminations, dtype=bool)
    return observations, np.concatenate([shown, actions[:, None]], axis=1), still_active


def optimization_step(optimizer: torch.optim.Optimizer, losses: list[torch.Tensor]) -> float:
    """One optimiser step on the mean of the per-turn losses; returns that mean."""
    loss = torch.stack(losses).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())
