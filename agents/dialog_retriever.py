"""The dialog retriever: a learned belief over the whole catalogue from every turn of the dialog.

Our own design, beyond the paper (issue 18). The paper's agent squeezes the dialog into one GRU
state and shows the image nearest one query vector; this agent keeps a score for *every*
catalogue image, built from *every* turn so far, like Bayesian target search (PicHunter) but with
a learned likelihood:

- Image tower ``phi``: a two-layer MLP ``D -> 256 -> E`` over the catalogue features (``E = 64``).
- Turn encoder: the feedback's tokens (word embeddings, two trigram convolutions, masked max and
  mean pooling) and the shown image's features (a linear projection) go through an MLP to ``M``
  *constraints* (``M = 8``), each a direction ``a_m (E,)``, a bias ``c_m`` and a gate
  ``g_m in (0, 1)``. Constraint ``m`` of turn ``t`` scores a candidate image ``x`` as
  ``z_tm(x) = <a_m, phi(x)> - g_m <a_m, phi(shown_t)> + c_m``: with ``g = 0`` an absolute
  statement ("is black"), with ``g = 1`` a relative one ("has a higher heel" than the shown
  image). Its log-likelihood factor is ``log sigmoid(z_tm(x))``.
- Dialog score (the belief): ``S_t(x) = sum over turns u <= t, constraints m of log sigmoid(z_um(x))``,
  a product of the turns' likelihoods (the shoppers here answer each turn about the shown image
  and the target alone, so the turns' factors multiply). It is kept incrementally: one ``(B, N)``
  update per turn, whatever the dialog's length. The *last turn only* ablation scores with the
  newest turn's factors alone.
- Selection: ``"greedy"`` shows the best-scoring image not yet shown; ``"split"`` shows the unseen
  image nearest (in ``phi``) to the belief's mean ``sum_x p(x) phi(x)``, ``p = softmax(S)`` over
  the unseen images: an image in the middle of the belief, about which the feedback splits it
  (when the belief has settled on one image, that image).

Training (:func:`train_retriever`) plays dialogs against the simulator with the agent's own
selection (on-policy roll-in, as the paper's stage 1) and, at each turn, pulls the target's score
up against negatives: ``"contrastive"`` is a softmax cross-entropy of the target against the
batch's other targets (in-batch negatives) and the ``H`` highest-scoring other images of the
dialog's belief (hard negatives, mined without gradients); ``"triplet"`` (the ablation) is the
paper's triplet loss: a margin between the target's score and one random image's.

Shapes: ``B`` dialogs, ``N`` catalogue images, ``D`` features, ``L`` feedback tokens, ``E`` the
embedding dimension, ``M`` constraints per turn.
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
from dialog_env.catalog import Catalog
from dialog_env.dynamics import uniform_except
from dialog_env.errors import ConfigurationError
from dialog_env.random_streams import stream
from dialog_env.text import PAD_ID

__all__ = [
    "LOSSES", "SELECTIONS", "HISTORIES", "DialogRetrieverConfig", "DialogRetriever", "DialogRetrieverAgent",
    "Belief", "train_retriever",
]  # fmt: skip

#: Training losses of :func:`train_retriever`.
LOSSES = ("contrastive", "triplet")
#: How the agent picks the image to show (see the module docstring).
SELECTIONS = ("greedy", "split")
#: What the belief is built from: every turn so far, or the newest turn only (the ablation).
HISTORIES = ("all", "last")
#: Catalogue rows embedded at once (bounded memory on large catalogues).
EMBED_BLOCK_ROWS = 65_536


@dataclass(frozen=True)
class DialogRetrieverConfig:
    """Sizes of the dialog retriever.

    Attributes:
        image_dim: catalogue feature dimension ``D``.
        vocab_size: number of token ids (the environment's vocabulary, reserved ids included).
        embed_dim: image-embedding dimension ``E``.
        word_dim: word-embedding dimension.
        text_dim: channels of the caption's convolutions.
        hidden_dim: width of the image tower and of the turn encoder's MLP.
        num_constraints: constraints ``M`` per turn.
    """

    image_dim: int
    vocab_size: int
    embed_dim: int = 64
    word_dim: int = 64
    text_dim: int = 128
    hidden_dim: int = 256
    num_constraints: int = 8

    def __post_init__(self) -> None:
        for name in ("image_dim", "vocab_size", "embed_dim", "word_dim", "text_dim", "hidden_dim", "num_constraints"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"DialogRetrieverConfig.{name} must be an integer >= 1, got {value!r}")


class DialogRetriever(nn.Module):
    """Image tower + turn encoder (see the module docstring)."""

    def __init__(self, config: DialogRetrieverConfig) -> None:
        super().__init__()
        self.config = config
        self.image_tower = nn.Sequential(
            nn.Linear(config.image_dim, config.hidden_dim), nn.ReLU(), nn.Linear(config.hidden_dim, config.embed_dim)
        )
        self.word_embedding = nn.Embedding(config.vocab_size, config.word_dim, padding_idx=PAD_ID)
        self.conv1 = nn.Conv1d(config.word_dim, config.text_dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(config.text_dim, config.text_dim, kernel_size=3, padding=1)
        self.shown_projection = nn.Linear(config.image_dim, config.hidden_dim)
        self.turn_mlp = nn.Sequential(
            nn.Linear(config.text_dim + config.word_dim + config.hidden_dim, config.hidden_dim),
            nn.ReLU(),
            nn.Linear(config.hidden_dim, config.hidden_dim),
            nn.ReLU(),
        )
        self.constraint_head = nn.Linear(config.hidden_dim, config.num_constraints * (config.embed_dim + 2))

    def embed_images(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, D) float32 -> (N, E)`` image embeddings ``phi``."""
        return self.image_tower(features)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, L) int64`` tokens (0-padded) ``-> (B, text_dim + word_dim)``: max-pooled convolutions, mean words."""
        words = self.word_embedding(tokens)  # (B, L, W); the padding word's embedding is zero
        is_word = (tokens != PAD_ID).unsqueeze(2)  # (B, L, 1)
        hidden = F.relu(self.conv1(words.transpose(1, 2)))
        hidden = F.relu(self.conv2(hidden)).transpose(1, 2)  # (B, L, text_dim)
        pooled = hidden.masked_fill(~is_word, 0.0).amax(dim=1)  # ReLU outputs: 0 is the floor
        count = is_word.sum(dim=1).clamp(min=1)
        return torch.cat([pooled, words.sum(dim=1) / count], dim=1)

    def constraints(
        self, shown_features: torch.Tensor, tokens: torch.Tensor, shown_embedding: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One turn's constraints.

        Args:
            shown_features: ``(B, D) float32`` features of the image the feedback is about.
            tokens: ``(B, L) int64`` feedback token ids.
            shown_embedding: ``phi(shown)``, ``(B, E)``, if already computed.

        Returns:
            ``(directions (B, M, E), offsets (B, M))``: ``z_m(x) = <directions_m, phi(x)> + offsets_m``.
        """
        config = self.config
        text = self.encode_text(tokens)
        hidden = self.turn_mlp(torch.cat([text, F.relu(self.shown_projection(shown_features))], dim=1))
        heads = self.constraint_head(hidden).view(-1, config.num_constraints, config.embed_dim + 2)
        directions, bias, gate = heads[:, :, : config.embed_dim], heads[:, :, -2], torch.sigmoid(heads[:, :, -1])
        if shown_embedding is None:
            shown_embedding = self.embed_images(shown_features)
        offsets = bias - gate * torch.einsum("bme,be->bm", directions, shown_embedding)
        return directions, offsets


def turn_scores(directions: torch.Tensor, offsets: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """Log-likelihood of one turn for shared candidates: ``(B, M, E), (B, M), (C, E) -> (B, C)``."""
    logits = torch.einsum("bme,ce->bmc", directions, embeddings) + offsets.unsqueeze(2)
    return F.logsigmoid(logits).sum(dim=1)


def turn_scores_per_dialog(directions: torch.Tensor, offsets: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """Log-likelihood of one turn for each dialog's own candidates: ``(B, M, E), (B, M), (B, C, E) -> (B, C)``."""
    logits = torch.einsum("bme,bce->bmc", directions, embeddings) + offsets.unsqueeze(2)
    return F.logsigmoid(logits).sum(dim=1)


class Belief:
    """Every dialog's score of every catalogue image, updated turn by turn (no gradients).

    Args:
        embeddings: ``(N, E) float32`` the embedded catalogue ``phi``.
        num_dialogs: ``B``.
        history: ``"all"`` (sum over the turns) or ``"last"`` (the newest turn only).
        block_rows: catalogue rows scored at once (bounded ``(B, M, rows)`` temporaries).
    """

    def __init__(self, embeddings: torch.Tensor, num_dialogs: int, history: str = "all", block_rows: int = 8192):
        if history not in HISTORIES:
            raise ConfigurationError(f"history must be one of {list(HISTORIES)}, got {history!r}")
        self.embeddings = embeddings
        self.history = history
        self.block_rows = block_rows
        self.scores = torch.zeros(num_dialogs, embeddings.shape[0], device=embeddings.device)
        self.shown = torch.zeros(num_dialogs, embeddings.shape[0], dtype=torch.bool, device=embeddings.device)

    def restart(self, dialogs: torch.Tensor) -> None:
        """Forget the dialogs of the ``(B,) bool`` mask (new dialogs)."""
        self.scores[dialogs] = 0.0
        self.shown[dialogs] = False

    @torch.no_grad()
    def update(self, directions: torch.Tensor, offsets: torch.Tensor, shown_index: torch.Tensor) -> None:
        """Add one turn: its constraints ``(B, M, E)``, ``(B, M)`` and the ``(B,) int64`` image it was about."""
        self.shown[torch.arange(shown_index.shape[0], device=shown_index.device), shown_index] = True
        for start in range(0, self.embeddings.shape[0], self.block_rows):
            block = self.embeddings[start : start + self.block_rows]
            scores = turn_scores(directions, offsets, block)
            if self.history == "all":
                self.scores[:, start : start + block.shape[0]] += scores
            else:
                self.scores[:, start : start + block.shape[0]] = scores

    @torch.no_grad()
    def select(self, selection: str) -> torch.Tensor:
        """``(B,) int64`` the image each dialog shows next (never one already shown)."""
        masked = self.scores.masked_fill(self.shown, float("-inf"))
        if selection == "greedy":
            return masked.argmax(dim=1)
        if selection != "split":
            raise ConfigurationError(f"selection must be one of {list(SELECTIONS)}, got {selection!r}")
        posterior = torch.softmax(masked, dim=1)  # shown images: probability 0
        mean = posterior @ self.embeddings  # (B, E)
        distances = torch.cdist(mean, self.embeddings).masked_fill(self.shown, float("inf"))
        return distances.argmin(dim=1)

    @torch.no_grad()
    def hardest(self, targets: torch.Tensor, count: int) -> torch.Tensor:
        """``(B, count) int64`` the highest-scoring images of each dialog other than its target."""
        masked = self.scores.clone()
        masked[torch.arange(targets.shape[0], device=targets.device), targets] = float("-inf")
        return masked.topk(count, dim=1).indices

    def target_ranks(self, targets: torch.Tensor) -> torch.Tensor:
        """``(B,) int64``: images scored strictly above each dialog's target (0 = ranked first)."""
        target_scores = self.scores.gather(1, targets.unsqueeze(1))
        return (self.scores > target_scores).sum(dim=1)


def embed_catalog(model: DialogRetriever, catalog: Catalog, device: torch.device) -> torch.Tensor:
    """``(N, E) float32`` ``phi`` of every catalogue image, in blocks (no gradients)."""
    embeddings = torch.empty(catalog.num_images, model.config.embed_dim, device=device)
    with torch.no_grad():
        for start in range(0, catalog.num_images, EMBED_BLOCK_ROWS):
            block = np.array(catalog.features[start : start + EMBED_BLOCK_ROWS], dtype=np.float32)
            embeddings[start : start + block.shape[0]] = model.embed_images(torch.from_numpy(block).to(device))
    return embeddings


class DialogRetrieverAgent(Agent):
    """The dialog retriever as an :class:`~agents.base.Agent` (evaluation mode, no gradients).

    Args:
        model: a trained :class:`DialogRetriever`.
        device: where to run it.
        name: name in tables.
        selection: ``"greedy"`` or ``"split"`` (see the module docstring).
        history: ``"all"`` or ``"last"``.
    """

    def __init__(
        self,
        model: DialogRetriever,
        device: torch.device | str = "cpu",
        name: str = "dialog-retriever",
        selection: str = "greedy",
        history: str = "all",
    ) -> None:
        if selection not in SELECTIONS:
            raise ConfigurationError(f"selection must be one of {list(SELECTIONS)}, got {selection!r}")
        if history not in HISTORIES:
            raise ConfigurationError(f"history must be one of {list(HISTORIES)}, got {history!r}")
        self.model = model
        self.device = torch.device(device)
        self.name = name
        self.selection = selection
        self.history = history
        self._belief: Belief | None = None

    @torch.no_grad()
    def reset(self, catalog: Catalog, num_dialogs: int) -> None:
        """Embed the catalogue and start every dialog's belief afresh."""
        if catalog.dim != self.model.config.image_dim:
            raise ConfigurationError(
                f"the dialog retriever was built for {self.model.config.image_dim}-d features, "
                f"catalogue {catalog.name!r} has {catalog.dim}-d features"
            )
        self.model.eval()
        self._belief = Belief(embed_catalog(self.model, catalog, self.device), num_dialogs, self.history)

    @torch.no_grad()
    def act(self, observations: Mapping[str, np.ndarray], infos: Mapping[str, Any]) -> np.ndarray:
        """Add the newest turn to each dialog's belief; show the selected unseen image."""
        if self._belief is None:
            raise ConfigurationError("act() called before reset()")
        belief = self._belief
        new = torch.from_numpy(np.asarray(observations["turn"]).reshape(-1) == 0).to(self.device)
        if new.any():
            belief.restart(new)
        shown = torch.from_numpy(np.asarray(infos["shown_index"], dtype=np.int64)).to(self.device)
        features = torch.from_numpy(np.asarray(observations["image"], dtype=np.float32)).to(self.device)
        tokens = torch.from_numpy(np.asarray(observations["feedback"], dtype=np.int64)).to(self.device)
        directions, offsets = self.model.constraints(features, tokens, belief.embeddings[shown])
        belief.update(directions, offsets, shown)
        return belief.select(self.selection).cpu().numpy()

    def rank_targets(self, targets: np.ndarray) -> np.ndarray:
        """Where each target stands in the belief after the last :meth:`act` (0 = scored highest)."""
        if self._belief is None:
            raise ConfigurationError("rank_targets() called before act()")
        ranks = self._belief.target_ranks(torch.from_numpy(np.asarray(targets, dtype=np.int64)).to(self.device))
        return ranks.cpu().numpy()


def train_retriever(
    model: DialogRetriever,
    envs: Any,
    iterations: int,
    optimizer: torch.optim.Optimizer,
    seed: int,
    start_iteration: int = 0,
    loss: str = "contrastive",
    hard_negatives: int = 64,
    margin: float = 1.0,
    selection: str = "greedy",
    history: str = "all",
    device: torch.device | str = "cpu",
    on_iteration: Callable[[int, dict[str, float]], None] | None = None,
) -> None:
    """Train on dialogs played against the simulator with the agent's own selection (see the module docstring).

    Each iteration plays ``B`` new dialogs of ``envs.max_turns`` turns in ``envs`` (a
    :class:`~dialog_env.vector.DialogRetrievalVectorEnv` with ``expose_target=True``): the first
    caption and then one per turn. After every caption the target's score is pulled up against
    negatives, and the next image is the agent's selection from the updated belief (computed
    without gradients). Dialogs that found their target stop contributing.

    Args:
        model: the retriever (trained in place).
        envs: the training vector environment.
        iterations: last iteration (exclusive) to run.
        optimizer: e.g. Adam over ``model.parameters()``.
        seed: iteration ``i`` plays the dialogs of ``envs.reset(seed=seed + i * B)`` and draws
            from ``random_streams.stream(seed, "retriever", i)``, so a resumed run repeats the same numbers.
        start_iteration: first iteration (for resuming).
        loss: ``"contrastive"`` (in-batch and ``hard_negatives`` hard negatives) or ``"triplet"``
            (``margin``, one random negative per turn).
        hard_negatives: ``H``, highest-scoring non-target images per dialog and turn (contrastive).
        margin: triplet margin (triplet).
        selection: the roll-in's selection, ``"greedy"`` or ``"split"``.
        history: ``"all"`` (the belief sums every turn) or ``"last"`` (the newest turn only).
        device: where the model lives.
        on_iteration: called with ``(iteration, {"loss": ..., "found": ...})`` after each iteration
            (``found``: the share of training dialogs that found their target).
    """
    if loss not in LOSSES:
        raise ConfigurationError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
    if selection not in SELECTIONS:
        raise ConfigurationError(f"selection must be one of {list(SELECTIONS)}, got {selection!r}")
    if isinstance(hard_negatives, bool) or not isinstance(hard_negatives, int) or hard_negatives < 0:
        raise ConfigurationError(f"hard_negatives must be an integer >= 0, got {hard_negatives!r}")
    device = torch.device(device)
    features = torch.from_numpy(np.array(envs.catalog.features, dtype=np.float32)).to(device)
    num_images, batch = envs.catalog.num_images, envs.num_envs
    hard_negatives = min(hard_negatives, num_images - 1)
    for iteration in range(start_iteration, iterations):
        model.train()
        rng = stream(seed, "retriever", iteration)
        observations, infos = envs.reset(seed=seed + iteration * batch)
        targets_np = np.asarray(infos["target_index"], dtype=np.int64)
        targets = torch.from_numpy(targets_np).to(device)
        with torch.no_grad():
            belief = Belief(model.embed_images(features), batch, history)
        active = torch.ones(batch, dtype=torch.bool, device=device)
        in_batch = (targets.unsqueeze(0) == targets.unsqueeze(1)).logical_not()  # (B, B) other dialogs' targets
        turn_losses: list[torch.Tensor] = []
        found = torch.zeros(batch, dtype=torch.bool, device=device)
        # The differentiable constraints of the turns so far; the candidates of each turn's loss
        # are scored against all of them (the belief, without gradients, picks the hard ones).
        history_scores: list[tuple[torch.Tensor, torch.Tensor]] = []
        for _turn in range(envs.max_turns + 1):
            shown = torch.from_numpy(np.asarray(infos["shown_index"], dtype=np.int64)).to(device)
            shown_features = features[shown]
            directions, offsets = model.constraints(
                shown_features, torch.from_numpy(np.asarray(observations["feedback"])).to(device),
                model.embed_images(shown_features),
            )  # fmt: skip
            belief.update(directions.detach(), offsets.detach(), shown)
            history_scores = [*history_scores, (directions, offsets)] if history == "all" else [(directions, offsets)]
            if loss == "contrastive":
                hard = belief.hardest(targets, hard_negatives)  # (B, H)
                candidates = torch.cat([targets.unsqueeze(1), hard], dim=1)  # (B, 1 + H): the target first
                own = model.embed_images(features[candidates])  # (B, 1 + H, E)
                shared = model.embed_images(features[targets])  # (B, E): in-batch candidates
                own_scores = sum(turn_scores_per_dialog(d, o, own) for d, o in history_scores)
                batch_scores = sum(turn_scores(d, o, shared) for d, o in history_scores)  # (B, B)
                batch_scores = batch_scores.masked_fill(~in_batch, float("-inf"))  # the target is in own_scores
                logits = torch.cat([own_scores, batch_scores], dim=1)
                per_dialog = F.cross_entropy(logits, torch.zeros(batch, dtype=torch.long, device=device),
                                             reduction="none")  # fmt: skip
            else:
                negatives = torch.from_numpy(uniform_except(rng, num_images, targets_np, size=batch)).to(device)
                pair = model.embed_images(features[torch.stack([targets, negatives], dim=1)])  # (B, 2, E)
                scores = sum(turn_scores_per_dialog(d, o, pair) for d, o in history_scores)
                per_dialog = F.relu(margin - scores[:, 0] + scores[:, 1])
            live = active.float()
            turn_losses.append((per_dialog * live).sum() / live.sum().clamp(min=1.0))
            if _turn == envs.max_turns:
                break
            actions = belief.select(selection)
            observations, _, terminations, _, infos = envs.step(actions.cpu().numpy())
            hit = torch.from_numpy(np.asarray(terminations, dtype=bool)).to(device) & active
            found |= hit
            active &= ~hit
        total = torch.stack(turn_losses).mean()
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if on_iteration is not None:
            on_iteration(iteration, {"loss": float(total.detach()), "found": float(found.float().mean())})
