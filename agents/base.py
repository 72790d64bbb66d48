"""The agent protocol: what every agent of the project implements.

An agent plays ``B`` dialogs at once through the vector environment:

1. ``agent.reset(catalog, num_dialogs)`` before a batch of dialogs (``catalog`` is the
   environment's split catalogue, which agents may read: it is the retrieval system's own index);
2. ``agent.act(observations, infos)`` each turn, returning ``(B,)`` image indices. A dialog whose
   observation has ``turn == 0`` has just started (after a reset or an autoreset): the agent starts
   its state afresh for it;
3. optionally ``agent.rank_targets(targets)``: where each target stands in the agent's own ranking
   of the whole catalogue after its last ``act`` (the paper's "ranking percentile"); agents that
   do not rank the catalogue return ``None``.

:func:`agents.evaluation.evaluate` plays any agent on a fixed set of episodes.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import numpy as np

from dialog_env.catalog import Catalog

__all__ = ["Agent"]


class Agent(abc.ABC):
    """What every agent implements (see the module docstring for the protocol)."""

    #: Short name used in tables and on the command line.
    name: str = "agent"

    @abc.abstractmethod
    def reset(self, catalog: Catalog, num_dialogs: int) -> None:
        """Prepare for ``num_dialogs`` dialogs over ``catalog`` (the environment's split)."""

    @abc.abstractmethod
    def act(self, observations: Mapping[str, np.ndarray], infos: Mapping[str, Any]) -> np.ndarray:
        """Images to show next.

        Args:
            observations: the vector environment's batched observation (``feedback (B, 16)``,
                ``image (B, D)``, ``turn (B, 1)``).
            infos: its batched info (``shown_index (B,)`` etc.; never the target in evaluation).

        Returns:
            ``(B,) int64`` image indices.
        """

    def rank_targets(self, targets: np.ndarray) -> np.ndarray | None:
        """Where each dialog's target stands in the agent's own ranking of the catalogue.

        The rank after the last :meth:`act` (0 = ranked first), or ``None`` if the agent does not
        rank the catalogue.

        Args:
            targets: ``(B,)`` target indices (known to the evaluation loop, not to the agent).
        """
        return None
