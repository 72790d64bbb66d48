"""Named random streams: every random choice of the project flows from a seed and a purpose.

A program that needs randomness for several jobs (shuffling batches, drawing negatives, drawing
evaluation episodes...) derives one generator per job from the run's seed, so that changing how
much one job draws never shifts the numbers of another, and a resumed run repeats the numbers of
an uninterrupted one. :func:`stream` names the job instead of writing a magic constant::

    rng = stream(seed, "pretraining", iteration)   # == np.random.default_rng([seed, 1, iteration])

Each purpose is a fixed prefix of integers (:data:`PURPOSES`), appended to the seed: the generator
is ``np.random.default_rng([seed, *PURPOSES[purpose], *indices])``. The codes are the constants
the project used before this module existed, so every number generated before is generated
again; that is also why two unrelated purposes of different programs may share a code (they never
meet in one run). A new purpose takes a code of its own: add it to :data:`PURPOSES`, never change
an existing one (that would change published results).

The environments do not use this module: their randomness comes from Gymnasium's
``np_random``, seeded by ``reset(seed=...)``, one generator per dialog.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PURPOSES", "stream", "stream_seed"]

#: purpose -> integers appended to the seed.
PURPOSES: dict[str, tuple[int, ...]] = {
    # agents
    "pretraining": (1,),  # stage 1 of the paper's agent, per iteration: negatives (agents.dialog_manager)
    "policy_improvement": (2,),  # stage 2, per iteration: rollout users' draws, negatives
    "retriever": (3,),  # the dialog retriever, per iteration: triplet negatives (agents.dialog_retriever)
    "random_agent": (7,),  # the random baseline's picks (agents.baselines)
    "evaluation_episodes": (20181203,),  # targets and first images of evaluation episodes (agents.evaluation)
    # the synthetic catalogue
    "synthetic_attributes": (1,),  # dialog_env.synthetic: drawn after (and apart from) the features
    # the demo
    "demo_agent": (1,),  # dialog_env.demo: the demo agent's picks, apart from the env's stream
    # the captioner's training data and loop (train_captioner.py)
    "captioner_pairs": (7,),  # (target, reference) pairs and their simulated captions
    "captioner_validation_split": (3,),
    "captioner_batches": (5,),
    "captioner_bleu_sample": (9,),
    "captioner_distant_references": (11,),
    # the play page (dialog_env.play.session)
    "play_dialogs": (31,),  # targets, first images and per-dialog seeds of the dialogs people play
    "play_candidates": (32,),  # the candidate pages of the search-engine mode, by dialog seed, turn and page
    # benchmarks
    "realism_dialogs": (),  # benchmarks.simulator_realism: one generator per caption pair, by index
}


def stream_seed(seed: int, purpose: str, *indices: int) -> np.random.SeedSequence:
    """The :class:`~numpy.random.SeedSequence` of ``purpose`` (and ``indices``) under ``seed``.

    Args:
        seed: the run's seed, a non-negative int.
        purpose: a key of :data:`PURPOSES`.
        *indices: non-negative ints that tell apart the draws of one purpose (e.g. an iteration).

    Raises:
        KeyError: an unknown purpose (the message lists the known ones).
    """
    try:
        prefix = PURPOSES[purpose]
    except KeyError:
        raise KeyError(f"unknown random stream purpose {purpose!r}; known: {sorted(PURPOSES)}") from None
    return np.random.SeedSequence([int(seed), *prefix, *(int(i) for i in indices)])


def stream(seed: int, purpose: str, *indices: int) -> np.random.Generator:
    """``np.random.default_rng`` of :func:`stream_seed` ``(seed, purpose, *indices)``."""
    return np.random.default_rng(stream_seed(seed, purpose, *indices))
