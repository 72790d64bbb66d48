"""Stage 2: model-based policy improvement (Guo et al. 2018, Sec. 3.3).

A frozen copy of the pre-trained dialog manager is the *base policy*. At each turn of a training
dialog, the base policy's top-K unseen candidates (K = 4) are each shown, in imagination, through
the environment's turn model (``envs.model``, a :class:`~dialog_env.dynamics.DialogModel`: its user
simulator, ranker and vocabulary), and the base policy is rolled forward over the remaining turns
from each; the target's ranks along each rollout are summed. The *improved action* is the
candidate with the smallest sum. The learner is trained to point its query at the improved
action: cross-entropy of a softmax over negative squared distances / tau (tau = 0.2) between the
query and {improved action, 5 random negatives}, plus the squared distance from the query to the
target's embedding. The image encoder stays frozen, and the improved action is what the
environment is shown next.

All rollouts of a batch (``B`` dialogs x ``K`` candidates) advance together: one user call, one
model step and one rank computation per rollout turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from agents.dialog_manager import (
    DialogManager,
    TextEncodingCache,
    nearest_unseen,
    optimization_step,
    roll_in,
    top_unseen,
)
from agents.distributed import SINGLE_PROCESS, DialogShard
from dialog_env.catalog import Catalog
from dialog_env.dynamics import DialogModel, uniform_except
from dialog_env.random_streams import stream
from dialog_env.ranking import Ranker

__all__ = ["rollout_values", "improved_actions", "improve"]


@torch.no_grad()
def rollout_values(
    base: DialogManager,
    model: DialogModel,
    embedding_ranker: Ranker,
    state: torch.Tensor,
    candidates: np.ndarray,
    targets: np.ndarray,
    shown: np.ndarray,
    horizon: int,
    rngs: Sequence[np.random.Generator],
    text_cache: TextEncodingCache | None = None,
) -> np.ndarray:
    """The summed target ranks of rolling the base policy forward from each candidate.

    Rollout ``(b, k)`` shows ``candidates[b, k]``, then lets the base policy choose ``horizon``
    more images from the simulated shopper's feedback; its value is the sum of the target's ranks
    w.r.t. every image it shows (``1 + horizon`` ranks; 0 for every turn once the target is shown).
    The dialogs are imagined through the environment's turn model and nothing else of the
    environment; its captions count as look-ahead calls of the model's interaction budget
    (``B * K * horizon`` per call: the last image's rank needs no caption).

    Args:
        base: the base policy (its state after the dialog so far is ``state``).
        model: the environment's turn model (``envs.model``: its catalogue, user, ranker and
            vocabulary play the imagined turns).
        embedding_ranker: ranker over the base policy's catalogue embeddings (candidate generation).
        state: ``(B, H)`` base-policy state.
        candidates: ``(B, K) int64`` candidate images.
        targets: ``(B,) int64`` targets (privileged: training only).
        shown: ``(B, S) int64`` images already shown in each dialog.
        horizon: base-policy turns after the candidate (0: the candidate's own rank only).
        rngs: ``B * K`` generators for the user's randomness, rollout ``(b, k)`` at ``b * K + k``.
        text_cache: optional cache of the base policy's caption encodings (same results, faster).

    Returns:
        ``(B, K) float64`` summed ranks (smaller is better).
    """
    batch, k = candidates.shape
    device = state.device
    flat_targets = np.repeat(targets, k)
    current = candidates.reshape(-1).astype(np.int64)
    history = np.concatenate([np.repeat(shown, k, axis=0), current[:, None]], axis=1)
    state = state.repeat_interleave(k, dim=0)
    found = np.zeros(current.shape, dtype=bool)
    total = np.zeros(current.shape, dtype=np.float64)
    for turn in range(horizon + 1):
        if turn == horizon:  # the last image's rank counts; nobody reads its feedback
            ranks = model.ranks(flat_targets, current)
        else:
            response = model.respond(flat_targets, current, rngs, purpose="lookahead")
            ranks = response.ranks
        total += np.where(found, 0, ranks)
        found |= current == flat_targets
        if turn == horizon:
            break
        tokens = response.tokens
        text = text_cache(tokens) if text_cache is not None else base.encode_text(torch.from_numpy(tokens).to(device))
        features = torch.from_numpy(model.catalog.features[current]).to(device)  # fancy indexing copies
        query, state = base.respond(features, text, state)
        current = nearest_unseen(embedding_ranker, query.float().cpu().numpy(), history)
        history = np.concatenate([history, current[:, None]], axis=1)
    return total.reshape(batch, k)


def improved_actions(candidates: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The candidate of smallest rollout value per dialog (ties: the base policy's earlier choice).

    Args:
        candidates: ``(B, K)`` candidates, in the base policy's order.
        values: ``(B, K)`` rollout values.

    Returns:
        ``(B,) int64``.
    """
    best = np.argmin(values, axis=1)  # argmin returns the first of equal minima
    return candidates[np.arange(candidates.shape[0]), best].astype(np.int64)


def improve(
    learner: DialogManager,
    base: DialogManager,
    envs: Any,
    iterations: int,
    optimizer: torch.optim.Optimizer,
    seed: int,
    start_iteration: int = 0,
    top_k: int = 4,
    tau: float = 0.2,
    num_negatives: int = 5,
    device: torch.device | str = "cpu",
    on_iteration: Callable[[int, dict[str, float]], None] | None = None,
    shard: DialogShard = SINGLE_PROCESS,
) -> None:
    """Stage 2: train ``learner`` to imitate the look-ahead-improved base policy.

    Args:
        learner: the model trained in place (its image encoder is frozen: pass an optimizer
            without it).
        base: the frozen base policy (a copy of the pre-trained model).
        envs: the training vector environment (``expose_target=True``); its ``max_turns`` is the
            dialog length, its turn model ``envs.model`` the look-ahead model.
        iterations: last iteration (exclusive).
        optimizer: e.g. Adam, lr 1e-4 in the paper.
        seed: iteration ``i`` plays ``envs.reset(seed=seed + i * B)`` and draws from
            ``random_streams.stream(seed, "policy_improvement", i)``, so a resumed run repeats the
            same numbers.
        start_iteration: first iteration (for resuming).
        top_k: candidates looked ahead per turn (K = 4 in the paper).
        tau: softmax temperature.
        num_negatives: random negatives in the softmax.
        device: where the models live.
        on_iteration: called with ``(iteration, metrics)`` after each iteration (over all
            processes' dialogs).
        shard: this process's share of a data-parallel job (:mod:`agents.distributed`): ``envs``
            holds its ``B / world_size`` dialogs of the iteration's ``B``, and ``learner`` is trained
            through ``DistributedDataParallel`` (build it after freezing the image encoder); the
            default trains alone.
    """
    device = torch.device(device)
    model: DialogModel = envs.model
    catalog: Catalog = model.catalog
    batch = envs.num_envs * shard.world_size
    rows = shard.rows(batch)
    num_images = catalog.num_images
    trained = shard.data_parallel(learner)  # its forward passes' gradients are averaged over the processes
    base.eval()
    for parameter in base.parameters():
        parameter.requires_grad_(False)
    with torch.no_grad():
        embeddings = base.embed_images(torch.from_numpy(np.array(catalog.features, dtype=np.float32)).to(device))
    embedding_ranker = Ranker(np.ascontiguousarray(embeddings.cpu().numpy(), dtype=np.float32))
    text_cache = TextEncodingCache(base)
    for iteration in range(start_iteration, iterations):
        learner.train()
        learner.image_encoder.eval()
        rng = stream(seed, "policy_improvement", iteration)
        observations, infos = envs.reset(seed=seed + iteration * batch + rows.start)
        targets = np.asarray(infos["target_index"], dtype=np.int64)
        shown = np.asarray(infos["shown_index"], dtype=np.int64)[:, None]
        learner_state = learner.initial_state(envs.num_envs, device)
        base_state = base.initial_state(envs.num_envs, device)
        active = np.ones(envs.num_envs, dtype=bool)
        losses, gains = [], []
        target_embeddings = embeddings[torch.from_numpy(targets).to(device)]
        for turn in range(envs.max_turns):
            image = torch.from_numpy(observations["image"]).to(device)
            feedback = torch.from_numpy(observations["feedback"]).to(device)
            query, learner_state = trained(image, feedback, learner_state)
            with torch.no_grad():
                base_query, base_state = base.respond(image, text_cache(observations["feedback"]), base_state)
            k = max(1, min(top_k, num_images - shown.shape[1]))  # small catalogues run out of unseen images
            candidates = top_unseen(embedding_ranker, base_query.cpu().numpy(), shown, k)
            seeds = rng.integers(2**63, size=(batch, k))[rows].reshape(-1)  # drawn for all processes' dialogs
            rollout_rngs = [np.random.default_rng(s) for s in seeds]
            values = rollout_values(
                base, model, embedding_ranker, base_state, candidates, targets, shown, envs.max_turns - turn - 1,
                rollout_rngs, text_cache,
            )  # fmt: skip
            actions = improved_actions(candidates, values)
            gains.append(float(np.sum(values[:, 0] - values.min(axis=1))))
            negatives = uniform_except(rng, num_images, actions[:, None], size=(batch, num_negatives), rows=rows)
            choices = torch.from_numpy(np.concatenate([actions[:, None], negatives], axis=1)).to(device)
            distances = ((query[:, None, :] - embeddings[choices]) ** 2).sum(dim=2)  # (B, 1 + negatives)
            improved = torch.zeros(envs.num_envs, dtype=torch.long, device=device)  # column 0: the improved action
            cross_entropy = F.cross_entropy(-distances / tau, improved, reduction="none")
            to_target = ((query - target_embeddings) ** 2).sum(dim=1)
            losses.append(shard.masked_mean(cross_entropy + to_target, active))
            observations, shown, active = roll_in(envs, actions, shown, active)
        loss = shard.mean(optimization_step(optimizer, losses))
        gain = float(shard.sum(np.sum(gains))) / (batch * envs.max_turns)  # mean over dialogs and turns
        if on_iteration is not None:
            on_iteration(iteration, {"loss": loss, "lookahead_gain": gain})
