"""Shoppers who give up or settle: patience and acceptable alternatives, for every user simulator.

A simulated shopper of the paper never tires and wants exactly one image. Real shoppers leave
when a dialog stops getting anywhere, and many would take a shoe close enough to the one they had
in mind (Vlachou and Macdonald's Fashion-AlterEval studies both on Shoes). Two options of the
environments model this, whatever user simulator writes the captions; both are off by default,
and then the environments behave exactly as without them.

**Patience** (``patience=P``): the shopper leaves after ``P`` consecutive turns *without
progress*. A turn makes progress when the target's rank w.r.t. the shown image is strictly
lower (better) than every rank seen so far in the dialog, the first image's included. The turn
on which the ``P``-th such turn in a row happens ends the dialog: ``terminated`` is True (the
shopper is gone; nothing follows), ``info["shopper_left"]`` is True, and exact success is False.

**Alternatives** (``accept_rank=K``): the shopper accepts a shown image that is not the target
when the target is among its ``K`` nearest other images of the split, i.e. when the target's
rank w.r.t. it is at most ``K`` (the rank counts every image strictly closer to the shown one
than the target, the shown image itself included, see :mod:`dialog_env.ranking`; an exact
duplicate of the target has rank 0). The dialog ends: ``terminated`` is True and
``info["is_accepted"]`` is True, while ``info["is_success"]`` stays False. The closeness is the
ranking engine's (squared L2 on catalogue features), so ``K`` means the same on every catalogue
whatever the scale of its features. Only images shown in answer to the agent are judged: the
first image of a dialog is never accepted (a Gymnasium episode cannot end at ``reset``).

Precedence on one turn: exact success, then acceptance, then leaving. Rewards are unchanged:
reward functions see only exact success as ``found``. Evaluations report acceptance as a
measure of its own (``satisfied``: the target *or* an accepted alternative by a turn) next to
exact success, and the share of shoppers who left, never mixing them (:mod:`agents.evaluation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dialog_env.errors import ConfigurationError

__all__ = ["ShopperTolerance", "ToleranceState"]


def _optional_positive_int(value: Any, name: str, meaning: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigurationError(f"{name} must be None (off) or an integer >= 1 ({meaning}), got {value!r}")
    return int(value)


@dataclass(frozen=True)
class ShopperTolerance:
    """How long the shopper keeps trying and what else they would take (see the module docstring).

    Attributes:
        patience: turns in a row without progress after which the shopper leaves; ``None``: never.
        accept_rank: the shopper accepts a shown image whose target rank is at most this;
            ``None``: only the target.
    """

    patience: int | None = None
    accept_rank: int | None = None

    @classmethod
    def validated(cls, patience: Any, accept_rank: Any) -> ShopperTolerance:
        """The tolerance of the environments' ``patience`` and ``accept_rank`` arguments.

        Raises:
            ConfigurationError: a value that is neither ``None`` nor an integer >= 1.
        """
        return cls(
            _optional_positive_int(patience, "patience", "turns in a row without progress before the shopper leaves"),
            _optional_positive_int(accept_rank, "accept_rank", "the target among the K images nearest the shown one"),
        )

    @property
    def enabled(self) -> bool:
        """Whether either option is on."""
        return self.patience is not None or self.accept_rank is not None

    def info_keys(self) -> tuple[str, ...]:
        """The info keys the options add: ``shopper_left`` with patience, ``is_accepted`` with alternatives."""
        return (("shopper_left",) if self.patience is not None else ()) + (
            ("is_accepted",) if self.accept_rank is not None else ()
        )


class ToleranceState:
    """The shopper's tolerance state of ``B`` dialogs: best rank so far and turns without progress.

    The single environment uses it with ``B = 1``, the vector environment with ``B = num_envs``;
    one implementation decides for both, so they agree dialog for dialog.

    Attributes:
        accepted: ``(B,) bool``, the shopper accepted the image shown on the last judged turn.
        left: ``(B,) bool``, the shopper left on the last judged turn.
    """

    def __init__(self, tolerance: ShopperTolerance, batch: int) -> None:
        self.tolerance = tolerance
        self._best_ranks = np.zeros(batch, dtype=np.int64)
        self._stalls = np.zeros(batch, dtype=np.int64)
        self.accepted = np.zeros(batch, dtype=np.bool_)
        self.left = np.zeros(batch, dtype=np.bool_)

    def start(self, mask: np.ndarray, ranks: np.ndarray) -> None:
        """New dialogs where ``mask`` (``(B,) bool``) is True, their first image at ``ranks`` (``(B,) int64``)."""
        self._best_ranks = np.where(mask, ranks, self._best_ranks)
        self._stalls = np.where(mask, 0, self._stalls)
        self.accepted = self.accepted & ~mask
        self.left = self.left & ~mask

    def judge(self, stepping: np.ndarray, ranks: np.ndarray, found: np.ndarray) -> np.ndarray:
        """One turn of the dialogs in ``stepping``: update the state and decide who accepts or leaves.

        Args:
            stepping: ``(B,) bool``, the dialogs that played this turn (the others are untouched).
            ranks: ``(B,) int64`` target ranks w.r.t. this turn's shown images.
            found: ``(B,) bool``, the target itself was shown.

        Returns:
            ``(B,) bool``: the dialogs the shopper ends this turn (accepted or left; exact success
            is the caller's own termination). :attr:`accepted` and :attr:`left` say which.
        """
        improved = ranks < self._best_ranks
        self._stalls = np.where(stepping, np.where(improved, 0, self._stalls + 1), self._stalls)
        self._best_ranks = np.where(stepping, np.minimum(self._best_ranks, ranks), self._best_ranks)
        open_dialogs = stepping & ~found
        accept_rank, patience = self.tolerance.accept_rank, self.tolerance.patience
        nobody = np.zeros_like(stepping)
        accepted = open_dialogs & (ranks <= accept_rank) if accept_rank is not None else nobody
        left = open_dialogs & ~accepted & (self._stalls >= patience) if patience is not None else nobody
        self.accepted = np.where(stepping, accepted, self.accepted)
        self.left = np.where(stepping, left, self.left)
        return accepted | left

    def info_values(self) -> dict[str, np.ndarray]:
        """``(B,) bool`` copies of the info entries the options add (see :meth:`ShopperTolerance.info_keys`)."""
        values = {"shopper_left": self.left.copy(), "is_accepted": self.accepted.copy()}
        return {key: values[key] for key in self.tolerance.info_keys()}

    def transcript_notes(self) -> list[str]:
        """Per dialog, what to append to the transcript line of the last judged turn (``""`` if nothing)."""
        return [" <- shopper accepts this one (alternative)" if a else " <- shopper leaves" if l_ else ""
                for a, l_ in zip(self.accepted.tolist(), self.left.tolist(), strict=True)]  # fmt: skip
